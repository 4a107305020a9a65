"""objective=throughput_per_gpu picks a different TP than objective=throughput where the
numbers say it should (the simulator, virtual clock), with both metrics and the engine
metric series recorded in MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from study_runner import run_cli, runs

# Llama-3.1-8B on a simulated H200: more GPUs serve more tokens in all, fewer per GPU
# (measured on this workload, 2026-12-03: ~1330 / 1750 / 2110 tok/s at tp 1 / 2 / 4;
# docs/objectives.md).
STUDY = [
    "search=none",
    "search.baseline=false",
    "params.tp-size=1,2,4",
    "deploy.clock=virtual",
    "deploy.noise=0",
    "benchmark.concurrency=[8,32]",
    "benchmark.max_requests_per_run=64",
    'benchmark.scenarios=["D(1024,256)"]',
]


def best_tp(tmp_path: Path, objective: str):
    tmp_path.mkdir(parents=True)
    run_cli(tmp_path, f"objective={objective}", *STUDY, check=True)
    _, trials = runs(tmp_path)
    assert len(trials) == 3 and (trials["tags.autotune.status"] == "ok").all()
    best = trials.loc[trials["metrics.objective"].idxmax()]
    return int(best["params.tp-size"]), trials


@pytest.mark.slow
def test_per_gpu_objective_picks_fewer_gpus_than_total_throughput(tmp_path: Path):
    total_tp, trials = best_tp(tmp_path / "total", "throughput")
    per_gpu_tp, per_gpu_trials = best_tp(tmp_path / "per_gpu", "throughput_per_gpu")

    tp = trials["params.tp-size"].astype(int)
    total = trials["metrics.output_throughput_tok_s"]
    per_gpu = trials["metrics.output_throughput_tok_s_per_gpu"]
    # Both metrics are recorded on every trial, and per GPU is total / tp.
    assert list(per_gpu) == pytest.approx(list(total / tp))
    # The numbers: total throughput grows with tp, per-GPU throughput falls.
    by_tp = dict(zip(tp, zip(total, per_gpu, strict=True), strict=True))
    assert by_tp[1][0] < by_tp[2][0] < by_tp[4][0]
    assert by_tp[1][1] > by_tp[2][1] > by_tp[4][1]
    assert (total_tp, per_gpu_tp) == (4, 1)
    # Each study scored its own metric.
    assert list(trials["metrics.objective"]) == pytest.approx(list(total))
    assert list(per_gpu_trials["metrics.objective"]) == pytest.approx(
        list(per_gpu_trials["metrics.output_throughput_tok_s_per_gpu"])
    )

    # The engine's metric series (virtual clock: every 2 simulated seconds) are run
    # histories, and their peaks are summaries.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'total'}/mlflow.db")
    run_id = trials["run_id"].iloc[0]
    history = mlflow.MlflowClient().get_metric_history(run_id, "engine.num_running_reqs")
    steps = sorted(m.step for m in history)
    assert len(steps) >= 3 and steps[:2] == [0, 2]
    assert max(m.value for m in history) == trials["metrics.engine.peak_running_reqs"].iloc[0]
    assert (trials["metrics.engine.peak_running_reqs"] <= 32).all()
