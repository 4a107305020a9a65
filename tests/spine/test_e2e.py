"""End to end, as a user runs it: `python -m autotune ...` in a fresh directory.

Real components throughout: Hydra, the simulated SGLang server (a child process
with SGLang's CLI), genai-bench (a child process), MLflow on sqlite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Small workload: one level, few requests; the sim is fast enough at H200 speed.
SMALL = [
    "benchmark.concurrency=[4]",
    "benchmark.max_requests_per_run=12",
    'benchmark.scenarios=["D(256,64)"]',
]


def autotune(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def runs(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    return df[df["tags.autotune.role"] == "sweep"], df[df["tags.autotune.role"] == "trial"]


@pytest.mark.slow
def test_grid_sweep_makes_parent_and_children_with_metrics_and_artifacts(tmp_path):
    proc = autotune(tmp_path, "-m", "runtime=sglang", "params.mem=0.7,0.8", *SMALL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parent, trials = runs(tmp_path)
    assert len(parent) == 1 and len(trials) == 2
    assert sorted(trials["params.mem-fraction-static"].astype(float)) == [0.7, 0.8]
    assert (trials["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]).all()
    assert (trials["tags.autotune.status"] == "ok").all()
    assert (trials["tags.autotune.simulated"] == "true").all()
    assert (trials["tags.autotune.phase"] == "done").all()
    for m in [
        "objective",
        "output_throughput_tok_s",
        "ttft_p50_ms",
        "ttft_p99_ms",
        "tpot_mean_ms",
        "tpot_p99_ms",
        "e2e_p99_ms",
        "c4.output_throughput_tok_s",
    ]:
        assert (trials[f"metrics.{m}"] > 0).all(), m
    assert (trials["metrics.error_rate"] == 0).all()
    assert (trials["metrics.objective"] == trials["metrics.output_throughput_tok_s"]).all()
    assert not (parent["status"] == "RUNNING").any() and (trials["status"] == "FINISHED").all()
    assert parent.iloc[0]["metrics.best_objective"] == trials["metrics.objective"].max()

    client = mlflow.MlflowClient()
    run_id = trials.iloc[0]["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "launch", "logs", "genai-bench"} <= top
    bench = [a.path for a in client.list_artifacts(run_id, "genai-bench")]
    assert any(p.endswith(".json") and "concurrency_4" in p for p in bench), bench
    log_text = Path(client.download_artifacts(run_id, "logs/engine.log", str(tmp_path))).read_text()
    assert "The server is fired up and ready to roll!" in log_text
    cmd = Path(client.download_artifacts(run_id, "launch/command.sh", str(tmp_path))).read_text()
    assert "--mem-fraction-static" in cmd
    assert "Best trial" in proc.stdout + proc.stderr


# Failures, interrupts, SIGKILL clean-up and bad input end to end are rows of the fault
# matrix: tests/faults/test_fault_matrix.py.
