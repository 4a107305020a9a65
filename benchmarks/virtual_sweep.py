"""How long does a 100-trial study on the simulator's virtual clock take, end to end?

The whole command a user runs (Hydra, the Optuna sweeper, MLflow in a fresh
``mlflow.db``, the summary, the export and the figures), in a fresh directory:

    python -m autotune search=random search.n_trials=100 deploy=sim deploy.clock=virtual

Prints one JSON object: wall and CPU seconds, trials recorded in MLflow, and the
load average before the run (other work on the machine inflates the wall time).

    .venv/bin/python benchmarks/virtual_sweep.py [--trials 100] [--search random]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(trials: int, search: str, keep: Path | None) -> dict:
    workdir = Path(keep or tempfile.mkdtemp(prefix="autotune-virtual-sweep-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "autotune",
        f"search={search}",
        f"search.n_trials={trials}",
        "deploy=sim",
        "deploy.clock=virtual",
        f"hydra.sweep.dir={workdir / 'sweep'}",
    ]
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the study failed (exit {proc.returncode})")
    with sqlite3.connect(workdir / "mlflow.db") as db:
        finished = db.execute(
            "SELECT COUNT(*) FROM runs JOIN tags ON runs.run_uuid = tags.run_uuid "
            "WHERE tags.key = 'autotune.role' AND tags.value = 'trial' "
            "AND runs.status = 'FINISHED'"
        ).fetchone()[0]
    return {
        "command": " ".join(["python", *cmd[1:-1]]),
        "trials_requested": trials,
        "trial_runs_finished": finished,
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "load_avg_before": round(load_before, 2),
        "cpus": os.cpu_count(),
        "workdir": str(workdir),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--search", default="random", help="a conf/search/ choice")
    parser.add_argument("--keep", type=Path, help="run in this directory (default: a temp dir)")
    args = parser.parse_args()
    print(json.dumps(run(args.trials, args.search, args.keep)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
