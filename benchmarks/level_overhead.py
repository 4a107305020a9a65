"""What one genai-bench process per level costs: the same levels in one genai-bench
run and in one run per level, against one real-time simulated engine.

A simulated SGLang server (deploy=sim, clock=realtime) is started once; each repeat
runs genai-bench over HTTP with every level in one process, and with one process
per level, alternating which goes first. The extra seconds per added process =
(per-level wall - single wall) / (levels - 1); the median and range over the
repeats are printed. Early abort and pruners avoid this cost (they watch one
process); the capacity ladder pays it once per probe.

    python benchmarks/level_overhead.py --json
    python benchmarks/level_overhead.py --repeats 5 --levels 1 2 4

``--json`` prints one line: ``{"levels", "repeats", "single_s", "per_level_s",
"extra_s_per_process_median", "extra_s_per_process_range"}``. Result: docs/capacity.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from search_efficiency import compose_study  # noqa: E402

from autotune.benchmark.genai_bench import run_genai_bench  # noqa: E402
from autotune.deploy import create_launcher  # noqa: E402
from autotune.deploy.readiness import wait_ready  # noqa: E402
from autotune.trial.spec import TrialSpec  # noqa: E402


def timed(endpoint, workload, folder: Path) -> float:
    started = time.monotonic()
    run = run_genai_bench(
        endpoint.base_url, endpoint.model_name, endpoint.info["tokenizer"], workload, folder,
        timeout_s=600,
    )  # fmt: skip
    if not run.ok:
        raise SystemExit(f"genai-bench failed: {run.log_tail()}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = compose_study(
        "none",
        study=[
            "deploy=sim",
            "deploy.clock=realtime",
            'benchmark.scenarios=["D(128,32)"]',
            f"benchmark.concurrency={args.levels}",
            "benchmark.max_requests_per_run=16",
            "benchmark.max_time_per_run_min=1",
        ],
    )
    one, per = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spec = TrialSpec(cfg, {}, name="overhead", study="overhead", workdir=Path(tmp) / "e")
        launcher = create_launcher(cfg.deploy)
        endpoint = launcher.start(spec.launch_spec())
        try:
            wait_ready(launcher, endpoint, health_path=cfg.runtime.health_path,
                       ready_pattern=cfg.runtime.ready_log_pattern,
                       failure_patterns=cfg.runtime.failure_patterns, timeout_s=120)  # fmt: skip
            workload = spec.workload()
            for i in range(args.repeats):
                out = Path(tmp) / f"r{i}"

                def single(out: Path = out) -> None:
                    one.append(timed(endpoint, workload, out / "single"))

                def each(out: Path = out) -> None:
                    per.append(
                        sum(
                            timed(
                                endpoint,
                                dataclasses.replace(workload, concurrency=[c]),
                                out / f"c{c}",
                            )  # fmt: skip
                            for c in args.levels
                        )
                    )

                for step in (single, each) if i % 2 == 0 else (each, single):
                    step()
        finally:
            launcher.stop(endpoint)
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
