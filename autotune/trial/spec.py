"""What a trial is given, what it gives back, and who hears about it on the way.

spec = TrialSpec(cfg, params, name="trial-003", study="s", workdir=Path("out/3"))
result = run_trial(spec, [observer, ...])      # autotune.trial.executor
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    # Hears each level's metrics (level index, metrics, last level?) and answers True
    # to prune the trial: an Optuna pruner (autotune.trial.pruning); None = no pruner.
    report: Callable[[int, Mapping[str, float], bool], bool] | None = None

    def launch_spec(self) -> LaunchSpec:
        return LaunchSpec.for_trial(
            self.cfg, self.params, study=self.study, trial=self.name, workdir=self.workdir
        )

    def workload(self) -> Workload:
        from autotune.benchmark.genai_bench import Workload

        b = self.cfg.benchmark
        dataset = b.get("dataset") or {}
        return Workload(
            dataset_file=self._dataset_file(dataset),
            max_tokens=dataset.get("max_tokens") if dataset.get("path") else None,
            prefix_len=int(b.get("prefix_len") or 0),
            prefix_ratio=float(b.get("prefix_ratio") or 0.0),
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

    def _dataset_file(self, dataset: Any) -> str | None:
        """The trial's prompts as genai-bench reads them (validated before the study)."""
        if not dataset.get("path"):
            return None
        from autotune.benchmark.dataset import load_prompts, write_prompt_list

        prompts = load_prompts(
            dataset.path, format=dataset.format, prompt_column=dataset.prompt_column
        )
        return str(write_prompt_list(prompts, self.workdir.absolute() / "dataset_prompts.json"))


@dataclass
class TrialResult:
    """How a trial ended: its score for the sweeper, its metrics, or why it failed."""

    name: str
    status: str  # ok | pruned | failed | interrupted
    failure: Failure | None = None
    message: str = ""
    score: Score | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    startup_s: float | None = None
    elapsed_s: float = 0.0
    # Some of the benchmark's runs are missing (timed out, engine died, genai-bench exit).
    partial: bool = False
    # Why the benchmark stopped before its last level (early abort, a pruner); None:
    # it was not stopped. A pruned trial keeps its partial metrics and its score.
    pruned: str | None = None
    # Levels run, in order, when they ran one at a time (autotune.benchmark.levels).
    levels: list[int] = field(default_factory=list)
    # Stopped by an Optuna pruner (status "pruned"): its score goes to the sweeper
    # (told PRUNED), but it is no result to rank.
    by_pruner: bool = False
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
