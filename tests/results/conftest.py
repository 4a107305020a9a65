"""Fixtures of the results tests: an in-memory study, and a synthetic MLflow store.

``record`` is a :class:`StudyRecord` built without MLflow (summary, figures);
``store`` an MLflow sqlite store holding two small studies laid out exactly as the
tuner writes them (sweep run + trial runs with tags, params, metrics, config.yaml).
"""

from __future__ import annotations

import pytest
from results_helpers import make_record, metrics_for, trial, trial_config, write_study

from autotune.report.records import StudyRecord


@pytest.fixture
def record() -> StudyRecord:
    """Baseline, three scored trials (one misses its SLO), one OOM."""
    return make_record(
        [
            trial(0, 1000.0, 700.0, baseline=True),
            trial(1, 1200.0, 650.0),
            trial(2, failure="oom"),
            trial(3, 1500.0, 900.0),
            trial(4, 1600.0, 2500.0, feasible=False, values=[-0.25]),
        ],
        slo={"ttft_p99_ms": 2000.0},
    )


@pytest.fixture(scope="session")
def composer():
    from autotune.report.export import Composer

    return Composer()


@pytest.fixture(scope="session")
def store(tmp_path_factory, composer):
    """A sqlite store with two studies: A (older, with baseline) and B (newer, image tag b)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    base_cfg = trial_config(composer, "deploy.clock=virtual")
    cfg = lambda mem: trial_config(composer, "deploy.clock=virtual", f"params.mem={mem}")  # noqa: E731
    sweep_a = root / "sweep-a"
    sweep_a.mkdir()
    a = write_study(
        client,
        "autotune",
        "study-a",
        [
            {"baseline": True, "config": base_cfg, "metrics": metrics_for(1000.0, 800.0)},
            {
                "flags": {"mem-fraction-static": 0.7},
                "config": cfg(0.7),
                "metrics": metrics_for(1100.0, 700.0),
            },
            {
                "flags": {"mem-fraction-static": 0.8},
                "config": cfg(0.8),
                "status": "failed",
                "failure": "oom",
            },
            {
                "flags": {"mem-fraction-static": 0.9},
                "config": cfg(0.9),
                "metrics": metrics_for(1250.0, 750.0),
            },
        ],
        sweep_dir=sweep_a,
        image_tag="v0.5.4",
    )
    b = write_study(
        client,
        "autotune",
        "study-b",
        [
            {
                "flags": {"mem-fraction-static": 0.7},
                "config": cfg(0.7),
                "metrics": metrics_for(1300.0, 600.0),
            },
            {
                "flags": {"mem-fraction-static": 0.9},
                "config": cfg(0.9),
                "metrics": metrics_for(1200.0, 650.0),
            },
        ],
        image_tag="v0.5.5",
    )
    return {"uri": uri, "client": client, "a": a, "b": b, "root": root, "sweep_a": sweep_a}
