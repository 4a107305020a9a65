"""A real engine end to end: vLLM's CPU build, a tiny local model, genai-bench, MLflow.

    python -m autotune deploy=local_cpu runtime=vllm_cpu model=tiny-llama-local \
        params.max-num-seqs=1,4 ...

runs in a fresh directory as a user would run it. Every process the tuner starts
(engines and their EngineCore/worker children, genai-bench) is collected by PID while
the sweep runs; none may survive it.

Each trial starts a real vLLM (~50 s on 2 idle cores, longer on a busy machine), so
these tests take minutes; they skip without the engine (see conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.cpu_engine]

# A tiny workload: one level, few short requests. Concurrency 2 against max-num-seqs 1
# queues requests in the engine, so the two trials of the sweep really differ.
WORKLOAD = [
    'benchmark.scenarios=["D(64,32)"]',
    "benchmark.concurrency=[2]",
    "benchmark.max_requests_per_run=8",
    "benchmark.max_time_per_run_min=1",
    "benchmark.timeout_s=300",
]
STUDY = [
    "deploy=local_cpu",
    "runtime=vllm_cpu",
    "model=tiny-llama-local",
    # Only the command line's lists (the default grid also sweeps params.mem).
    "search=none",
    # No torch.compile warm-up: it takes ~70 s of each start-up on 2 cores, and what is
    # tested here is the tuner around a real engine, not the engine's fastest mode.
    "params.enforce-eager=true",
    *WORKLOAD,
]
SWEEP_TIMEOUT_S = 1500.0


@dataclass
class Sweep:
    """A finished `python -m autotune` run and every process it started."""

    returncode: int
    output: str
    # Every descendant of the tuner seen while it ran, with its command line as seen
    # then (a dead process has none to read afterwards).
    seen: dict[psutil.Process, str] = field(default_factory=dict)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def run_sweep(tmp_path: Path, tiny_model: Path, *overrides: str) -> Sweep:
    """Run the tuner to completion while recording its descendants by PID."""
    env = {
        **os.environ,
        "AUTOTUNE_STATE_DIR": str(tmp_path / "state"),
        "AUTOTUNE_TINY_MODEL": str(tiny_model),
    }
    log_path = tmp_path / "autotune.out"
    seen: dict[int, tuple[psutil.Process, str]] = {}
    # Output to a file, not a pipe: the loop below polls processes, not the pipe.
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autotune",
                *STUDY,
                *overrides,
                f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        tuner = psutil.Process(proc.pid)
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"the sweep ran over {SWEEP_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
                try:
                    kids = tuner.children(recursive=True)
                except psutil.NoSuchProcess:
                    break
                for k in kids:
                    # psutil.Process remembers the creation time, so a recycled PID is
                    # never mistaken for one of ours below.
                    if k.pid not in seen or not seen[k.pid][1]:
                        seen[k.pid] = (k, _cmdline(k))
                time.sleep(0.2)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:  # a failed assertion above: leave nothing behind
                for p in [*(k for k, _ in seen.values()), tuner]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
                proc.wait(timeout=30)
    return Sweep(proc.returncode, log_path.read_text(), dict(seen.values()))


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:]


def assert_nothing_left(sweep: Sweep, trials: int) -> None:
    """Every engine the tuner started is gone (checked by PID, not by name)."""
    # Each trial's engine is `python -m vllm.entrypoints.openai.api_server`, a direct
    # child of the tuner; it spawns EngineCore and worker processes of its own.
    servers = [p for p, cmd in sweep.seen.items() if "vllm.entrypoints" in cmd]
    assert len(servers) >= trials, sorted(sweep.seen.values())
    # ... and those children (EngineCore, its workers) were seen too.
    assert any("VLLM::" in cmd or "multiprocessing" in cmd for cmd in sweep.seen.values())
    _, alive = psutil.wait_procs(list(sweep.seen), timeout=10)
    assert not alive, f"left running: {[(p.pid, sweep.seen[p]) for p in alive]}"


def runs(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    return df[df["tags.autotune.role"] == "sweep"], df[df["tags.autotune.role"] == "trial"]


def artifact_text(tmp_path: Path, run_id: str, path: str) -> str:
    client = mlflow.MlflowClient()
    dest = tmp_path / "artifacts" / run_id
    dest.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dest))).read_text(errors="replace")


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


def test_start_up_failures_are_classified_logged_and_the_sweep_goes_on(
    tmp_path, engine_python, tiny_model
):
    # Two ways a real engine fails to start, and a trial that works after them:
    # - deploy.startup_timeout_s=5: vLLM is still importing (it needs ~20 s even to
    #   reject a flag) when the tuner gives up and stops it → startup_timeout.
    # - max-model-len=4096 passes autotune's flag table (an int >= 1) but exceeds the
    #   tiny model's 1024 positions: vLLM's start-up config check rejects it → bad_flag.
    sweep = run_sweep(
        tmp_path, tiny_model, "deploy.startup_timeout_s=5,600", "params.max-model-len=4096,1024"
    )
    assert sweep.returncode == 0, sweep.output[-5000:]
    assert_nothing_left(sweep, trials=4)

    parent, trials = runs(tmp_path)
    assert len(parent) == 1 and len(trials) == 4
    # (max-model-len, failure class or "ok") of each trial; the timeout hits both lengths.
    outcomes = sorted(
        (
            int(r["params.max-model-len"]),
            r["tags.autotune.failure"] if r["tags.autotune.status"] == "failed" else "ok",
        )
        for _, r in trials.iterrows()
    )
    assert outcomes == [
        (1024, "ok"),
        (1024, "startup_timeout"),
        (4096, "bad_flag"),
        (4096, "startup_timeout"),
    ], sweep.output[-3000:]
    failed = trials[trials["tags.autotune.status"] == "failed"]
    assert (failed["status"] == "FAILED").all()
    assert parent.iloc[0]["metrics.trials_failed"] == 3

    # Every failed trial keeps its engine log and says why it failed.
    for _, r in failed.iterrows():
        reason = artifact_text(tmp_path, r["run_id"], "failure.txt")
        if r["tags.autotune.failure"] == "startup_timeout":
            assert "not ready after 5 s" in reason
            assert {a.path for a in mlflow.MlflowClient().list_artifacts(r["run_id"], "logs")} == {
                "logs/engine.log"
            }
        else:
            assert "max_model_len" in reason
            # The full log, not only its tail: vLLM's first lines are there.
            log_text = artifact_text(tmp_path, r["run_id"], "logs/engine.log")
            assert "non-default args" in log_text
            assert "User-specified max_model_len (4096)" in log_text

    # The sweep went on: the last trial ran a fresh engine and measured it.
    good = trials[trials["tags.autotune.status"] == "ok"].iloc[0]
    assert good["status"] == "FINISHED"
    assert good["metrics.output_throughput_tok_s"] > 0 and good["metrics.ttft_p99_ms"] > 0
