"""search.confirm and the new keys are checked before anything is deployed."""

from __future__ import annotations

from autotune.study.validation import validate_study


def test_defaults_confirm_every_strategy(compose_cfg):
    for search in ("grid", "tpe", "optuna_grid"):
        cfg = compose_cfg(f"search={search}")
        assert cfg.search.confirm.enabled and cfg.search.confirm.top_k == 3
        assert cfg.search.confirm.repeats == 3
    cfg = compose_cfg()
    assert cfg.deploy.noise == 1.0 and cfg.benchmark.warmup_requests is None


def test_bad_confirm_and_warmup_values_are_named_with_the_fix(compose_cfg):
    errors = validate_study(
        compose_cfg(
            "search.confirm.repeats=1", "search.confirm.top_k=0", "benchmark.warmup_requests=-1"
        )
    )
    text = "\n".join(errors)
    assert "search.confirm.repeats=1" in text and "use 2 or more" in text
    assert "search.confirm.top_k=0" in text
    assert "benchmark.warmup_requests must be >= 0" in text
    assert (
        validate_study(compose_cfg("search.confirm.enabled=false", "search.confirm.repeats=1"))
        == []
    )


def test_warmup_default_fills_the_highest_level_once(compose_cfg):
    from pathlib import Path

    from autotune.trial.spec import TrialSpec

    def warmup(*overrides: str) -> int:
        cfg = compose_cfg(*overrides)
        return TrialSpec(cfg, {}, name="t", study="s", workdir=Path(".")).workload().warmup_requests

    assert warmup("benchmark.concurrency=[4,16]") == 16
    assert warmup("benchmark.warmup_requests=0") == 0
