"""With deploy.noise=0 a virtual-clock study is bit-for-bit repeatable, confirmation
stage and verdict included (two studies in two directories, every number compared)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from study_runner import SMALL, run_cli

ARGS = [
    "search=tpe",
    "search.n_trials=3",
    "search.confirm.top_k=1",
    "search.confirm.repeats=2",
    "deploy.clock=virtual",
    "deploy.noise=0",
    *SMALL,
]
# Wall-clock measurements of the tuner itself, not results of the engine.
WALL = {"startup_s"}


def numbers(tmp_path: Path) -> dict[str, dict[str, float]]:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    out = {}
    for _, row in df.iterrows():
        name = "sweep" if row["tags.autotune.role"] == "sweep" else row["tags.mlflow.runName"]
        out[name] = {
            k: v
            for k, v in row.items()
            if k.startswith("metrics.") and k.removeprefix("metrics.") not in WALL and v == v
        }
        out[name]["verdict"] = row.get("tags.autotune.verdict")
    return out


@pytest.mark.slow
def test_two_studies_at_noise_zero_are_bit_for_bit_equal(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    run_cli(a, *ARGS, check=True)
    run_cli(b, *ARGS, check=True)
    first, second = numbers(a), numbers(b)
    assert len(first) == 1 + 4 + 2 * 2  # sweep, baseline + 3 trials, 2 configs x 2 runs
    assert first == second  # exact equality, no tolerance
    assert first["sweep"]["verdict"] in ("better", "indistinguishable", "worse")
    assert first["sweep"]["metrics.confirm.noise_cv_pct"] == 0.0
