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

from autotune.benchmark.engine_metrics import as_points
from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.scenarios import sample_lengths
from autotune.benchmark.writer import RequestRecord, RunRecords, write_experiment


def run_virtual(
    sim: dict[str, Any],
    workload: Workload,
    out_dir: Path,
    *,
    metrics_interval_s: float = 0.0,
    series: dict[str, list[tuple[float, float]]] | None = None,
) -> Path:
    """Replay ``workload`` on a fresh simulated engine per run; return the folder.

    With ``metrics_interval_s`` > 0 the engine's true state (its ``sglang:*`` gauges)
    is sampled that often in simulated time, runs one after the other as on a real
    server, into ``series`` (``engine.<name>`` -> [(seconds, value)]).

    One deployment: every run's engine shares the trial's run-to-run noise
    (``sim["noise"]``, autotune/sim/noise.py), so only the first requests after the
    deployment are cold, as on the real-time server. ``workload.warmup_requests``
    run first on the highest concurrency level and are not measured.
    """
    # Imported here: real deployments never load the simulator.
    from autotune.sim.noise import noise_for
    from autotune.sim.replay import replay_closed_loop
    from autotune.sim.settings import build_engine

    seed = int(sim.get("seed", 0))
    noise = noise_for(sim.get("noise"), sim.get("noise_key"))

    def engine():
        return build_engine(
            dict(sim["flags"]),
            model=sim["model"],
            gpu=sim["gpu"],
            dtype=sim["dtype"],
            seed=seed,
            noise=noise,
            sglang_version=sim.get("sglang_version"),
        )

    sampler = _Sampler(metrics_interval_s)
    # Without noise every run's engine is fresh and exact: a warm-up changes nothing.
    if noise is not None and workload.warmup_requests > 0:
        replay_closed_loop(
            sampler.watch(engine()),
            concurrency=max(workload.concurrency),
            num_requests=workload.warmup_requests,
            sample_lengths=sample_lengths(workload.scenarios[0]),
            seed=seed + 1,
            on_step=sampler,
        )
    runs = []
    for scenario in workload.scenarios:
        for concurrency in workload.concurrency:
            records = replay_closed_loop(
                sampler.watch(engine()),
                concurrency=concurrency,
                num_requests=workload.max_requests_per_run,
                sample_lengths=sample_lengths(scenario),
                seed=seed,
                max_time_s=workload.max_time_per_run_min * 60.0,
                on_step=sampler,
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
    if series is not None:
        series.update(as_points(sampler.samples))
    write_experiment(
        out_dir, runs, workload=workload, model_name="simulated", metadata={"simulated": True}
    )
    return Path(out_dir)


class _Sampler:
    """The engine's gauges every ``interval_s`` of simulated time, runs back to back.

    Called before every engine step with the run's clock (and once at its end). A
    sample time that falls inside a step gets the state the engine was in when the
    step began (the batch that step runs; fused decode steps never cross a finish),
    not the state at the step's end, where every request that finished has left.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = float(interval_s)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.engine: Any = None
        self.offset = 0.0  # where the current run starts on the benchmark's clock
        self.next_t = 0.0
        self.now = 0.0
        self.state: dict[str, float] | None = None  # at the start of the last step

    def watch(self, engine: Any) -> Any:
        """The next run's engine; its clock starts where the last run's ended."""
        self.offset += self.now
        self.now = 0.0
        self.engine = engine
        self.state = None
        return engine

    def __call__(self, now: float) -> None:
        self.now = now
        if self.interval_s <= 0:
            return
        t = self.offset + now
        if self.state is not None:
            while self.next_t < t:  # sample times inside the step that just ended
                self.samples.append((round(self.next_t, 3), self.state))
                self.next_t += self.interval_s
        self.state = self._read()
        if self.next_t <= t:  # a sample time exactly now (the benchmark's start)
            self.samples.append((round(self.next_t, 3), self.state))
            self.next_t += self.interval_s

    def _read(self) -> dict[str, float]:
        s = self.engine.stats()
        return {
            "num_running_reqs": s.num_running_reqs,
            "num_queue_reqs": s.num_queue_reqs,
            "token_usage": s.token_usage,
            "num_used_tokens": s.num_used_tokens,
            "gen_throughput": s.gen_throughput,
            "cache_hit_rate": s.cache_hit_rate,
            "num_retracted_reqs": s.num_retracted_reqs_total,
        }
