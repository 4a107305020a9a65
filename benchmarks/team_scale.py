"""Does a second worker halve a study's wall time? (docs/team.md)

A fixed budget of trials on the simulator in REAL-TIME mode (``deploy=sim``: a
simulated SGLang HTTP server per trial, driven by genai-bench) runs twice against a
real PostgreSQL (Optuna storage) and a real ``mlflow server`` (PostgreSQL backend),
both started here on loopback:

1. one worker with the whole budget (``search.n_trials=B``);
2. two workers started at once, each with half (``search.worker=w1|w2``,
   ``search.n_trials=B/2``), sharing one study.

The workload is light on CPU (one user, long outputs: the time is the simulated
engine's, not this machine's 2 cores'), so the ratio shows what the study
coordination costs. The baseline trial is off so that both runs do the same work.
Prints one JSON record; the target is ``ratio <= 0.6``.

    .venv/bin/python benchmarks/team_scale.py              # B = 6, ~10 min on 2 cores
    .venv/bin/python benchmarks/team_scale.py --budget 8
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_workers(
    workers: dict[str, int], storage: str, tracking: str, workdir: Path, name: str
) -> float:
    """Start one sweep process per worker at once; seconds until the last one exits."""
    procs = {}
    start = time.perf_counter()
    for worker, n_trials in workers.items():
        cmd = [
            sys.executable,
            "-m",
            "autotune",
            *WORKLOAD,
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
    args = p.parse_args()
    half = args.budget // 2
    workdir = Path(tempfile.mkdtemp(prefix="team-scale-"))
    with Postgres.start() as pg:
        pg.create_database("mlflow")
        pg.create_database("optuna")
        with MlflowServer.start(pg.url("mlflow"), workdir / "mlflow") as server:
            tag = uuid.uuid4().hex[:6]
            one = run_workers({"w1": 2 * half}, pg.url("optuna"), server.url, workdir, f"one-{tag}")
            two = run_workers(
                {"w1": half, "w2": half}, pg.url("optuna"), server.url, workdir, f"two-{tag}"
            )
    shutil.rmtree(workdir, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "team_scale",
                "budget": 2 * half,
                "workload": WORKLOAD,
                "one_worker_s": round(one, 1),
                "two_workers_s": round(two, 1),
                "ratio": round(two / one, 3),
                "target": 0.6,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
