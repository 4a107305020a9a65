"""The benchmark of a ``deploy=sim deploy.clock=virtual`` trial: no HTTP, no genai-bench.

The same workload (scenarios × concurrency levels, requests per run, closed-loop
users) is replayed on the simulator's virtual clock, and the per-request records
are written as genai-bench-shaped run files, so that the very same parser turns
them into the very same metric names as a real-time trial.

    folder = run_virtual(endpoint.info["sim"], workload, out_dir)
    parse_experiment(folder).metrics()
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from autotune.benchmark.dataset import DATASET_SCENARIO
from autotune.benchmark.engine_metrics import as_points
from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.levels import LevelPolicy, LevelsOutcome, run_levels
from autotune.benchmark.scenarios import parse_scenario, sample_lengths
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
    replay = VirtualDeployment(sim, workload, metrics_interval_s)
    # genai-bench's order: scenario by scenario, each over every level.
    runs = [replay.run(s, c) for s in workload.scenarios for c in workload.concurrency]
    write_experiment(
        out_dir, runs, workload=workload, model_name="simulated", metadata={"simulated": True}
    )
    replay.series_into(series)
    return Path(out_dir)


def run_virtual_levels(
    sim: dict[str, Any],
    workload: Workload,
    out_dir: Path,
    policy: LevelPolicy,
    *,
    metrics_interval_s: float = 0.0,
    series: dict[str, list[tuple[float, float]]] | None = None,
) -> LevelsOutcome:
    """The levels ``policy`` asks for, one at a time, on one simulated deployment.

    With :class:`~autotune.benchmark.levels.AllLevels` the folder is the same as
    :func:`run_virtual`'s (same noise stream, same order); engine series as there.
    """
    replay = VirtualDeployment(sim, workload, metrics_interval_s)
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

    outcome = run_levels(policy, run_level, folder)
    replay.series_into(series)
    return outcome


class VirtualDeployment:
    """One simulated deployment: warmed up once, then one replay per level."""

    def __init__(
        self, sim: dict[str, Any], workload: Workload, metrics_interval_s: float = 0.0
    ) -> None:
        # Imported here: real deployments never load the simulator.
        from autotune.sim.calibration import Calibration
        from autotune.sim.noise import noise_for

        self.sim = sim
        self.workload = workload
        self.seed = int(sim.get("seed", 0))
        self.noise = noise_for(sim.get("noise"), sim.get("noise_key"))
        self.calibration = Calibration.from_mapping(sim.get("calibration"))
        self.prompts = _DatasetPrompts(workload, sim) if workload.dataset_file is not None else None
        self.sampler = _Sampler(metrics_interval_s)
        # Without noise every run's engine is fresh and exact: a warm-up changes nothing.
        if self.noise is not None and workload.warmup_requests > 0:
            from autotune.sim.replay import replay_closed_loop

            replay_closed_loop(
                self.sampler.watch(self.engine()),
                concurrency=max(workload.concurrency),
                num_requests=workload.warmup_requests,
                seed=self.seed + 1,
                on_step=self.sampler,
                **_samplers(workload, workload.scenarios[0], self.prompts),
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
            calibration=self.calibration,
        )

    def series_into(self, series: dict[str, list[tuple[float, float]]] | None) -> None:
        """The engine series sampled so far, into ``series`` (when asked for)."""
        if series is not None:
            series.update(as_points(self.sampler.samples))

    def level(self, concurrency: int) -> list[RunRecords]:
        """Every scenario of the workload at ``concurrency``."""
        return [self.run(scenario, concurrency) for scenario in self.workload.scenarios]

    def run(self, scenario: str, concurrency: int) -> RunRecords:
        from autotune.sim.replay import replay_closed_loop

        wl = self.workload
        records = replay_closed_loop(
            self.sampler.watch(self.engine()),
            concurrency=concurrency,
            num_requests=wl.max_requests_per_run,
            seed=self.seed,
            on_step=self.sampler,
            max_time_s=wl.max_time_per_run_min * 60.0,
            **_samplers(wl, scenario, self.prompts),
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


def _samplers(workload: Workload, scenario: str, prompts: _DatasetPrompts | None) -> dict:
    """What each replayed request looks like: lengths, and its shared prefix or blocks."""
    if scenario == DATASET_SCENARIO and prompts is not None:
        return {"sample_lengths": prompts.lengths, "sample_blocks": prompts.blocks}
    out: dict[str, Any] = {"sample_lengths": sample_lengths(scenario)}
    plen = workload.prefix_len
    if workload.prefix_ratio:
        plen = int(parse_scenario(scenario).params[0] * workload.prefix_ratio)  # D only
    if plen > 0:
        # genai-bench's prefix is one fixed text per length: one name for every request.
        key = f"genai-bench-prefix-{plen}"
        out["sample_prefix"] = lambda rng: (plen, key)
    return out


class _DatasetPrompts:
    """The dataset's prompts as the simulated server would see them: tokenised exactly.

    Each request draws one prompt at random, as genai-bench's dataset mode does; its
    length and token blocks are those of the chat-templated prompt under the
    simulator's tokenizer, its output length ``workload.max_tokens`` (or the
    simulator's default when unset: it has no EOS).
    """

    def __init__(self, workload: Workload, sim: dict[str, Any]) -> None:
        from autotune.sim.http_api import DEFAULT_MAX_TOKENS
        from autotune.sim.prefix import token_blocks
        from autotune.sim.prompt_tokens import SIM_TOKENIZER_DIR, PromptCounter

        counter = PromptCounter(sim.get("tokenizer") or SIM_TOKENIZER_DIR)
        texts = json.loads(Path(str(workload.dataset_file)).read_text(encoding="utf-8"))
        self.items = []
        for text in texts:
            ids = counter.chat_ids([{"role": "user", "content": text}])
            self.items.append((len(ids), token_blocks(ids)))
        self.output_len = int(workload.max_tokens or DEFAULT_MAX_TOKENS)
        self._last = 0

    def lengths(self, rng: random.Random) -> tuple[int, int]:
        self._last = rng.randrange(len(self.items))
        return self.items[self._last][0], self.output_len

    def blocks(self, rng: random.Random) -> tuple:
        return self.items[self._last][1]  # the prompt lengths() just drew


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
