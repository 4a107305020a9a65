"""How long does ``python -m autotune doctor`` take? The goal: the default study (sim)
passes in <= 5 s, start-up of the interpreter included, so that users run it freely and
a study's own preflight costs little.

Runs the command ``--repeats`` times (default 5) in a fresh directory and reports the
wall time of each, the median and the spread; and how long a study on a blocked target
(deploy=docker, no daemon) takes to stop.

    .venv/bin/python benchmarks/doctor_time.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIM_TOKENIZER = ROOT / "autotune" / "sim" / "tokenizer"


def timed(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - started, proc.returncode


def series(argv: list[str], repeats: int, env_extra: dict[str, str] | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AUTOTUNE_STATE_DIR": f"{tmp}/state", **(env_extra or {})}
        runs = [timed(argv, tmp, env) for _ in range(repeats)]
    seconds = [round(s, 2) for s, _ in runs]
    return {
        "command": " ".join(argv[2:]),
        "exit_codes": sorted({rc for _, rc in runs}),
        "seconds": seconds,
        "median_s": round(statistics.median(seconds), 2),
        "min_s": min(seconds),
        "max_s": max(seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    py = [sys.executable, "-m", "autotune"]
    out = {
        "doctor (sim default)": series([*py, "doctor"], args.repeats),
        "study blocked by the preflight (docker, no daemon)": series(
            [*py, "deploy=docker", f"model.tokenizer={SIM_TOKENIZER}", "search=none"],
            args.repeats,
            {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        ),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
