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
from autotune.benchmark.writer import RequestRecord, RunRecords, write_experiment


def run_virtual(sim: dict[str, Any], workload: Workload, out_dir: Path) -> Path:
    """Replay ``workload`` on a fresh simulated engine per run; return the folder.

    One deployment: every run's engine shares the trial's run-to-run noise
    (``sim["noise"]``, autotune/sim/noise.py), so only the first requests after the
    deployment are cold, as on the real-time server. ``workload.warmup_requests``
    run first on the highest concurrency level and are not measured.
    """
    # Imported here: real deployments never load the simulator.
    from autotune.sim.calibration import Calibration
    from autotune.sim.noise import noise_for
    from autotune.sim.replay import replay_closed_loop
    from autotune.sim.settings import build_engine

    seed = int(sim.get("seed", 0))
    noise = noise_for(sim.get("noise"), sim.get("noise_key"))
    calibration = Calibration.from_mapping(sim.get("calibration"))

    def engine():
        return build_engine(
            dict(sim["flags"]),
            model=sim["model"],
            gpu=sim["gpu"],
            dtype=sim["dtype"],
            seed=seed,
            noise=noise,
            sglang_version=sim.get("sglang_version"),
            calibration=calibration,
        )

    # Without noise every run's engine is fresh and exact: a warm-up changes nothing.
    if noise is not None and workload.warmup_requests > 0:
        replay_closed_loop(
            engine(),
            concurrency=max(workload.concurrency),
            num_requests=workload.warmup_requests,
            sample_lengths=sample_lengths(workload.scenarios[0]),
            seed=seed + 1,
        )
    runs = []
    for scenario in workload.scenarios:
        for concurrency in workload.concurrency:
            records = replay_closed_loop(
                engine(),
                concurrency=concurrency,
                num_requests=workload.max_requests_per_run,
                sample_lengths=sample_lengths(scenario),
                seed=seed,
                max_time_s=workload.max_time_per_run_min * 60.0,
            )
            requests = [
                RequestRecord(
                    start=r.start_s,
                    first_token=r.first_token_s,
                    end=r.end_s if r.end_s is not None else r.start_s,
                    input_tokens=r.input_tokens,
                    output_tokens=r.output_tokens,
                    ok=r.ok,
                )
                for r in records
            ]
            runs.append(RunRecords(scenario, concurrency, requests))
    write_experiment(
        out_dir, runs, workload=workload, model_name="simulated", metadata={"simulated": True}
    )
    return Path(out_dir)
