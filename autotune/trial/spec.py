"""What a trial is given, what it gives back, and who hears about it on the way.

spec = TrialSpec(cfg, params, name="trial-003", study="s", workdir=Path("out/3"))
result = run_trial(spec, [observer, ...])      # autotune.trial.executor
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from autotune.deploy.base import Endpoint, Launcher, LaunchSpec
from autotune.deploy.failures import Failure

if TYPE_CHECKING:
    from autotune.benchmark.genai_bench import Workload
    from autotune.objective import Score


@dataclass
class TrialSpec:
    """One configuration to measure: the study's composed config and the trial's flags."""

    cfg: DictConfig  # model, runtime, deploy, benchmark, objective (as Hydra composed them)
    params: dict[str, Any]  # the launch flags, native names (autotune.params.normalize)
    name: str  # "trial-003", "trial-003-baseline", "confirm-002-r1" …
    study: str
    workdir: Path
    index: int = 0
    # What the run is for: a search trial, a confirmation repeat, a pre-screen estimate.
    role: str = "trial"
    baseline: bool = False
    # More tags for the trial's run (e.g. which trial a confirmation run repeats).
    tags: dict[str, str] = field(default_factory=dict)

    def launch_spec(self) -> LaunchSpec:
        return LaunchSpec.for_trial(
            self.cfg, self.params, study=self.study, trial=self.name, workdir=self.workdir
        )

    def workload(self) -> Workload:
        from autotune.benchmark.genai_bench import Workload

        b = self.cfg.benchmark
        return Workload(
            scenarios=list(b.scenarios),
            concurrency=[int(c) for c in b.concurrency],
            max_requests_per_run=int(b.max_requests_per_run),
            max_time_per_run_min=int(b.max_time_per_run_min),
            task=b.task,
            api_backend=self.cfg.runtime.api_backend,
            # Unmeasured requests first: enough to fill the highest level once by default.
            warmup_requests=max(b.concurrency)
            if b.get("warmup_requests") is None
            else int(b.warmup_requests),
        )


@dataclass
class TrialResult:
    """How a trial ended: its score for the sweeper, its metrics, or why it failed."""

    name: str
    status: str  # ok | failed | interrupted
    failure: Failure | None = None
    message: str = ""
    score: Score | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    startup_s: float | None = None
    elapsed_s: float = 0.0
    # Some of the benchmark's runs are missing (timed out, engine died, genai-bench exit).
    partial: bool = False
    endpoint: Endpoint | None = None

    @property
    def value(self) -> float | list[float] | None:
        """The sweeper's number(s): None for a trial that produced no score."""
        return None if self.score is None else self.score.value

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class TrialObserver:
    """Hears a trial's events, in this order; every method is optional.

    ``started`` → ``phase`` … (``gpus``, ``server_info``, ``metrics``, ``series`` as they
    come) →
    ``finished``. Observers record; they never steer the trial.
    """

    def started(self, spec: TrialSpec, launcher: Launcher, rendered: dict[str, str]) -> None:
        """Before deploying: ``rendered`` is what will be launched (file -> text)."""

    def phase(self, name: str) -> None:
        """deploying, ready, benchmarking c<N>, done, failed …"""

    def gpus(self, gpus: list[int]) -> None:
        """The GPUs leased to the trial."""

    def server_info(self, info: dict[str, Any]) -> None:
        """The engine's effective settings, when it reports them."""

    def metrics(self, metrics: dict[str, float]) -> None:
        """Measured numbers (also partial ones of a failed benchmark)."""

    def series(self, series: dict[str, list[tuple[float, float]]]) -> None:
        """Engine metrics over the benchmark: ``engine.<name>`` -> [(seconds, value)]
        (autotune.benchmark.engine_metrics)."""

    def finished(self, spec: TrialSpec, result: TrialResult) -> None:
        """After teardown (the engine is stopped, its log complete, secrets scrubbed)."""
