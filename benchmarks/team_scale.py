"""Does a second worker halve a study's wall time? (docs/team.md)

A fixed budget of trials on the simulator in REAL-TIME mode (``deploy=sim``: a
simulated SGLang HTTP server per trial, driven by genai-bench) runs twice against a
real PostgreSQL (Optuna storage) and a real ``mlflow server`` (PostgreSQL backend),
both started here on loopback:

1. one worker with the whole budget (``search.n_trials=B``);
2. two workers started at once, each with half (``search.worker=w1|w2``,
   ``search.n_trials=B/2``), sharing one study.

A trial's time should be the (simulated) engine's, as on a GPU host, where engine
start-up and benchmark take minutes and the tuner's own CPU work seconds: the
simulated engine takes ``--startup-s`` (default 60 s, about what SGLang needs to
load an 8B model and capture CUDA graphs) to start, then serves one user two long
outputs (~15 s). What is left is this machine's CPU work per trial (autotune,
genai-bench start-up, streaming; ~15 CPU-s), which two workers share 2 cores for,
so the ratio shows what the study coordination costs. ``--startup-s 1`` is the
light workload where that CPU work dominates. The baseline trial is off so that
both runs do the same work. Prints one JSON record (wall times, CPU seconds used
by the workers, load averages); the target is ``ratio <= 0.6``.

    .venv/bin/python benchmarks/team_scale.py              # B = 6, ~15 min on 2 cores
    .venv/bin/python benchmarks/team_scale.py --budget 8 --startup-s 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "team"))

from team_servers import MlflowServer, Postgres  # noqa: E402

WORKLOAD = [
    "search=tpe",
    "search.baseline=false",
    "deploy=sim",
    "benchmark=quick",
    'benchmark.scenarios=["D(256,1024)"]',
    "benchmark.concurrency=[1]",
    "benchmark.max_requests_per_run=2",
    "objective=throughput",
]


def workload(startup_s: float) -> list[str]:
    # The sim's start-up is asyncio sleeps (no CPU); give readiness room for it.
    timeout = max(60, int(startup_s * 3))
    return [*WORKLOAD, f"deploy.startup_s={startup_s:g}", f"deploy.startup_timeout_s={timeout}"]


def cpu_children_s() -> float:
    """CPU seconds (user + system) of all waited-for descendants so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_workers(
    workers: dict[str, int],
    storage: str,
    tracking: str,
    workdir: Path,
    name: str,
    work: list[str],
) -> float:
    """Start one sweep process per worker at once; seconds until the last one exits."""
    procs = {}
    start = time.perf_counter()
    for worker, n_trials in workers.items():
        cmd = [
            sys.executable,
            "-m",
            "autotune",
            *work,
            f"search.n_trials={n_trials}",
            f"search.storage={storage}",
            f"tracking.uri={tracking}",
            f"tracking.experiment={name}",
            f"study.name={name}",
            f"hydra.sweep.dir={workdir}/{name}/{worker}",
            *([f"search.worker={worker}"] if len(workers) > 1 else []),
        ]
        log = open(workdir / f"{name}-{worker}.log", "wb")  # noqa: SIM115 - the child's
        env = {**os.environ, "AUTOTUNE_STATE_DIR": str(workdir / "state")}
        procs[worker] = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    for worker, proc in procs.items():
        if proc.wait() != 0:
            log = (workdir / f"{name}-{worker}.log").read_text(errors="replace")
            raise SystemExit(f"worker {worker} failed:\n{log[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=6, help="trials in the study (even)")
    p.add_argument(
        "--startup-s", type=float, default=60.0, help="simulated engine start-up per trial"
    )
    args = p.parse_args()
    half = args.budget // 2
    work = workload(args.startup_s)
    record: dict = {"benchmark": "team_scale", "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    workdir = Path(tempfile.mkdtemp(prefix="team-scale-"))
    with Postgres.start() as pg:
        pg.create_database("mlflow")
        pg.create_database("optuna")
        with MlflowServer.start(pg.url("mlflow"), workdir / "mlflow") as server:
            tag = uuid.uuid4().hex[:6]
            for key, workers in (("one", {"w1": 2 * half}), ("two", {"w1": half, "w2": half})):
                record[f"load_before_{key}"] = loadavg()
                cpu0 = cpu_children_s()
                wall = run_workers(
                    workers, pg.url("optuna"), server.url, workdir, f"{key}-{tag}", work
                )
                record[f"{key}_s"] = round(wall, 1)
                record[f"{key}_workers_cpu_s"] = round(cpu_children_s() - cpu0, 1)
                record[f"load_after_{key}"] = loadavg()
    shutil.rmtree(workdir, ignore_errors=True)
    record.update(
        budget=2 * half,
        workload=work,
        ratio=round(record["two_s"] / record["one_s"], 3),
        target=0.6,
        cpus=os.cpu_count(),
    )
    print(json.dumps(record))


if __name__ == "__main__":
    main()
