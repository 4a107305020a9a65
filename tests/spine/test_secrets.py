import logging

from autotune.secrets import (
    MASK,
    ScrubbingFilter,
    config_secrets,
    mask_env,
    scrub,
    scrub_tree,
    secret_values,
)


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


def test_secret_keys_are_strict():
    from autotune.secrets import is_secret_key

    for key in ("benchmark.api_key", "+deploy.env.ENGINE_API_KEY", "hf_token", "db.password"):
        assert is_secret_key(key), key
    for key in ("model.tokenizer", "benchmark.max_tokens", "params.max-num-batched-tokens"):
        assert not is_secret_key(key), key


def test_config_secrets_from_config_overrides_and_urls(compose_cfg):

    cfg = compose_cfg(
        "benchmark.api_key=sk-canary-cfg-1",
        "+deploy.env.ENGINE_API_KEY=canary-env-2",
        "tracking.uri=http://me:canary-url-3@127.0.0.1:5000",
    )
    found = set(config_secrets(cfg))
    assert {"sk-canary-cfg-1", "canary-env-2", "canary-url-3"} <= found
    assert str(cfg.model.tokenizer) not in found
    # An interpolation that does not resolve is left to validation to name.
    assert config_secrets(compose_cfg("benchmark.timeout_s=${benchmark.nope}")) == []


def test_default_study_has_no_secret(compose_cfg):
    # genai-bench's key is made per run when none is set: a study without secrets
    # has nothing to mask, so Hydra's files are not rewritten after every job.
    cfg = compose_cfg()
    assert cfg.benchmark.api_key is None
    assert config_secrets(cfg) == []


def test_scrub_tree_keeps_yaml_readable(tmp_path):
    import yaml

    (tmp_path / ".hydra").mkdir()
    path = tmp_path / ".hydra" / "overrides.yaml"
    path.write_text("- benchmark.api_key=canary-key-42\n- params.mem=0.8\n")
    config = tmp_path / ".hydra" / "config.yaml"
    config.write_text("benchmark:\n  api_key: canary-key-42\n  timeout_s: 5\n")
    assert scrub_tree(tmp_path, ["canary-key-42"]) == 2
    assert yaml.safe_load(path.read_text()) == [f"benchmark.api_key={MASK}", "params.mem=0.8"]
    assert yaml.safe_load(config.read_text()) == {"benchmark": {"api_key": MASK, "timeout_s": 5}}


def test_registered_secrets_are_masked_in_every_record_and_traceback(caplog):
    from autotune.secrets import register

    register(["canary-registered-77"])
    logger = logging.getLogger("test.secrets.registered")
    with caplog.at_level(logging.INFO, logger="test.secrets.registered"):
        logger.info("\t#0 : benchmark.api_key=%s", "canary-registered-77")
        try:
            raise ValueError("bad key canary-registered-77")
        except ValueError:
            logger.exception("failed")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "canary-registered-77" not in text and MASK in text
