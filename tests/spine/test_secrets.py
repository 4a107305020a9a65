import logging

from autotune.secrets import MASK, ScrubbingFilter, mask_env, scrub, scrub_tree, secret_values


def test_secret_values_by_name_and_proxy_credentials():
    env = {
        "HF_TOKEN": "hf_canary_123456",
        "OPENAI_API_KEY": "sk-canary-abcdef",
        "https_proxy": "http://user:proxypass99@proxy.example:3128",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "SHORT_TOKEN": "abc",
    }
    found = secret_values(env)
    assert "hf_canary_123456" in found and "sk-canary-abcdef" in found
    assert "proxypass99" in found and "user:proxypass99" in found
    assert "0,1" not in found and "abc" not in found


def test_scrub_and_mask_env():
    assert scrub("Bearer sk-canary-abcdef!", ["sk-canary-abcdef"]) == f"Bearer {MASK}!"
    shown = mask_env({"HF_TOKEN": "x" * 10, "PATH": "/bin"}, [])
    assert shown == {"HF_TOKEN": MASK, "PATH": "/bin"}


def test_scrub_tree_rewrites_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cmd.json").write_text('{"cmd": "--api-key canary-key-42"}')
    (tmp_path / "clean.txt").write_text("nothing here")
    assert scrub_tree(tmp_path, ["canary-key-42"]) == 1
    assert "canary-key-42" not in (tmp_path / "a" / "cmd.json").read_text()


def test_logging_filter_masks_formatted_messages(caplog):
    logger = logging.getLogger("test.secrets")
    logger.addFilter(ScrubbingFilter(["hf_canary_123456"]))
    with caplog.at_level(logging.INFO, logger="test.secrets"):
        logger.info("token is %s", "hf_canary_123456")
    assert "hf_canary_123456" not in caplog.text and MASK in caplog.text
