"""How long the simulator pre-screen of a 600-configuration space takes, and what a
cheaper screen (fewer requests per level) costs in ranking agreement.

For each landscape of benchmarks/gpu_hours.py, the whole pre-screen
(autotune.study.prescreen.run_prescreen: score every configuration through the trial
executor, then plan) runs in ``--workers`` processes (wall time, with the machine's
load average: this machine is shared) and in one process (its CPU time, what it takes
on a free core). With ``--requests N`` a cheaper screen (N requests per level) is
compared with the full one: Spearman rank correlation of the predicted objective,
whether the first enqueued configuration is the same, and how many exclusion
decisions differ.

    python benchmarks/prescreen_speed.py --json --workers 2 --requests 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_hours import LANDSCAPES, SPACE, study_config  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from autotune.study.prescreen import Plan, run_prescreen  # noqa: E402


def ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share theirs)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.correlation(ranks(a), ranks(b))


def _value(plan: Plan, key: Any) -> float:
    p = plan.prediction(key)
    return p.values[0] if p.values else -1e9


def screen(landscape: str, workers: int, requests: int | None) -> Plan:
    cfg = study_config(landscape, {}, "tpe")
    with open_dict(cfg):
        cfg.search.prescreen = "sim"
        cfg.search.prescreen_workers = workers
        cfg.search.prescreen_requests = requests
    return run_prescreen(cfg, SPACE, {}, ["maximize"])


def timed(landscape: str, workers: int, requests: int | None) -> tuple[Plan, dict[str, Any]]:
    """The pre-screen, its wall time and the machine's load; with one worker also its
    CPU time (what it costs on free cores, whatever else the machine runs)."""
    cpu = time.process_time()
    plan = screen(landscape, workers, requests)
    record = {
        "landscape": landscape,
        "configurations": len(plan.predictions),
        "workers": workers,
        "requests_per_level": requests or "benchmark's own",
        "seconds": round(plan.seconds, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    if workers == 1:
        record["cpu_seconds"] = round(time.process_time() - cpu, 1)
    return plan, record


def compare(landscape: str, workers: int, requests: int | None) -> list[dict[str, Any]]:
    full, record = timed(landscape, workers, None)
    records = [record, timed(landscape, 1, None)[1]]
    if requests:
        cheap, record = timed(landscape, workers, requests)
        keys = [p.key for p in full.predictions]
        values = [_value(full, k) for k in keys], [_value(cheap, k) for k in keys]
        record["spearman_vs_full"] = round(spearman(*values), 4)
        record["same_first_enqueued"] = full.enqueue[:1] == cheap.enqueue[:1]
        record["exclusions_differing"] = len(set(full.excluded) ^ set(cheap.excluded))
        records.append(record)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--requests", type=int, default=None, help="also a cheaper screen")
    p.add_argument("--landscapes", nargs="+", default=list(LANDSCAPES))
    args = p.parse_args(argv)
    t0 = time.monotonic()
    for landscape in args.landscapes:
        for record in compare(landscape, args.workers, args.requests):
            print(json.dumps(record) if args.json else record, flush=True)
    print(f"# {time.monotonic() - t0:.0f} s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
