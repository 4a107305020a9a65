"""A real engine end to end: vLLM's CPU build, a tiny local model, genai-bench, MLflow.

    python -m autotune deploy=local_cpu runtime=vllm_cpu model=tiny-llama-local \
        params.max-num-seqs=1,4 ...

runs in a fresh directory as a user would run it. Every process the tuner starts
(engines and their EngineCore/worker children, genai-bench) is collected by PID while
the sweep runs; none may survive it.

Each trial starts a real vLLM (~50 s on 2 idle cores, longer on a busy machine), so
these tests take minutes; they skip without the engine (see tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from study_runner import CPU_ENGINE_STUDY, Study, run_study, runs, study_env
from study_runner import artifact_text as study_artifact

pytestmark = [pytest.mark.slow, pytest.mark.cpu_engine]

SWEEP_TIMEOUT_S = 1500.0


def run_sweep(tmp_path: Path, tiny_model: Path, *overrides: str) -> Study:
    """Run the tuner on the CPU engine to completion, recording its processes by PID."""
    env = study_env(tmp_path, AUTOTUNE_TINY_MODEL=str(tiny_model))
    return run_study(tmp_path, *CPU_ENGINE_STUDY, *overrides, env=env, timeout=SWEEP_TIMEOUT_S)


def assert_nothing_left(sweep: Study, trials: int) -> None:
    """Every engine the tuner started is gone (checked by PID, not by name)."""
    # Each trial's engine is `python -m vllm.entrypoints.openai.api_server`, a direct
    # child of the tuner; it spawns EngineCore and worker processes of its own.
    servers = sweep.processes("vllm.entrypoints")
    assert len(servers) >= trials, sorted(sweep.seen.values())
    # ... and those children (EngineCore, its workers) were seen too.
    assert any("VLLM::" in cmd or "multiprocessing" in cmd for cmd in sweep.seen.values())
    sweep.assert_nothing_left()


def artifact_text(tmp_path: Path, run_id: str, path: str) -> str:
    return study_artifact(tmp_path, run_id, path)


def test_sweep_over_max_num_seqs_on_a_real_cpu_vllm(tmp_path, engine_python, tiny_model):
    sweep = run_sweep(tmp_path, tiny_model, "params.max-num-seqs=1,4")
    assert sweep.returncode == 0, sweep.output[-5000:]
    assert_nothing_left(sweep, trials=2)

    parent, trials = runs(tmp_path)
    assert len(parent) == 1 and len(trials) == 2, sweep.output[-3000:]
    assert sorted(trials["params.max-num-seqs"].astype(int)) == [1, 4]
    assert (trials["tags.autotune.status"] == "ok").all(), sweep.output[-3000:]
    assert (trials["status"] == "FINISHED").all()
    assert (trials["tags.autotune.simulated"] == "false").all()
    assert (trials["tags.autotune.runtime"] == "vllm-cpu").all()
    assert (trials["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]).all()
    for m in [
        "objective",
        "output_throughput_tok_s",
        "ttft_p99_ms",
        "tpot_mean_ms",
        "e2e_p99_ms",
        "c2.output_throughput_tok_s",
        "startup_s",
    ]:
        assert (trials[f"metrics.{m}"] > 0).all(), (m, trials.get(f"metrics.{m}"))
    assert (trials["metrics.error_rate"] == 0).all()
    assert parent.iloc[0]["metrics.best_objective"] == trials["metrics.objective"].max()

    client = mlflow.MlflowClient()
    for _, trial in trials.iterrows():
        run_id, seqs = trial["run_id"], int(trial["params.max-num-seqs"])
        log_text = artifact_text(tmp_path, run_id, "logs/engine.log")
        # vLLM's own start-up lines, and proof that the trial's flag reached the engine.
        assert "Application startup complete" in log_text
        assert "non-default args" in log_text and f"'max_num_seqs': {seqs}" in log_text
        cmd = artifact_text(tmp_path, run_id, "launch/command.sh")
        assert f"--max-num-seqs {seqs}" in cmd and engine_python in cmd
        assert "VLLM_CPU_KVCACHE_SPACE=1" in cmd
        bench = [a.path for a in client.list_artifacts(run_id, "genai-bench")]
        assert any(p.endswith(".json") and "concurrency_2" in p for p in bench), bench
        assert_engine_series(client, trial, seqs)


def assert_engine_series(client: mlflow.MlflowClient, trial, seqs: int) -> None:
    """vLLM's /metrics was scraped during the benchmark (every 2 s): its vllm:* gauges
    are engine.* histories of the run, and never show more running than max-num-seqs."""
    for name in ("engine.num_running_reqs", "engine.num_queue_reqs", "engine.token_usage"):
        history = client.get_metric_history(trial["run_id"], name)
        assert len(history) >= 2, (name, history)
    running = client.get_metric_history(trial["run_id"], "engine.num_running_reqs")
    assert 0 <= max(m.value for m in running) <= seqs
    # Its requests take well under the 2 s interval, so running/queued are mostly seen
    # at 0; vllm:generation_tokens_total between two scrapes shows the work (a rate).
    generated = client.get_metric_history(trial["run_id"], "engine.gen_throughput")
    assert max(m.value for m in generated) > 0, generated
    assert trial["metrics.engine.samples"] >= 2
    assert 0 <= trial["metrics.engine.peak_kv_usage"] <= 1


# Start-up failures, OOM and a kill mid-benchmark on this engine are rows of the fault
# matrix: tests/faults/test_fault_matrix.py (test_cpu_engine_*).
