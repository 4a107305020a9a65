"""Prefix caching on the simulator: what lpm and the radix cache buy, per workload.

Virtual clock, Llama-3.1-8B FP8 on one H200 (the simulator's own numbers, not a
GPU's). Three workloads of 64 closed-loop users, 3200-token prompts, 128 output
tokens, 1024 requests, on a KV pool capped at 60k tokens (``max-total-tokens``):

- ``docs``: each prompt is one of 16 documents of 3000 tokens plus its own 200
  tokens (RAG-like). The documents (48k tokens) and the running requests do not fit
  the pool together, so the order requests are admitted in decides what stays
  cached: lpm admits those whose document is cached first;
- ``one-prefix``: every prompt starts with the same 3000 tokens (genai-bench's
  ``--prefix-len 3000``): once cached it serves everyone, whatever the order;
- ``none``: nothing shared.

Each is run with fcfs and lpm, and ``one-prefix`` also with ``--disable-radix-cache``,
for several seeds (which document each request draws). The replay is
deterministic for a seed: the spread across seeds is the workload's, not noise.

    python benchmarks/prefix_cache.py --json             # one line per (workload, policy)
    python benchmarks/prefix_cache.py --seeds 3

Results: docs/workloads.md.
"""

from __future__ import annotations

import argparse
import json
import statistics

from rich.console import Console
from rich.table import Table

from autotune.sim.predict import summarize
from autotune.sim.replay import replay_closed_loop
from autotune.sim.settings import build_engine

MODEL = dict(model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
DOC_LEN, ISL, OSL, USERS, REQUESTS, POOL = 3000, 3200, 128, 64, 1024, 60_000
WORKLOADS = {"docs": 16, "one-prefix": 1, "none": 0}
CASES = [
    ("docs", "fcfs", {}),
    ("docs", "lpm", {}),
    ("one-prefix", "fcfs", {}),
    ("one-prefix", "lpm", {}),
    ("one-prefix", "fcfs, radix off", {"disable-radix-cache": True}),
    ("none", "fcfs", {}),
    ("none", "lpm", {}),
]


def run(workload: str, policy: str, flags: dict, seed: int) -> dict:
    """One replay's summary, plus the engine's own hit-rate gauge (``engine_hit_rate``).
    tests/sim/test_prefix_cache.py asserts the relations docs/workloads.md quotes."""
    groups = WORKLOADS[workload]
    eng = build_engine(
        {"schedule-policy": policy.split(",")[0], "max-total-tokens": POOL, **flags}, **MODEL
    )
    prefix = (lambda rng: (DOC_LEN, f"doc-{rng.randrange(groups)}")) if groups else None
    recs = replay_closed_loop(
        eng,
        concurrency=USERS,
        num_requests=REQUESTS,
        sample_lengths=lambda rng: (ISL, OSL),
        sample_prefix=prefix,
        seed=seed,
    )
    failed = [r.rid for r in recs if not r.ok]
    if failed:
        raise RuntimeError(f"{workload}/{policy}: {len(failed)} requests failed")
    return summarize(recs) | {"engine_hit_rate": eng.stats().cache_hit_rate}


def measure(seeds: int) -> list[dict]:
    rows = []
    for workload, policy, flags in CASES:
        runs = [run(workload, policy, flags, seed) for seed in range(1, seeds + 1)]
        row = {"workload": workload, "policy": policy, "seeds": seeds}
        for key in ("output_throughput_tok_s", "ttft_ms_p50", "ttft_ms_p99", "cache_hit_rate"):
            values = [r[key] for r in runs]
            row[key] = round(statistics.mean(values), 3)
            row[f"{key}_min"] = round(min(values), 3)
            row[f"{key}_max"] = round(max(values), 3)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    args = parser.parse_args()
    rows = measure(args.seeds)
    console = Console()
    if args.json:
        for row in rows:
            console.print_json(json.dumps(row))
        return
    table = Table(title=f"prefix caching, virtual clock, {args.seeds} seeds (mean [min-max])")
    for col in ("workload", "policy", "output tok/s", "TTFT p50 ms", "TTFT p99 ms", "hit rate"):
        table.add_column(col)
    for r in rows:

        def cell(key: str, r: dict = r) -> str:
            return f"{r[key]:.0f} [{r[key + '_min']:.0f}-{r[key + '_max']:.0f}]"

        table.add_row(
            r["workload"],
            r["policy"],
            cell("output_throughput_tok_s"),
            cell("ttft_ms_p50"),
            cell("ttft_ms_p99"),
            f"{r['cache_hit_rate']:.3f} [{r['cache_hit_rate_min']:.3f}-{r['cache_hit_rate_max']:.3f}]",
        )
    console.print(table)


if __name__ == "__main__":
    main()
