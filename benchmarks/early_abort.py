"""Early abort: how much benchmark time it saves, and whether it ever stops a trial that
would have met its SLOs.

Each sampled configuration of the reference SGLang space (Llama-3.1-8B on a
simulated H100, conf/search/space/sglang.yaml) runs twice on the virtual clock with
the same deployment noise: all levels (``benchmark.early_abort=false``) and with
early abort. The workload has three levels (16, 64, 128 users of D(2048,512)); the
SLO (p99 TTFT <= 8 s) is read at the highest (``objective.concurrency=128``), so a
trial can be doomed by what the lower levels show: a batch cap
(``max-running-requests``) below the users queues them, and TTFT grows.

    python benchmarks/early_abort.py --json
    python benchmarks/early_abort.py --json --override objective.slo.ttft_p99_ms=20000

``--json`` prints one line: ``{"configs", "aborted", "false_aborts",
"benchmark_s_full", "benchmark_s_with_abort", "benchmark_time_saved",
"engine_time_saved_with_startup_120s", "abort_margin", "noise", "seconds"}``.
``false_aborts`` counts aborted trials whose full run met the SLOs,
``infeasible_full`` the trials that miss the SLOs when run in full. Results:
docs/search.md (Early abort and pruners).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from search_efficiency import compose_study, grid_keys, search_space, trial_params  # noqa: E402

from autotune.benchmark.parse import parse_experiment  # noqa: E402
from autotune.params import normalize  # noqa: E402
from autotune.trial.executor import run_trial  # noqa: E402
from autotune.trial.spec import TrialSpec  # noqa: E402

STUDY = [
    "+experiment=sglang-slo-search",
    'benchmark.scenarios=["D(2048,512)"]',
    "benchmark.concurrency=[16,64,128]",
    "benchmark.max_requests_per_run=512",
    "objective=throughput_slo",
    "objective.concurrency=128",
    "objective.slo.ttft_p99_ms=8000",
]
STARTUP_S = 120.0  # a typical engine start on a GPU (issue 14's accounting)


def run(cfg, flags, workdir: Path) -> tuple[bool | None, bool, float]:
    """(feasible or None when unscored, pruned, benchmark seconds on the virtual clock)."""
    result = run_trial(TrialSpec(cfg, flags, name="abort", study="abort", workdir=workdir))
    folder = workdir / "genai-bench"
    seconds = sum(r.duration_s for r in parse_experiment(folder).runs) if folder.exists() else 0
    feasible = result.score.feasible if result.score is not None else None
    return feasible, bool(result.pruned), seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=48, help="sample size; 0 = all 480")
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--override", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    study = [*STUDY, f"deploy.noise={args.noise}", f"deploy.seed={args.seed}", *args.override]
    cfg_abort = compose_study("tpe", study=study)
    cfg_full = compose_study("tpe", study=[*study, "benchmark.early_abort=false"])
    space, fixed = search_space(cfg_abort)
    keys = grid_keys(space)
    if args.configs:
        keys = random.Random(args.seed).sample(keys, min(args.configs, len(keys)))
    started = time.monotonic()
    rows = []
    for key in keys:
        params = trial_params(space, fixed, key)
        flags = normalize(params, cfg_abort.runtime.flags, cfg_abort.runtime.aliases)
        with tempfile.TemporaryDirectory() as tmp:
            full = run(cfg_full, flags, Path(tmp) / "full")
            cut = run(cfg_abort, flags, Path(tmp) / "cut")
        if full[0] is not None:  # start-up failures cost the same either way
            rows.append((full, cut))
    full_s = sum(f[2] for f, _ in rows)
    cut_s = sum(c[2] for _, c in rows)
    n = len(rows)
    out = {
        "configs": n,
        "aborted": sum(1 for _, c in rows if c[1]),
        "false_aborts": sum(1 for f, c in rows if c[1] and f[0]),
        "infeasible_full": sum(1 for f, _ in rows if not f[0]),
        "benchmark_s_full": round(full_s, 1),
        "benchmark_s_with_abort": round(cut_s, 1),
        "benchmark_time_saved": round(1 - cut_s / full_s, 4) if full_s else None,
        "engine_time_saved_with_startup_120s": round(
            1 - (cut_s + n * STARTUP_S) / (full_s + n * STARTUP_S), 4
        )
        if n
        else None,
        "abort_margin": float(cfg_abort.benchmark.abort_margin),
        "noise": args.noise,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
