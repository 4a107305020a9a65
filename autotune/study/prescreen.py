"""The simulator pre-screen (``search.prescreen=sim``): score the space before deploying.

Before the first trial, every configuration of the search space (or
``search.prescreen_budget`` of them) is scored on the virtual-clock simulator for the
study's model, workload and objective, on the GPU ``search.prescreen_gpu`` (default:
the sim target's ``deploy.gpu``), through the trial executor itself. Then:

- configurations predicted to fail start-up, or to miss the SLOs by more than
  ``search.prescreen_margin`` (summed relative violation), are *excluded*: the sweeper
  answers a proposal of one without deploying it (it tells Optuna the predicted
  infeasibility as a constraint; no budget used);
- the best predicted configurations, mutually distinct in at least two flags, are
  enqueued first (``search.prescreen_enqueue``).

The pre-screen always uses the stock simulator (noise 0, stock calibration), whatever
the deploy target: on ``deploy=sim`` with ``deploy.calibration.*`` set it stands for
a planning model that is not the hardware.

    predictions = score_space(screening_config(cfg), space, fixed, keys)
    plan = make_plan(predictions, space, directions, margin=0.2, enqueue=8)
"""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import os
import random
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from autotune.study.constraints import STARTUP_VIOLATION, startup_failure

log = logging.getLogger(__name__)

Space = dict[str, BaseDistribution]
Key = tuple[Any, ...]
MODES = ("none", "sim")
# Written to the parent run (one artifact, not one run per configuration).
ARTIFACT = "prescreen/predictions.json"
EXCLUDED_ATTR = "autotune_prescreen_excluded"
ENQUEUED_ATTR = "autotune_prescreen_enqueued"


class PrescreenError(ValueError):
    """The pre-screen cannot run with this configuration (says which key to set)."""


# --------------------------------------------------------------------- the space


def grid_values(dist: BaseDistribution) -> list[Any]:
    """Every value of a discrete distribution (the exhaustive grid needs one)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = round((dist.high - dist.low) / dist.step)
        return [dist.low + i * dist.step for i in range(n + 1)]
    raise ValueError(f"{dist}: the exhaustive grid needs choice() or range() parameters")


def grid_keys(space: Space) -> list[Key]:
    return list(itertools.product(*(grid_values(d) for d in space.values())))


def _draw(dist: BaseDistribution, rng: random.Random) -> Any:
    if isinstance(dist, FloatDistribution) and dist.step is None:
        return rng.uniform(dist.low, dist.high)
    return rng.choice(grid_values(dist))


def screening_keys(space: Space, budget: int, seed: int = 0) -> list[Key]:
    """The whole grid when it has at most ``budget`` points, else ``budget`` distinct
    random draws (continuous flags are sampled uniformly)."""
    try:
        keys = grid_keys(space)
    except ValueError:
        keys = None
    rng = random.Random(seed)
    if keys is not None and len(keys) <= budget:
        return keys
    if keys is not None:
        return rng.sample(keys, budget)
    return list({tuple(_draw(d, rng) for d in space.values()): None for _ in range(budget)})


@functools.lru_cache(maxsize=4096)
def hydra_value(key: str, value: Any) -> Any:
    """``value`` after the round trip the sweeper makes: ``key=value`` parsed by Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(f"{key}={value}").value()


def trial_params(space: Space, fixed: Mapping[str, Any], key: Key) -> dict[str, Any]:
    """The ``params`` a trial gets for one point (``params.`` prefix removed)."""
    items = {**fixed, **dict(zip(space, key, strict=True))}
    items = {k: hydra_value(k, v) for k, v in items.items()}
    return {k.split(".", 1)[1]: v for k, v in items.items() if k.startswith("params.")}


# --------------------------------------------------------------------- scoring


@dataclass
class Prediction:
    """One configuration as the stock simulator scores it."""

    key: Key
    values: list[float] | None  # the objective's score(s); None: no score
    feasible: bool = False
    violation: float = 0.0  # summed relative SLO miss (0 when feasible)
    failure: str = ""  # failure class when it has no score
    startup_failed: bool = False
    raw: list[float] = field(default_factory=list)  # the objective metric(s) as measured
    slack: dict[str, float] = field(default_factory=dict)  # relative slack per SLO
    # Virtual seconds the benchmark ran (the engine time a trial would take).
    benchmark_s: float = 0.0


def prescreen_gpu(cfg: DictConfig) -> str:
    """``search.prescreen_gpu``, else the sim target's ``deploy.gpu``; a clear error
    for a real target, whose GPU model the configuration does not name."""
    gpu = cfg.search.get("prescreen_gpu") or (
        cfg.deploy.get("gpu") if cfg.deploy.get("simulated") else None
    )
    if not gpu:
        raise PrescreenError(
            f"search.prescreen=sim on deploy={cfg.deploy.name}: set search.prescreen_gpu "
            "to the simulated GPU of the target (h100_sxm, h200_sxm, ...: "
            "`python -m autotune.sim predict --help`)"
        )
    return str(gpu)


def screening_config(cfg: DictConfig, gpu: str | None = None) -> DictConfig:
    """The study's config with the deploy target replaced by the stock virtual-clock
    simulator (noise 0, stock calibration) on ``gpu``; ``search.prescreen_requests``
    caps the requests per concurrency level (a cheaper, coarser screen)."""
    from autotune.launchers.sim import SimConfig

    if cfg.runtime.name != "sglang":
        raise PrescreenError(
            f"search.prescreen=sim simulates SGLang; runtime={cfg.runtime.name} cannot be "
            "pre-screened: use search.prescreen=none"
        )
    if not cfg.model.get("sim_profile"):
        raise PrescreenError(
            f"search.prescreen=sim: model {cfg.model.name} has no model.sim_profile "
            "(the simulated model to screen with): set it, or use search.prescreen=none"
        )
    gpu = gpu or prescreen_gpu(cfg)
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in _STUDY_GROUPS}
    deploy = OmegaConf.structured(SimConfig)
    deploy.gpu, deploy.clock, deploy.noise = gpu, "virtual", 0.0
    if cfg.deploy.get("simulated"):
        deploy.sglang_version = cfg.deploy.get("sglang_version")
    parts["deploy"] = OmegaConf.to_container(deploy)
    out = OmegaConf.create(parts)
    # Predictions only: no engine series to sample (a few ms per configuration).
    out.benchmark.metrics_interval_s = 0.0
    requests = cfg.search.get("prescreen_requests")
    if requests:
        out.benchmark.max_requests_per_run = int(requests)
        out.benchmark.warmup_requests = 0
    return out


_STUDY_GROUPS = ("model", "runtime", "benchmark", "objective")


def benchmark_seconds(metrics: Mapping[str, float]) -> float:
    """Seconds the benchmark's runs took (per level: completed requests / request rate);
    levels that did not run (an early abort) take none."""
    total = 0.0
    for key, done in metrics.items():
        if key.endswith(".num_completed_requests"):
            rate = metrics.get(key.removesuffix("num_completed_requests") + "requests_per_s")
            if rate:
                total += done / rate
    return total


def score_one(
    scfg: DictConfig,
    params: Mapping[str, Any],
    workdir: Path,
    key: Key,
    launcher: Any = None,
) -> Prediction:
    """Score one configuration with the trial executor (no observers, no tracking);
    ``launcher``: the simulator target, built once for many configurations."""
    from autotune.params import normalize
    from autotune.trial.executor import run_trial
    from autotune.trial.spec import TrialSpec

    try:
        flags = normalize(dict(params), scfg.runtime.flags, scfg.runtime.aliases)
    except Exception as e:  # a value the flag table refuses cannot start either
        return Prediction(key, None, failure=str(e).splitlines()[0], startup_failed=True)
    spec = TrialSpec(scfg, flags, name="prescreen", study="prescreen", workdir=workdir,
                     role="prescreen")  # fmt: skip
    result = run_trial(spec, launcher=launcher)
    duration = benchmark_seconds(result.metrics)
    if result.score is None:
        return Prediction(
            key,
            None,
            failure=result.failure.value if result.failure else "no score",
            startup_failed=startup_failure(result),
            violation=STARTUP_VIOLATION,
            benchmark_s=duration,
        )
    violation = sum(-s for s in result.score.slack.values() if s < 0)
    return Prediction(
        key,
        list(result.score.values),
        feasible=result.score.feasible,
        violation=violation,
        raw=[float(v) for v in result.score.raw],
        slack=dict(result.score.slack),
        benchmark_s=duration,
    )


def _score_chunk(args: tuple[dict[str, Any], list[tuple[dict[str, Any], Key]]]) -> list[Prediction]:
    """Score ``(params, key)`` pairs in one process (also a pool worker's job)."""
    from autotune.deploy import create_launcher

    container, jobs = args
    scfg = OmegaConf.create(container)
    # One simulator target for the chunk (building one is a fifth of a trial's cost);
    # on the virtual clock it keeps no state between trials.
    launcher = create_launcher(scfg.deploy)
    # A predicted failure is a result here, not an error of the study: the executor's
    # per-trial error lines would bury the log.
    executor_log = logging.getLogger("autotune.trial.executor")
    level = executor_log.level
    executor_log.setLevel(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="autotune-prescreen-") as tmp:
            return [
                score_one(scfg, params, Path(tmp) / str(i), key, launcher)
                for i, (params, key) in enumerate(jobs)
            ]
    finally:
        executor_log.setLevel(level)


def default_workers() -> int:
    """Processes for the pre-screen: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def score_space(
    scfg: DictConfig,
    space: Space,
    fixed: Mapping[str, Any],
    keys: Iterable[Key],
    workers: int = 1,
) -> list[Prediction]:
    """Score every point of ``keys`` on the simulator, in ``workers`` processes."""
    t0 = time.monotonic()
    jobs = [(trial_params(space, fixed, key), key) for key in keys]
    container = {
        k: OmegaConf.to_container(scfg[k], resolve=True) for k in (*_STUDY_GROUPS, "deploy")
    }
    workers = max(1, min(workers, len(jobs) // _MIN_JOBS_PER_WORKER))
    if workers == 1:
        out = _score_chunk((container, jobs))
    else:
        # Interleaved chunks: neighbouring configurations cost alike.
        chunks = [(container, jobs[i :: workers * 4]) for i in range(workers * 4)]
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(_score_chunk, chunks))
        by_key = {p.key: p for part in parts for p in part}
        out = [by_key[key] for _, key in jobs]
    log.info(
        "pre-screen: %d configurations scored in %.1f s (%d process%s)",
        len(jobs),
        time.monotonic() - t0,
        workers,
        "es" if workers > 1 else "",
    )
    return out


# Below this many configurations per process, starting a process costs more than it saves.
_MIN_JOBS_PER_WORKER = 50


# --------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What the search does with the pre-screen: enqueue, exclude (with the reason)."""

    space: list[str]
    predictions: list[Prediction]
    enqueue: list[Key]
    excluded: dict[Key, str]
    margin: float
    seconds: float = 0.0

    @property
    def kept(self) -> list[Prediction]:
        return [p for p in self.predictions if p.key not in self.excluded]

    def reasons(self) -> dict[str, int]:
        """How many were excluded for each kind of reason (start-up / slo / no score)."""
        out: dict[str, int] = {}
        for reason in self.excluded.values():
            kind = reason.split(":", 1)[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def params(self, key: Key) -> dict[str, Any]:
        return dict(zip(self.space, key, strict=True))

    def by_key(self) -> dict[Key, Prediction]:
        if not hasattr(self, "_by_key"):
            self._by_key = {p.key: p for p in self.predictions}
        return self._by_key

    def prediction(self, key: Key) -> Prediction:
        return self.by_key()[key]

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {kind}" for kind, n in sorted(self.reasons().items()))
        return (
            f"pre-screen: {len(self.predictions)} configurations scored on the simulator, "
            f"{len(self.excluded)} excluded ({reasons or 'none'}; margin "
            f"{self.margin:g}), {len(self.enqueue)} enqueued first"
        )


def _exclusion(p: Prediction, margin: float) -> str | None:
    if p.startup_failed:
        return f"start-up: predicted to fail ({p.failure})"
    if p.values is None:
        return f"no score: {p.failure}"
    if p.violation > margin:
        return f"slo: predicted miss {p.violation:.3f} > margin {margin:g}"
    return None


def _rank_key(p: Prediction, directions: Sequence[str]) -> tuple[float, float]:
    """Feasible first by the first objective, then the least infeasible."""
    assert p.values is not None
    sign = -1.0 if directions[0] == "maximize" else 1.0
    return (0.0, sign * p.values[0]) if p.feasible else (1.0, p.violation)


def diverse_top(ranked: Sequence[Key], k: int, min_distance: int = 2) -> list[Key]:
    """The first ``k`` of ``ranked`` that differ pairwise in >= ``min_distance`` flags
    and of which at most half share any one flag's value: neighbours of a chosen
    configuration teach the search little, and if the simulator is wrong about one
    value (a memory fraction that does not fit on the real GPU), not every enqueued
    trial fails with it."""
    chosen: list[Key] = []
    share = max(1, -(-k // 2))
    for key in ranked:
        if len(chosen) >= k:
            break
        far = all(sum(a != b for a, b in zip(key, c, strict=True)) >= min_distance for c in chosen)
        crowded = any(sum(c[i] == v for c in chosen) >= share for i, v in enumerate(key))
        if far and not crowded:
            chosen.append(key)
    return chosen


def make_plan(
    predictions: Sequence[Prediction],
    space: Space | Sequence[str],
    directions: Sequence[str],
    *,
    margin: float,
    enqueue: int,
) -> Plan:
    excluded = {}
    for p in predictions:
        reason = _exclusion(p, margin)
        if reason is not None:
            excluded[p.key] = reason
    kept = [p for p in predictions if p.key not in excluded]
    ranked = [p.key for p in sorted(kept, key=lambda p: _rank_key(p, directions))]
    return Plan(list(space), list(predictions), diverse_top(ranked, enqueue), excluded, margin)


def run_prescreen(
    cfg: DictConfig, space: Space, fixed: Mapping[str, Any], directions: Sequence[str]
) -> Plan:
    """Score the space on the simulator and plan the search (``search.prescreen*``)."""
    t0 = time.monotonic()
    scfg = screening_config(cfg)
    keys = screening_keys(space, int(cfg.search.prescreen_budget), int(cfg.search.seed))
    workers = cfg.search.get("prescreen_workers") or default_workers()
    predictions = score_space(scfg, space, fixed, keys, workers=int(workers))
    plan = make_plan(
        predictions,
        space,
        directions,
        margin=float(cfg.search.prescreen_margin),
        enqueue=int(cfg.search.prescreen_enqueue),
    )
    plan.seconds = time.monotonic() - t0
    return plan


def check_settings(cfg: DictConfig) -> list[str]:
    """Problems with ``search.prescreen*`` (empty: fine), before anything is deployed."""
    s = cfg.search
    mode = s.get("prescreen", "none")
    if mode not in MODES:
        return [f"search.prescreen={mode!r}: use one of {', '.join(MODES)}"]
    if mode == "none":
        return []
    errors = []
    sweeper = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    if sweeper and not sweeper.endswith("AutotuneOptunaSweeper"):
        errors.append(
            "search.prescreen=sim needs an Optuna search (search=tpe, random, gp, ...): "
            "a grid runs every configuration anyway"
        )
    if int(s.prescreen_budget) < 1:
        errors.append("search.prescreen_budget must be >= 1")
    if float(s.prescreen_margin) < 0:
        errors.append("search.prescreen_margin must be >= 0 (a summed relative SLO miss)")
    if int(s.prescreen_enqueue) < 0:
        errors.append("search.prescreen_enqueue must be >= 0")
    try:
        screening_config(cfg)
    except PrescreenError as e:
        errors.append(str(e))
    return errors


__all__ = [
    "ARTIFACT",
    "Plan",
    "Prediction",
    "PrescreenError",
    "check_settings",
    "diverse_top",
    "grid_keys",
    "grid_values",
    "make_plan",
    "run_prescreen",
    "score_space",
    "screening_config",
    "screening_keys",
    "trial_params",
]
