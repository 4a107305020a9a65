"""End to end, as a user runs it: `python -m autotune ...` in a fresh directory.

Real components throughout: Hydra, the simulated SGLang server (a child process
with SGLang's CLI), genai-bench (a child process), MLflow on sqlite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psutil
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


@pytest.mark.slow
def test_failed_trial_is_classified_and_the_sweep_goes_on(tmp_path):
    # 0.05 of an H200 cannot hold Llama-3.1-8B's weights: SGLang's start-up failure.
    proc = autotune(tmp_path, "-m", "params.mem=0.05,0.8", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, trials = runs(tmp_path)
    by_mem = {float(r["params.mem-fraction-static"]): r for _, r in trials.iterrows()}
    bad, good = by_mem[0.05], by_mem[0.8]
    assert bad["tags.autotune.status"] == "failed" and bad["tags.autotune.failure"] == "oom"
    assert bad["status"] == "FAILED"
    assert good["tags.autotune.status"] == "ok" and good["metrics.objective"] > 0
    client = mlflow.MlflowClient()
    log_text = Path(
        client.download_artifacts(bad["run_id"], "logs/engine.log", str(tmp_path))
    ).read_text()
    assert "Not enough memory" in log_text


def test_unknown_flag_fails_fast_and_deploys_nothing(tmp_path):
    t0 = time.monotonic()
    proc = autotune(tmp_path, "params.not-a-flag=1", timeout=60)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "params.not-a-flag" in out and "Nothing was deployed" in out
    assert "Known flags: attention-backend" in out and "mem-fraction-static" in out
    assert time.monotonic() - t0 < 20
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_the_engine_and_closes_the_runs(tmp_path, sig):
    env = {**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autotune",
            "-m",
            "params.mem=0.7,0.8",
            "benchmark.concurrency=[4]",
            "benchmark.max_requests_per_run=200",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tuner = psutil.Process(proc.pid)
    engines: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    # Wait until the engine serves and genai-bench is running against it.
    while time.monotonic() < deadline:
        kids = tuner.children(recursive=True)
        engines = [k for k in kids if "autotune.sim.server" in " ".join(k.cmdline())]
        benches = [k for k in kids if "genai_bench" in " ".join(k.cmdline())]
        if engines and benches:
            break
        time.sleep(0.5)
    assert engines, "the engine never started"
    time.sleep(3)
    everything = tuner.children(recursive=True)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    gone, alive = psutil.wait_procs(everything, timeout=10)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    parent, trials = runs(tmp_path)
    assert (parent["status"] == "KILLED").all(), out[-2000:]
    assert len(trials) == 1 and trials.iloc[0]["status"] == "KILLED"
    assert trials.iloc[0]["tags.autotune.failure"] == "interrupted"


@pytest.mark.slow
def test_sigkill_of_the_tuner_is_cleaned_up_at_the_next_start(tmp_path):
    """SIGKILL cannot be caught: the next start stops the engine and closes the runs."""
    env = {**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "autotune", "-m", "params.mem=0.7,0.8",
           "benchmark.concurrency=[4]", "benchmark.max_requests_per_run=200",
           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    tuner = psutil.Process(proc.pid)
    engine = None
    deadline = time.monotonic() + 120
    while engine is None and time.monotonic() < deadline:
        for k in tuner.children(recursive=True):
            if "autotune.sim.server" in " ".join(k.cmdline()):
                engine = k
        time.sleep(0.5)
    assert engine is not None, "the engine never started"
    proc.kill()
    proc.wait(timeout=10)
    assert engine.is_running()  # orphaned: nobody stopped it
    parent, trials = runs(tmp_path)
    assert (parent["status"] == "RUNNING").all() and (trials["status"] == "RUNNING").all()

    again = autotune(tmp_path, "params.not-a-flag=1")  # fails validation before reaping
    assert again.returncode == 2 and engine.is_running()
    again = autotune(tmp_path, "-m", "params.mem=0.7", *SMALL)
    assert again.returncode == 0, again.stderr[-2000:]
    engine.wait(timeout=10)  # reaped by the second start
    assert not engine.is_running()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    assert not (df["status"] == "RUNNING").any()
    assert (df["status"] == "KILLED").sum() == 2  # the killed sweep and its trial


@pytest.mark.slow
def test_engine_killed_mid_benchmark_is_a_crash_with_partial_results(tmp_path):
    # The simulated engine SIGKILLs itself at its 4th request; the next trial is healthy.
    proc = autotune(
        tmp_path, "-m", 'deploy.faults=["kill-after-requests=3"],[]', "params.mem=0.8", *SMALL
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, trials = runs(tmp_path)
    bad = trials[trials["tags.autotune.status"] == "failed"]
    good = trials[trials["tags.autotune.status"] == "ok"]
    assert len(bad) == 1 and len(good) == 1
    assert bad.iloc[0]["tags.autotune.failure"] == "crash"
    assert bad.iloc[0]["tags.mlflow.runName"].endswith("[crash]")
    assert bad.iloc[0]["status"] == "FAILED" and good.iloc[0]["metrics.objective"] > 0
    text = Path(
        mlflow.MlflowClient().download_artifacts(
            bad.iloc[0]["run_id"], "failure.txt", str(tmp_path)
        )
    ).read_text()
    assert "engine exited with code -9 during the benchmark" in text
