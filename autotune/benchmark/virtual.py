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
from autotune.benchmark.levels import LevelPolicy, LevelsOutcome, run_levels
from autotune.benchmark.scenarios import sample_lengths
from autotune.benchmark.writer import RequestRecord, RunRecords, write_experiment


def run_virtual(sim: dict[str, Any], workload: Workload, out_dir: Path) -> Path:
    """Replay ``workload`` on a fresh simulated engine per run; return the folder.

    One deployment: every run's engine shares the trial's run-to-run noise
    (``sim["noise"]``, autotune/sim/noise.py), so only the first requests after the
    deployment are cold, as on the real-time server. ``workload.warmup_requests``
    run first on the highest concurrency level and are not measured.
    """
    replay = VirtualDeployment(sim, workload)
    # genai-bench's order: scenario by scenario, each over every level.
    runs = [replay.run(s, c) for s in workload.scenarios for c in workload.concurrency]
    write_experiment(
        out_dir, runs, workload=workload, model_name="simulated", metadata={"simulated": True}
    )
    return Path(out_dir)


def run_virtual_levels(
    sim: dict[str, Any], workload: Workload, out_dir: Path, policy: LevelPolicy
) -> LevelsOutcome:
    """The levels ``policy`` asks for, one at a time, on one simulated deployment.

    With :class:`~autotune.benchmark.levels.AllLevels` the folder is the same as
    :func:`run_virtual`'s (same noise stream, same order).
    """
    replay = VirtualDeployment(sim, workload)
    folder = Path(out_dir)

    def run_level(concurrency: int) -> bool:
        write_experiment(
            folder,
            replay.level(concurrency),
            workload=workload,
            model_name="simulated",
            metadata={"simulated": True},
        )
        return True

    return run_levels(policy, run_level, folder)


class VirtualDeployment:
    """One simulated deployment: warmed up once, then one replay per level."""

    def __init__(self, sim: dict[str, Any], workload: Workload) -> None:
        # Imported here: real deployments never load the simulator.
        from autotune.sim.noise import noise_for

        self.sim = sim
        self.workload = workload
        self.seed = int(sim.get("seed", 0))
        self.noise = noise_for(sim.get("noise"), sim.get("noise_key"))
        # Without noise every run's engine is fresh and exact: a warm-up changes nothing.
        if self.noise is not None and workload.warmup_requests > 0:
            from autotune.sim.replay import replay_closed_loop

            replay_closed_loop(
                self.engine(),
                concurrency=max(workload.concurrency),
                num_requests=workload.warmup_requests,
                sample_lengths=sample_lengths(workload.scenarios[0]),
                seed=self.seed + 1,
            )

    def engine(self) -> Any:
        from autotune.sim.settings import build_engine

        sim = self.sim
        return build_engine(
            dict(sim["flags"]),
            model=sim["model"],
            gpu=sim["gpu"],
            dtype=sim["dtype"],
            seed=self.seed,
            noise=self.noise,
            sglang_version=sim.get("sglang_version"),
        )

    def level(self, concurrency: int) -> list[RunRecords]:
        """Every scenario of the workload at ``concurrency``."""
        return [self.run(scenario, concurrency) for scenario in self.workload.scenarios]

    def run(self, scenario: str, concurrency: int) -> RunRecords:
        from autotune.sim.replay import replay_closed_loop

        wl = self.workload
        records = replay_closed_loop(
            self.engine(),
            concurrency=concurrency,
            num_requests=wl.max_requests_per_run,
            sample_lengths=sample_lengths(scenario),
            seed=self.seed,
            max_time_s=wl.max_time_per_run_min * 60.0,
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
        return RunRecords(scenario, concurrency, requests)
