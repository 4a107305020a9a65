"""What one genai-bench process per level costs: the same trial with its levels in one
genai-bench run and one run per level, on the real-time simulated engine.

Each repeat runs both modes against a fresh simulated SGLang server (deploy=sim,
clock=realtime, real genai-bench over HTTP), alternating which goes first. The
extra seconds per added process = (per-level wall - single wall) / (levels - 1);
the median and range over the repeats are printed.

    python benchmarks/level_overhead.py --json
    python benchmarks/level_overhead.py --repeats 5 --levels 1 2 4

``--json`` prints one line: ``{"levels", "repeats", "single_s", "per_level_s",
"extra_s_per_process_median", "extra_s_per_process_range"}``. Result: docs/capacity.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from search_efficiency import compose_study  # noqa: E402

from autotune.trial.executor import run_trial  # noqa: E402
from autotune.trial.spec import TrialSpec  # noqa: E402


def benchmark_seconds(overrides: list[str], workdir: Path) -> float:
    """Wall seconds of the trial minus its engine start-up (= warm-up + benchmark)."""
    cfg = compose_study("none", study=overrides)
    started = time.monotonic()
    result = run_trial(TrialSpec(cfg, {}, name="overhead", study="overhead", workdir=workdir))
    if not result.ok:
        raise SystemExit(f"the trial failed: {result.message}")
    return time.monotonic() - started - (result.startup_s or 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    base = [
        "deploy=sim",
        "deploy.clock=realtime",
        'benchmark.scenarios=["D(128,32)"]',
        f"benchmark.concurrency={args.levels}",
        "benchmark.max_requests_per_run=16",
        "benchmark.max_time_per_run_min=1",
    ]
    # One process: no policy. Per level: early abort with an SLO nothing can miss.
    single = [*base, "benchmark.early_abort=false"]
    each = [*base, "objective=throughput_slo", f"objective.concurrency={max(args.levels)}",
            "objective.slo.ttft_p99_ms=1e9"]  # fmt: skip
    one, per = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = [(single, one), (each, per)] if i % 2 == 0 else [(each, per), (single, one)]
            for j, (overrides, out) in enumerate(order):
                out.append(benchmark_seconds(overrides, Path(tmp) / f"r{i}-{j}"))
    extra = [(p - o) / (len(args.levels) - 1) for o, p in zip(one, per, strict=True)]
    result = {
        "levels": args.levels,
        "repeats": args.repeats,
        "single_s": [round(x, 2) for x in one],
        "per_level_s": [round(x, 2) for x in per],
        "extra_s_per_process_median": round(statistics.median(extra), 2),
        "extra_s_per_process_range": [round(min(extra), 2), round(max(extra), 2)],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
