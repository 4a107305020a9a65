"""Run ``python -m autotune`` as a user would, and watch every process it starts.

A study runs in a fresh directory with its own MLflow sqlite store and state
directory. While it runs, every descendant of the tuner is recorded by PID (with
its command line as seen then) together with the sockets it listens on, so a test
can check afterwards that none survived and that engines bound to loopback. An
``on_tick`` callback sees the running study and may act on it (send the tuner a
signal, lock the tracking store, ...); it returns True to stop being called.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
# A small workload on the simulated engine: one level, few short requests.
SMALL = [
    "benchmark.concurrency=[4]",
    "benchmark.max_requests_per_run=12",
    'benchmark.scenarios=["D(256,64)"]',
]
# A real vLLM (CPU build, deploy=local_cpu) serving the tiny local model, one small
# level. Concurrency 2 against max-num-seqs 1 queues requests in the engine.
CPU_ENGINE_STUDY = [
    "deploy=local_cpu",
    "runtime=vllm_cpu",
    "model=tiny-llama-local",
    # Only the command line's lists (the default grid also sweeps params.mem).
    "search=none",
    # No torch.compile warm-up: it takes ~70 s of each start-up on 2 cores, and what is
    # tested is the tuner around a real engine, not the engine's fastest mode.
    "params.enforce-eager=true",
    'benchmark.scenarios=["D(64,32)"]',
    "benchmark.concurrency=[2]",
    "benchmark.max_requests_per_run=8",
    "benchmark.max_time_per_run_min=1",
    "benchmark.timeout_s=300",
]
SIM_ENGINE = "autotune.sim.server"


def _quick(args: tuple[str, ...]) -> list[str]:
    """Tests that do not test the confirmation stage skip it (CI time): it adds
    (top_k + 1) x repeats trials to every study."""
    if any(a.startswith(("search.confirm", "+search.confirm")) for a in args):
        return list(args)
    return [*args, "search.confirm.enabled=false"]


GENAI_BENCH = "genai_bench"


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


@dataclass
class Running:
    """A study in progress, as ``on_tick`` sees it."""

    proc: subprocess.Popen
    tmp: Path
    seen: dict[int, tuple[psutil.Process, str]]
    started: float

    def alive(self, marker: str) -> list[psutil.Process]:
        """Descendants running now whose command line contains ``marker``."""
        return [p for p, cmd in self.seen.values() if marker in cmd and p.is_running() and _live(p)]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


@dataclass
class Study:
    """A finished study: exit code, terminal output, every process it started."""

    returncode: int
    output: str
    tmp: Path
    seen: dict[psutil.Process, str] = field(default_factory=dict)
    listening: set[tuple[str, int]] = field(default_factory=set)

    def runs(self):
        return runs(self.tmp)

    def artifact(self, run_id: str, path: str) -> str:
        return artifact_text(self.tmp, run_id, path)

    def processes(self, marker: str) -> list[psutil.Process]:
        return [p for p, cmd in self.seen.items() if marker in cmd]

    def assert_nothing_left(self) -> None:
        """Every process the tuner started is gone (checked by PID, never by name)."""
        _, alive = psutil.wait_procs(list(self.seen), timeout=15)
        alive = [p for p in alive if _live(p)]
        assert not alive, f"left running: {[(p.pid, self.seen[p]) for p in alive]}"

    def assert_loopback_only(self) -> None:
        """Servers it started listened on 127.0.0.1 only, never on port 8443."""
        assert self.listening, "no listening socket was seen"
        assert {ip for ip, _ in self.listening} == {"127.0.0.1"}, self.listening
        assert 8443 not in {port for _, port in self.listening}


def _live(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def study_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state"), **extra}


def run_cli(
    tmp_path: Path, *args: str, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess:
    """Run the tuner to completion in ``tmp_path`` and capture its output (no watching);
    ``check``: fail the test, with the output's tail, unless it exits 0."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotune",
            *_quick(args),
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
        cwd=tmp_path,
        env=study_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def run_study(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    on_tick: Callable[[Running], bool | None] | None = None,
    tracking_uri: str | None = None,
) -> Study:
    """Run the tuner to completion in ``tmp_path`` while recording its descendants."""
    uri = tracking_uri or f"sqlite:///{tmp_path}/mlflow.db"
    log_path = tmp_path / f"autotune-{time.monotonic_ns()}.out"
    seen: dict[int, tuple[psutil.Process, str]] = {}
    listening: set[tuple[str, int]] = set()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autotune", *_quick(args), f"tracking.uri={uri}"],
            cwd=tmp_path,
            env=env or study_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        tuner = psutil.Process(proc.pid)
        running = Running(proc, tmp_path, seen, time.monotonic())
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"the study ran over {timeout:.0f} s:\n{_tail(log_path)}")
                with contextlib.suppress(psutil.NoSuchProcess):
                    for k in tuner.children(recursive=True):
                        # Read again each tick: a child seen between fork and exec
                        # still shows the tuner's own command line.
                        known, cmd = seen.get(k.pid, (k, "")), cmdline(k)
                        seen[k.pid] = (known[0], cmd or known[1])
                        with contextlib.suppress(psutil.Error):
                            for c in k.net_connections(kind="inet"):
                                if c.status == psutil.CONN_LISTEN:
                                    listening.add((c.laddr.ip, c.laddr.port))
                if on_tick is not None and on_tick(running):
                    on_tick = None
                time.sleep(0.2)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:  # a failed assertion above: leave nothing behind
                for p in [*(k for k, _ in seen.values()), tuner]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
                proc.wait(timeout=30)
    return Study(
        proc.returncode,
        log_path.read_text(errors="replace"),
        tmp_path,
        dict(seen.values()),
        listening,
    )


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:]


def runs(tmp_path: Path):
    """(sweep runs, trial runs) of the study's MLflow store, as DataFrames."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    if df.empty:
        return df, df
    return df[df["tags.autotune.role"] == "sweep"], df[df["tags.autotune.role"] == "trial"]


def search_space(tmp_path: Path, params_yaml: str) -> list[str]:
    """The overrides that make ``params_yaml`` (a ``hydra.sweeper.params`` package) the
    study's search space, written under ``tmp_path/conf``."""
    space = tmp_path / "conf" / "search" / "space"
    space.mkdir(parents=True, exist_ok=True)
    (space / "tiny.yaml").write_text(params_yaml)
    return [
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "search/space@hydra.sweeper.params=tiny",
    ]


def optuna_study(tmp_path: Path) -> optuna.Study:
    """The one Optuna study a test's sweep stored in ``tmp_path/optuna.db``."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def artifact_text(tmp_path: Path, run_id: str, path: str) -> str:
    dest = tmp_path / "artifacts" / run_id
    dest.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return Path(client.download_artifacts(run_id, path, str(dest))).read_text(errors="replace")


def artifact_paths(tmp_path: Path, run_id: str, folder: str | None = None) -> set[str]:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return {a.path for a in client.list_artifacts(run_id, folder)}
