"""The fault matrix (issue 7): every fault a tuner meets, one test per row.

A tuner runs unattended for hours against engines that crash, hang and run out of
memory. Each row below starts ``python -m autotune`` as a user would (real Hydra,
the simulated SGLang server as a real child process with its fault knobs, real
genai-bench, MLflow on sqlite) or, for the ``cpu_engine`` rows, a real vLLM CPU
engine, and asserts what the tuner promises. Nothing is mocked.

| row | fault | test |
|---|---|---|
| E1 | engine fails at start: OOM / bad flag / CUDA-graph (exit 1 or 2) | test_engine_start_failures |
| E2 | engine exits 1 with an unknown message | test_engine_exit_1_unknown_is_a_crash |
| E3 | engine crashes mid-benchmark; is killed by a signal | test_engine_and_benchmark_faults_mid_trial |
| E4 | engine hangs: no health | test_engine_that_never_gets_healthy |
| E5 | engine hangs: health but no tokens (genai-bench hangs) | test_engine_and_benchmark_faults_mid_trial |
| B1 | genai-bench: every request fails / some fail / it hangs | test_engine_and_benchmark_faults_mid_trial |
| B2 | genai-bench exits 1 with partial results | test_benchmark_exit_1_with_partial_results |
| I1 | tuner SIGINT / SIGTERM / SIGKILL, mid-trial and between trials (3 pairings) | test_tuner_interrupted_then_resumed |
| T1 | MLflow unreachable / sqlite locked at start | test_tracking_unavailable_at_start |
| T2 | MLflow locked during a study: results kept, uploaded later | test_tracking_lost_during_a_study_loses_nothing |
| V1 | bad input (flag, type, space, scenario, concurrency, SLO, names, path, ${}) | test_bad_input_fails_before_deploying |
| S1 | secrets (HF token, API keys, proxy credentials, command-line keys) | test_no_secret_is_stored_or_printed |
| P1 | ports: a taken port is skipped, never 8443, loopback | test_free_port_*, assert_loopback_only in E1/E3/S1 |
| C1 | real vLLM: bad flag, start-up timeout | test_cpu_engine_start_up_failures |
| C2 | real vLLM: OOM at start, killed by a signal mid-benchmark | test_cpu_engine_oom_and_killed_mid_benchmark |

Unit-level checks of the same pieces stay with their components (sim fault knobs in
tests/sim/test_server.py, the genai-bench driver's timeout and group kill with a
stand-in genai-bench in tests/benchmark/test_bench_driver.py, validation messages in
tests/spine/test_validation.py, scrubbing in tests/spine/test_secrets.py); the rows
here are end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from study_runner import (
    CPU_ENGINE_STUDY,
    GENAI_BENCH,
    SIM_ENGINE,
    SMALL,
    Running,
    artifact_paths,
    optuna_study,
    run_study,
    study_env,
)

from autotune.deploy.base import RESERVED_PORTS, free_port

slow = pytest.mark.slow


def outcome(row) -> str:
    """'ok' or the failure class of a trial run (a DataFrame row)."""
    return "ok" if row["tags.autotune.status"] == "ok" else row["tags.autotune.failure"]


def engine_log_is_full(study, run) -> str:
    """The engine log artifact is the whole local log, not its tail; returns its text."""
    text = study.artifact(run["run_id"], "logs/engine.log")
    index = int(run["tags.autotune.trial_index"])
    (local,) = study.tmp.glob(f"multirun/*/*/{index}/engine.log")
    assert local.read_text() == text, "logs/engine.log differs from the trial's local log"
    return text


def faults_of(study, run) -> str:
    """The ``--sim-fault`` values in a trial's launch command."""
    cmd = study.artifact(run["run_id"], "launch/command.sh")
    args = cmd.replace("\\\n", " ").split()
    return ",".join(args[i + 1] for i, a in enumerate(args) if a == "--sim-fault")


# -- E1: the engine fails at start -------------------------------------------------------
@slow
def test_engine_start_failures(tmp_path):
    """OOM, bad flag, CUDA-graph failure: classified, full log kept, engine gone, sweep goes on."""
    study = run_study(
        tmp_path,
        "-m",
        'deploy.faults=["fail-start=oom"],["fail-start=bad-flag"],["fail-start=cuda-graph"],[]',
        "params.mem=0.8",
        *SMALL,
    )
    assert study.returncode == 0, study.output[-3000:]
    study.assert_nothing_left()
    study.assert_loopback_only()
    assert len(study.processes(SIM_ENGINE)) == 4  # one engine per trial, all gone
    parent, trials = study.runs()
    got = {faults_of(study, r): r for _, r in trials.iterrows()}
    expected = {
        "fail-start=oom": ("oom", "torch.OutOfMemoryError: CUDA out of memory"),
        "fail-start=bad-flag": ("bad_flag", "error: ambiguous option"),
        "fail-start=cuda-graph": ("cuda_graph", "Capture cuda graph failed"),
    }
    for fault, (failure, text) in expected.items():
        r = got[fault]
        assert outcome(r) == failure and r["status"] == "FAILED", (fault, outcome(r))
        assert r["tags.mlflow.runName"].endswith(f"[{failure}]")
        log_text = engine_log_is_full(study, r)
        assert text in log_text
        assert "engine exited with code" in study.artifact(r["run_id"], "failure.txt")
    assert outcome(got[""]) == "ok" and got[""]["metrics.objective"] > 0  # the sweep went on
    assert parent.iloc[0]["status"] == "FINISHED"
    assert parent.iloc[0]["metrics.trials_failed"] == 3


# -- E2: the engine exits 1 with a message no pattern knows ------------------------------
@slow
def test_engine_exit_1_unknown_is_a_crash(tmp_path):
    """A real process that prints an unknown error and exits 1: `crash`, log kept."""
    fake = tmp_path / "engine_exit_1.py"
    fake.write_text(
        "import sys\nprint('starting', sys.argv[1:])\nprint('fatal: boom')\nsys.exit(1)\n"
    )
    study = run_study(
        tmp_path,
        "deploy=local",
        f"model.tokenizer={ROOT_TOKENIZER}",
        f"runtime.launch=[python,{fake}]",
        "search=none",
        # No GPU here: the doctor would (rightly) stop the study before the engine runs.
        "preflight=false",
        *SMALL,
    )
    assert study.returncode == 0, study.output[-3000:]
    study.assert_nothing_left()
    _, trials = study.runs()
    (r,) = [r for _, r in trials.iterrows()]
    assert outcome(r) == "crash" and r["status"] == "FAILED"
    assert "fatal: boom" in study.artifact(r["run_id"], "logs/engine.log")
    assert "engine exited with code 1 before it was ready" in study.artifact(
        r["run_id"], "failure.txt"
    )


ROOT_TOKENIZER = Path(__file__).resolve().parents[2] / "autotune" / "sim" / "tokenizer"


# -- E3, E5, B1: faults while the benchmark runs ------------------------------------------
BENCH_TIMEOUT_S = 45.0
GRACE_S = 10.0  # run_genai_bench's SIGTERM → SIGKILL grace


@slow
def test_engine_and_benchmark_faults_mid_trial(tmp_path):
    """One sweep, one fault per trial, a healthy trial last (the sweep goes on).

    - crash-after=1: the scheduler dies during the benchmark → crash (exit 1)
    - kill-after-requests=3: the engine is SIGKILLed mid-benchmark → crash, partial kept
    - error-rate=1: every request fails (genai-bench exits 1, no run) → benchmark_failed
    - error-rate=0.3: some requests fail → ok, error_rate recorded
    - no-tokens: health OK, no token ever: genai-bench hangs → killed at the limit
    """
    faults = [
        "crash-after=1",
        "kill-after-requests=3",
        "error-rate=1",
        "error-rate=0.3",
        "no-tokens",
    ]
    grid = ",".join(f'["{f}"]' for f in faults) + ",[]"
    study = run_study(
        tmp_path,
        "-m",
        f"deploy.faults={grid}",
        "params.mem=0.8",
        f"benchmark.timeout_s={BENCH_TIMEOUT_S}",
        *SMALL,
        timeout=900,
    )
    assert study.returncode == 0, study.output[-3000:]
    study.assert_nothing_left()
    study.assert_loopback_only()
    parent, trials = study.runs()
    got = {faults_of(study, r): r for _, r in trials.iterrows()}
    assert set(got) == {*faults, ""}

    crash = got["crash-after=1"]
    assert outcome(crash) == "crash" and crash["status"] == "FAILED"
    assert "engine exited with code 1 during the benchmark" in study.artifact(
        crash["run_id"], "failure.txt"
    )
    assert "Scheduler hit an exception" in engine_log_is_full(study, crash)

    killed = got["kill-after-requests=3"]
    assert outcome(killed) == "crash" and killed["status"] == "FAILED"
    assert "engine exited with code -9 during the benchmark" in study.artifact(
        killed["run_id"], "failure.txt"
    )
    engine_log_is_full(study, killed)

    all_fail = got["error-rate=1"]
    assert outcome(all_fail) == "benchmark_failed" and all_fail["status"] == "FAILED"
    assert "genai-bench" in artifact_paths(tmp_path, all_fail["run_id"])

    some_fail = got["error-rate=0.3"]
    assert outcome(some_fail) == "ok" and some_fail["metrics.objective"] > 0
    assert 0 < some_fail["metrics.error_rate"] < 1

    hung = got["no-tokens"]
    assert outcome(hung) == "benchmark_timeout" and hung["status"] == "FAILED"
    ran_s = (hung["end_time"] - hung["start_time"]).total_seconds()
    # The hang costs the configured limit (+ the group kill's grace), never more.
    assert BENCH_TIMEOUT_S <= ran_s < BENCH_TIMEOUT_S + GRACE_S + 30, ran_s
    assert "benchmark produced no results" in study.artifact(hung["run_id"], "failure.txt")

    assert outcome(got[""]) == "ok" and got[""]["metrics.objective"] > 0
    assert parent.iloc[0]["status"] == "FINISHED"
    assert parent.iloc[0]["metrics.trials_failed"] == 4


# -- E4: the engine never gets healthy -----------------------------------------------------
@slow
def test_engine_that_never_gets_healthy(tmp_path):
    study = run_study(
        tmp_path,
        "-m",
        "deploy.faults=[hang-start]",
        "deploy.startup_timeout_s=5",
        "params.mem=0.8",
        *SMALL,
    )
    assert study.returncode == 0, study.output[-3000:]
    study.assert_nothing_left()
    _, trials = study.runs()
    (r,) = [r for _, r in trials.iterrows()]
    assert outcome(r) == "startup_timeout" and r["status"] == "FAILED"
    assert "not ready after 5 s" in study.artifact(r["run_id"], "failure.txt")
    assert "logs/engine.log" in artifact_paths(tmp_path, r["run_id"], "logs")
    assert len(study.processes(SIM_ENGINE)) == 1


# -- B2: genai-bench exits 1 with partial results ------------------------------------------
@slow
def test_benchmark_exit_1_with_partial_results(tmp_path):
    """The 2nd scenario exceeds context-length 512: every request of it is rejected, so
    genai-bench aborts (exit 1) after the 1st. Its results are kept and marked partial."""
    study = run_study(
        tmp_path,
        "-m",
        "params.context-length=512,4096",
        "params.mem=0.8",
        "benchmark.concurrency=[4]",
        "benchmark.max_requests_per_run=12",
        'benchmark.scenarios=["D(256,64)","D(1024,64)"]',
    )
    assert study.returncode == 0, study.output[-3000:]
    study.assert_nothing_left()
    _, trials = study.runs()
    by_len = {int(r["params.context-length"]): r for _, r in trials.iterrows()}
    part, full = by_len[512], by_len[4096]
    assert part["tags.autotune.partial"] == "true"
    assert outcome(part) == "ok" and part["metrics.objective"] > 0  # scored on what ran
    assert part["metrics.D_256_64.c4.output_throughput_tok_s"] > 0
    # The rejected scenario produced no tokens: it is not passed off as a result.
    assert not part.get("metrics.D_1024_64.c4.output_throughput_tok_s", 0) > 0
    console = study.artifact(part["run_id"], "genai-bench/genai_bench.console.log")
    assert "No values found" in console or "Traceback" in console
    assert outcome(full) == "ok" and full["tags.autotune.partial"] != "true"  # the sweep went on


# -- I1: the tuner is interrupted ----------------------------------------------------------
TINY_SEARCH = """\
# @package _global_
# Optuna (resumable) over two values: the interrupted-tuner rows.
defaults:
  - override /hydra/sweeper: autotune_optuna
  - override /hydra/sweeper/sampler: random
search:
  baseline: false
hydra:
  sweeper:
    direction: ${autotune_directions:}
    n_trials: ${search.n_trials}
    n_jobs: 1
    study_name: ${study.name}
    storage: ${search.storage}
    max_failure_rate: 1.0
    sampler:
      seed: 0
    params:
      params.mem: choice(0.7, 0.8)
"""


def _trial_finished(tmp_path: Path) -> bool:
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
        try:
            row = con.execute(
                "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'autotune.role' and t.value = 'trial' and r.status = 'FINISHED'"
            ).fetchone()
        except sqlite3.Error:
            return False
    return bool(row and row[0] >= 1)


@slow
@pytest.mark.parametrize(
    "sig, moment",
    # One pairing per signal keeps CI time down, and both moments are covered.
    # SIGINT and SIGTERM take the same path (the driver's handler raises
    # KeyboardInterrupt); SIGKILL mid-trial is the hard case (it leaves an engine and
    # RUNNING runs for the next start to clean up; between trials it leaves only runs).
    [
        (signal.SIGINT, "mid-trial"),
        (signal.SIGTERM, "between-trials"),
        (signal.SIGKILL, "mid-trial"),
    ],
    ids=["SIGINT-mid-trial", "SIGTERM-between-trials", "SIGKILL-mid-trial"],
)
def test_tuner_interrupted_then_resumed(tmp_path, sig, moment):
    """No engine survives; no run stays RUNNING; the same command resumes the study,
    keeping the trial that finished. (SIGKILL: the next start cleans up.)"""
    conf = tmp_path / "conf" / "search"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text(TINY_SEARCH)
    cmd = ["--config-dir", str(tmp_path / "conf"), "search=tiny", "search.n_trials=2", *SMALL]
    cmd += ["benchmark.max_requests_per_run=200"] if moment == "mid-trial" else []
    sent: dict[str, object] = {}

    def interrupt(run: Running) -> bool:
        if not _trial_finished(run.tmp):
            return False
        if moment == "mid-trial" and not (run.alive(SIM_ENGINE) and run.alive(GENAI_BENCH)):
            return False  # the second trial's engine serves genai-bench: now
        sent["engines"] = [p for p, _ in run.seen.values() if SIM_ENGINE in _ and p.is_running()]
        run.signal(sig)
        return True

    first = run_study(tmp_path, *cmd, on_tick=interrupt, timeout=400)
    assert sent, first.output[-3000:]
    assert first.returncode != 0
    parent, trials = first.runs()
    done = trials[trials["status"] == "FINISHED"]
    assert len(done) == 1, trials[["tags.mlflow.runName", "status"]]
    kept = done.iloc[0]
    if sig == signal.SIGKILL:
        # Nothing could run in the killed tuner: the engine it started may still run.
        pass
    else:
        first.assert_nothing_left()
        assert (
            not (parent["status"] == "RUNNING").any() and not (trials["status"] == "RUNNING").any()
        )
        if moment == "mid-trial":
            hit = trials[trials["status"] == "KILLED"]
            assert len(hit) == 1 and hit.iloc[0]["tags.autotune.failure"] == "interrupted"

    again = run_study(tmp_path, *cmd, timeout=400)
    assert again.returncode == 0, again.output[-3000:]
    assert "Resuming study" in again.output
    # Whatever the first run left (SIGKILL) is stopped by the second start.
    first.assert_nothing_left()
    again.assert_nothing_left()
    parent, trials = again.runs()
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    assert not (trials["status"] == "RUNNING").any()
    again_kept = trials[trials["run_id"] == kept["run_id"]].iloc[0]
    assert again_kept["status"] == "FINISHED"
    assert again_kept["metrics.objective"] == kept["metrics.objective"]
    states = [t.state for t in optuna_study(tmp_path).trials]
    assert optuna.trial.TrialState.COMPLETE in states
    assert optuna.trial.TrialState.RUNNING not in states


# -- T1: the tracking store is unavailable at start ----------------------------------------
def _nothing_deployed(tmp_path: Path) -> None:
    assert not list(tmp_path.glob("multirun/*/*/*/engine.log"))
    assert not list((tmp_path / "state" / "running").glob("*.json"))


def test_tracking_server_unreachable_at_start(tmp_path):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    study = run_study(tmp_path, tracking_uri=f"http://127.0.0.1:{port}", timeout=120)
    assert study.returncode == 2, study.output[-3000:]
    assert "Tracking store unavailable" in study.output
    assert f"http://127.0.0.1:{port}" in study.output and "does not answer" in study.output
    assert "Start it" in study.output and "Nothing was deployed" in study.output
    assert time.monotonic() - started < 60  # not MLflow's default ~4 min of retries
    assert not study.seen
    _nothing_deployed(tmp_path)


@slow
def test_tracking_db_locked_at_start(tmp_path):
    mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").search_experiments()  # create it
    con = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        study = run_study(tmp_path, timeout=180)
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert study.returncode == 2, study.output[-3000:]
    said = " ".join(study.output.split())  # the terminal wraps long lines
    assert "Tracking store unavailable" in said and "database is locked" in said
    assert "Nothing was deployed" in said
    assert not study.seen
    _nothing_deployed(tmp_path)


# -- T2: the tracking store goes away during a study ---------------------------------------
@slow
def test_tracking_lost_during_a_study_loses_nothing(tmp_path):
    """The sqlite store is locked from the end of trial 0 until trial 1 has ended.
    Trial 1's results go to the sweep's outbox and reach MLflow once it is free."""
    db = tmp_path / "mlflow.db"
    state: dict[str, object] = {}

    def lock_then_release(run: Running) -> bool:
        if "con" not in state:
            if _trial_finished(run.tmp):
                con = sqlite3.connect(db, isolation_level=None, timeout=30)
                con.execute("BEGIN EXCLUSIVE")
                state["con"] = con
            return False
        closed = list(run.tmp.glob("multirun/*/*/outbox/trial-001-*/closed"))
        if closed:
            state["journal"] = closed[0].parent
            state["con"].execute("ROLLBACK")
            state["con"].close()
            return True
        return False

    try:
        study = run_study(
            tmp_path, "-m", "params.mem=0.7,0.8,0.88", *SMALL, on_tick=lock_then_release
        )
    finally:
        con = state.get("con")
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")  # type: ignore[union-attr]
    assert study.returncode == 0, study.output[-3000:]
    assert "journal" in state, "trial 1 never kept its results locally"
    assert "results are kept in" in study.output
    assert not Path(state["journal"]).exists()  # uploaded, then removed
    study.assert_nothing_left()
    parent, trials = study.runs()
    assert len(trials) == 3 and (trials["status"] == "FINISHED").all()
    assert (trials["tags.autotune.status"] == "ok").all()
    assert (trials["metrics.objective"] > 0).all()
    assert sorted(trials["params.mem-fraction-static"].astype(float)) == [0.7, 0.8, 0.88]
    for _, r in trials.iterrows():
        assert {"config.yaml", "launch", "logs", "genai-bench"} <= artifact_paths(
            tmp_path, r["run_id"]
        )
    assert parent.iloc[0]["status"] == "FINISHED"
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    oks = client.get_metric_history(parent.iloc[0]["run_id"], "trial_ok")
    assert sorted(m.step for m in oks) == [0, 1, 2]
    summary = json.loads(study.artifact(parent.iloc[0]["run_id"], "study_summary.json"))
    assert summary["trials_total"] == 3 and summary["trials_ok"] == 3


# -- V1: bad input -------------------------------------------------------------------------
BAD_INPUT = [
    # (overrides, what the message must name: the key, and the fix)
    (["params.not-a-flag=1"], ["params.not-a-flag", "unknown flag", "Known flags"]),
    (["params.mem=abc"], ["params.mem='abc'", "expected a float"]),
    (["benchmark.max_requests_per_run=lots"], ["benchmark.max_requests_per_run", "Integer"]),
    (
        ["search=tpe", "hydra.sweeper.params=null"],
        ["search=tpe", "search space is empty", "search=none"],
    ),
    (["params.chunk=range(4096,1024)"], ["params.chunk", "no values"]),
    (['benchmark.scenarios=["D(10)"]'], ["benchmark.scenarios", "D(in,out)"]),
    (["benchmark.concurrency=[0]"], ["benchmark.concurrency: 0", "integers >= 1"]),
    (
        ["+objective.slo.ttft_p999_ms=500"],
        ["objective.slo.ttft_p999_ms", "Did you mean: ttft_p99_ms"],
    ),
    (["model=llama-3-8b"], ["model=llama-3-8b", "Available: ", "llama-3.1-8b-instruct"]),
    (["runtime=vlm"], ["runtime=vlm", "Did you mean: vllm"]),
    (["deploy=kubernetes"], ["deploy=kubernetes", "Available: ", "ome"]),
    (
        ["deploy=local", "model.tokenizer=/nonexistent/tok"],
        ["model.tokenizer", "model.tokenizer=/path"],
    ),
    (
        ["benchmark.timeout_s=${benchmark.nope}"],
        ["benchmark.timeout_s", "does not resolve", "full path"],
    ),
    (["benchmark.concurency=[8]"], ["benchmark.concurency", "Did you mean: 'concurrency'"]),
]


@pytest.mark.parametrize("overrides, needles", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_bad_input_fails_before_deploying(tmp_path, overrides, needles):
    study = run_study(tmp_path, *overrides, timeout=120)
    assert study.returncode != 0
    for needle in needles:
        assert needle in study.output, (needle, study.output[-2000:])
    assert not study.seen  # no engine, no genai-bench: nothing was started
    assert not (tmp_path / "mlflow.db").exists()
    _nothing_deployed(tmp_path)


# -- S1: secrets -----------------------------------------------------------------------------
@slow
def test_no_secret_is_stored_or_printed(tmp_path):
    canary = f"CANARY{os.getpid()}x{time.monotonic_ns()}"
    secrets = {
        "HF_TOKEN": f"hf_{canary}1",
        "OPENAI_API_KEY": f"sk-{canary}2",
        "HTTPS_PROXY": f"http://user:{canary}3@127.0.0.1:9",
    }
    early: dict[str, list[str]] = {}

    def finished_job_is_clean(run: Running) -> bool:
        # While trial 1 runs, trial 0 is finished: a SIGKILL now would leave its
        # files (Hydra's .hydra/*.yaml with the command line) and multirun.yaml as
        # they are. They must already be clean, not only after the study's end.
        if not list(run.tmp.glob("multirun/*/*/1/.hydra/overrides.yaml")):
            return False
        (job0,) = run.tmp.glob("multirun/*/*/0")
        files = [p for p in job0.rglob("*") if p.is_file()]
        files += list(job0.parent.glob("multirun.yaml"))
        early["files"] = [str(p) for p in files]
        early["leaks"] = [str(p) for p in files if canary.encode() in p.read_bytes()]
        return True

    study = run_study(
        tmp_path,
        "-m",
        'deploy.faults=["fail-start=bad-flag"],[]',  # a failed trial's note and failure.txt too
        "params.mem=0.8",
        f"+deploy.env.ENGINE_API_KEY={canary}4",
        f"benchmark.api_key={canary}5",
        *SMALL,
        env=study_env(tmp_path, **secrets),
        on_tick=finished_job_is_clean,
    )
    assert study.returncode == 0, study.output[-3000:]
    assert any(f.endswith("overrides.yaml") for f in early["files"]), early
    assert not early["leaks"], early["leaks"]
    study.assert_nothing_left()
    _, trials = study.runs()
    assert sorted(trials["tags.autotune.status"]) == ["failed", "ok"]
    assert canary not in study.output
    leaks = [
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if p.is_file() and canary.encode() in p.read_bytes()
    ]
    assert not leaks, leaks  # mlflow.db, artifacts (mlruns/), multirun/ sweep dir, outputs
    # The artifacts really are there (the check above looked at something).
    assert list(tmp_path.glob("mlruns/*/*/artifacts/logs/engine.log"))
    assert list(tmp_path.glob("mlruns/*/*/artifacts/genai-bench/experiment_metadata.json"))


# -- P1: ports ---------------------------------------------------------------------------------
def test_free_port_skips_taken_ports_and_8443():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        ports = {free_port() for _ in range(50)}
    assert taken not in ports
    assert not ports & RESERVED_PORTS and 8443 in RESERVED_PORTS
    assert all(1024 < p < 65536 for p in ports)


def test_deploy_port_8443_is_refused(tmp_path):
    study = run_study(
        tmp_path, "deploy=local", f"model.tokenizer={ROOT_TOKENIZER}", "+deploy.port=8443"
    )
    assert study.returncode == 2 and "deploy.port=8443 is reserved" in study.output


# -- C1, C2: a real vLLM on CPU ------------------------------------------------------------------
VLLM_SERVER = "vllm.entrypoints"


def _cpu_env(tmp_path, tiny_model):
    return study_env(tmp_path, AUTOTUNE_TINY_MODEL=str(tiny_model))


@slow
@pytest.mark.cpu_engine
def test_cpu_engine_start_up_failures(tmp_path, engine_python, tiny_model):
    """Two ways a real engine fails to start, and a trial that works after them:

    - deploy.startup_timeout_s=5: vLLM is still importing (it needs ~20 s even to
      reject a flag) when the tuner gives up and stops it → startup_timeout.
    - max-model-len=4096 passes autotune's flag table (an int >= 1) but exceeds the
      tiny model's 1024 positions: vLLM's start-up config check rejects it (exit 1)
      → bad_flag.
    """
    study = run_study(
        tmp_path,
        *CPU_ENGINE_STUDY,
        "deploy.startup_timeout_s=5,600",
        "params.max-model-len=4096,1024",
        env=_cpu_env(tmp_path, tiny_model),
        timeout=1500,
    )
    assert study.returncode == 0, study.output[-5000:]
    study.assert_nothing_left()
    assert len(study.processes(VLLM_SERVER)) >= 4
    parent, trials = study.runs()
    outcomes = sorted((int(r["params.max-model-len"]), outcome(r)) for _, r in trials.iterrows())
    assert outcomes == [
        (1024, "ok"),
        (1024, "startup_timeout"),
        (4096, "bad_flag"),
        (4096, "startup_timeout"),
    ], study.output[-3000:]
    failed = trials[trials["tags.autotune.status"] == "failed"]
    assert (failed["status"] == "FAILED").all()
    assert parent.iloc[0]["metrics.trials_failed"] == 3
    for _, r in failed.iterrows():
        reason = study.artifact(r["run_id"], "failure.txt")
        if outcome(r) == "startup_timeout":
            assert "not ready after 5 s" in reason
            assert artifact_paths(tmp_path, r["run_id"], "logs") == {"logs/engine.log"}
        else:
            assert "max_model_len" in reason and "exited with code 1" in reason
            log_text = study.artifact(r["run_id"], "logs/engine.log")
            assert "non-default args" in log_text  # the full log, not only its tail
            assert "User-specified max_model_len (4096)" in log_text
    good = trials[trials["tags.autotune.status"] == "ok"].iloc[0]
    assert good["metrics.output_throughput_tok_s"] > 0 and good["metrics.ttft_p99_ms"] > 0


@slow
@pytest.mark.cpu_engine
def test_cpu_engine_oom_and_killed_mid_benchmark(tmp_path, engine_python, tiny_model):
    """Real vLLM: a KV cache larger than the host's memory fails the start (oom); an
    engine SIGKILLed while genai-bench drives it is a crash; the sweep goes on."""
    killed: list[int] = []

    def kill_second_engine(run: Running) -> bool:
        # The 2nd trial's engine serves genai-bench: SIGKILL the engine (its leader).
        servers, benches = run.alive(VLLM_SERVER), run.alive(GENAI_BENCH)
        if _trials_started(run) == 2 and servers and benches:
            time.sleep(3)  # requests in flight
            servers[0].send_signal(signal.SIGKILL)
            killed.append(servers[0].pid)
            return True
        return False

    study = run_study(
        tmp_path,
        *CPU_ENGINE_STUDY,
        f"runtime.env.VLLM_CPU_KVCACHE_SPACE={OOM_KV_GIB},1,2",
        env=_cpu_env(tmp_path, tiny_model),
        on_tick=kill_second_engine,
        timeout=1500,
    )
    assert study.returncode == 0, study.output[-5000:]
    assert killed, study.output[-3000:]
    study.assert_nothing_left()
    _, trials = study.runs()
    rows = [r for _, r in trials.sort_values("start_time").iterrows()]
    assert [outcome(r) for r in rows] == ["oom", "crash", "ok"], study.output[-3000:]
    assert "engine exited with code -9 during the benchmark" in study.artifact(
        rows[1]["run_id"], "failure.txt"
    )
    for r in rows:
        assert "logs/engine.log" in artifact_paths(tmp_path, r["run_id"], "logs")


OOM_KV_GIB = 100000


def _trials_started(run: Running) -> int:
    """How many trial (job) directories the sweep has made so far."""
    return len(list(run.tmp.glob("multirun/*/*/[0-9]*")))
