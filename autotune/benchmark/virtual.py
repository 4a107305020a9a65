"""The benchmark of a ``deploy=sim deploy.clock=virtual`` trial: no HTTP, no genai-bench.

The same workload (scenarios × concurrency levels, requests per run, closed-loop
users) is replayed on the simulator's virtual clock, and the per-request records
are written as genai-bench-shaped run files, so that the very same parser turns
them into the very same metric names as a real-time trial.

    folder = run_virtual(endpoint.info["sim"], workload, out_dir)
    parse_experiment(folder).metrics()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.scenarios import sample_lengths


def run_virtual(sim: dict[str, Any], workload: Workload, out_dir: Path) -> Path:
    """Replay ``workload`` on a fresh simulated engine per run; return the folder."""
    # Imported here: real deployments never load the simulator.
    from autotune.benchmark.parse import write_experiment
    from autotune.sim.replay import replay_closed_loop
    from autotune.sim.settings import build_engine

    out_dir = Path(out_dir)
    runs = []
    for scenario in workload.scenarios:
        for concurrency in workload.concurrency:
            engine = build_engine(
                dict(sim["flags"]),
                model=sim["model"],
                gpu=sim["gpu"],
                dtype=sim["dtype"],
                seed=int(sim.get("seed", 0)),
            )
            records = replay_closed_loop(
                engine,
                concurrency=concurrency,
                num_requests=workload.max_requests_per_run,
                sample_lengths=sample_lengths(scenario),
                seed=int(sim.get("seed", 0)),
                max_time_s=workload.max_time_per_run_min * 60.0,
            )
            runs.append((scenario, concurrency, records))
    return write_experiment(out_dir, runs, workload=workload, simulated=True)
