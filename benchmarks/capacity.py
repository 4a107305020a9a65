"""Capacity under SLO: does the bisection ladder find the exhaustive ladder's answer?

For each configuration of a reference space (the SGLang space of
conf/search/space/sglang.yaml, 480 configurations, on Llama-3.1-8B and a simulated
H100 where the KV pool limits the batch, so capacity varies), on the simulator's
virtual clock:

- **exhaustive**: every level of ``objective.ladder`` run against one deployment;
  capacity = the highest level such that it and every lower level meet the SLOs
  (autotune.benchmark.capacity.capacity_from_levels);
- **bisection**: the trial executor with ``objective=capacity`` (the ladder a study
  runs), counting the levels it probed.

Both deployments of a configuration have the same noise key (``deploy.noise``):
the same deployment factor, but the step jitter is drawn in the order the levels
run, so near the boundary a level can flip between the two, as it would between
two runs on a GPU. ``--noise 0`` measures the algorithm alone.

    python benchmarks/capacity.py --json                  # 96 configurations, noise 1
    python benchmarks/capacity.py --json --configs 0      # all 480
    python benchmarks/capacity.py --json --noise 0

``--json`` prints one line: ``{"configs", "agreement", "agreement_interval_95",
"levels_fraction",
"probes_mean", "ladder_levels", "noise", "distinct_capacities", "disagreements",
"seconds"}`` where ``agreement`` is the share of configurations with the same
capacity and ``levels_fraction`` the bisection's levels over the exhaustive
ladder's. Results: docs/capacity.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from omegaconf import DictConfig  # noqa: E402
from search_efficiency import compose_study, grid_keys, search_space, trial_params  # noqa: E402

from autotune.benchmark.capacity import capacity_from_levels  # noqa: E402
from autotune.objective import Objective  # noqa: E402
from autotune.params import normalize  # noqa: E402
from autotune.trial.executor import run_trial  # noqa: E402
from autotune.trial.spec import TrialSpec  # noqa: E402

log = logging.getLogger("capacity")

STUDY = [
    # Llama-3.1-8B on a simulated H100, the reference SGLang space (480 configurations).
    "+experiment=sglang-slo-search",
    "objective=capacity",
    # Bounds where the capacity varies over the space (docs/capacity.md): the p99 TTFT
    # of a closed-loop start grows with the users, the batch cap queues the rest.
    "objective.slo.ttft_p99_ms=10000",
    "objective.slo.tpot_mean_ms=30",
    'benchmark.scenarios=["D(2048,512)"]',
    "benchmark.max_requests_per_run=512",
]


def _run(cfg: DictConfig, flags: dict[str, Any], workdir: Path) -> Any:
    spec = TrialSpec(cfg, flags, name="capacity", study="capacity", workdir=workdir)
    return run_trial(spec)


def measure(cfg_ladder: DictConfig, cfg_all: DictConfig, params: dict[str, Any]) -> dict | None:
    """One configuration: (exhaustive capacity, bisection capacity, probes)."""
    flags = normalize(dict(params), cfg_ladder.runtime.flags, cfg_ladder.runtime.aliases)
    with tempfile.TemporaryDirectory() as tmp:
        full = _run(cfg_all, flags, Path(tmp) / "all")
        if not full.metrics:
            return None  # fails start-up (e.g. KV pool too small): no capacity at all
        ladder = _run(cfg_ladder, flags, Path(tmp) / "ladder")
    obj = Objective.from_config(cfg_ladder.objective)
    levels = [int(c) for c in cfg_ladder.objective.ladder]
    return {
        "exhaustive": capacity_from_levels(obj, full.metrics, levels),
        "bisection": int(ladder.metrics["capacity_concurrency"]),
        "probes": len(ladder.levels),
        "params": params,
    }


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion k/n."""
    p, zz = k / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n * n)) / (1 + zz / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=96, help="sample size; 0 = all")
    ap.add_argument("--noise", type=float, default=1.0, help="deploy.noise (0 = exact)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--override", action="append", default=[], help="more overrides")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    study = [*STUDY, f"deploy.noise={args.noise}", f"deploy.seed={args.seed}", *args.override]
    cfg_ladder = compose_study("tpe", study=study)
    levels = [int(c) for c in cfg_ladder.objective.ladder]
    # The exhaustive ladder: every level in one run, no SLO (nothing stops it).
    cfg_all = compose_study(
        "tpe",
        study=[*study, "objective=throughput", f"benchmark.concurrency={levels}"],
    )
    space, fixed = search_space(cfg_ladder)
    keys = grid_keys(space)
    if args.configs:
        keys = random.Random(args.seed).sample(keys, min(args.configs, len(keys)))
    started = time.monotonic()
    rows = [r for k in keys if (r := measure(cfg_ladder, cfg_all, trial_params(space, fixed, k)))]
    same = [r for r in rows if r["exhaustive"] == r["bisection"]]
    probes = sum(r["probes"] for r in rows)
    out = {
        "configs": len(rows),
        "agreement": round(len(same) / len(rows), 4) if rows else None,
        "agreement_interval_95": wilson(len(same), len(rows)) if rows else None,
        "levels_fraction": round(probes / (len(rows) * len(levels)), 4) if rows else None,
        "probes_mean": round(probes / len(rows), 2) if rows else None,
        "ladder_levels": len(levels),
        "noise": args.noise,
        "distinct_capacities": dict(sorted(Counter(r["exhaustive"] for r in rows).items())),
        "disagreements": [
            {k: r[k] for k in ("exhaustive", "bisection", "params")} for r in rows if r not in same
        ],
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
