"""End to end, as a user runs it: `python -m autotune ...` in a fresh directory.

Real components throughout: Hydra, the simulated SGLang server (a child process
with SGLang's CLI), genai-bench (a child process), MLflow on sqlite.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from study_runner import SMALL, runs
from study_runner import run_cli as autotune


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
    # The simulated server's /metrics was scraped while genai-bench ran (every 2 s):
    # run histories, step = seconds since the benchmark started, never more running
    # than the benchmark's 4 users.
    running = client.get_metric_history(run_id, "engine.num_running_reqs")
    assert len(running) >= 2 and sorted(m.step for m in running)[0] == 0, running
    assert max(m.value for m in running) <= 4, running
    # A 2 s scrape may miss the few seconds with requests in flight, but not the
    # generation throughput the engine reports once tokens were generated.
    generated = client.get_metric_history(run_id, "engine.gen_throughput")
    assert max(m.value for m in generated) > 0, generated
    # Running and queued together are the users' requests in flight: never over 4.
    queued = {m.step: m.value for m in client.get_metric_history(run_id, "engine.num_queue_reqs")}
    in_flight = sorted((m.step, m.value, queued[m.step]) for m in running)
    assert all(r + q <= 4 for _, r, q in in_flight), in_flight
    assert trials.iloc[0]["metrics.engine.peak_running_reqs"] == max(m.value for m in running)


# Failures, interrupts, SIGKILL clean-up and bad input end to end are rows of the fault
# matrix: tests/faults/test_fault_matrix.py.
