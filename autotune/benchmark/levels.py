"""Concurrency levels one at a time, and the policy that decides what runs next.

By default a trial's benchmark runs every level in one genai-bench process (one
start-up cost). A policy that must look at a level's numbers before the next one
(early abort, an Optuna pruner, the capacity ladder) gets one run per level against
the same deployment, warmed up once, with every level's run file in the same
genai-bench-shaped folder, so :func:`autotune.benchmark.parse.parse_experiment`
reads it as before.

    policy = EarlyAbort([8, 32, 64], objective, margin=0.1)
    outcome = run_levels(policy, run_level, folder)    # run_level(c) writes level c
    outcome.levels, outcome.stopped                    # [8], "ttft_p99_ms at c8 ..."

Monotonicity (why an abort is safe): genai-bench 0.0.5 is closed-loop, so a higher
level means more requests in flight; latencies and the error rate do not fall as
concurrency rises (queueing), while throughput may rise or saturate. So an upper
bound (latency) missed by more than ``margin`` at a level below the SLO's level is
missed there too; a lower bound (throughput) is only judged at its own level.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune.benchmark.parse import METADATA_FILE, parse_experiment
from autotune.objective import Objective, higher_is_better, read_metric

log = logging.getLogger(__name__)

__all__ = [
    "AllLevels",
    "EarlyAbort",
    "LevelPolicy",
    "LevelsOutcome",
    "Reporting",
    "doomed",
    "level_policy",
    "run_levels",
]


class LevelPolicy(abc.ABC):
    """Decides the next concurrency level from the metrics measured so far.

    ``next_level`` returns None to stop; ``stopped`` then says why the remaining
    levels were skipped (None: the policy ran what it meant to run).
    """

    stopped: str | None = None
    # The trial is cut short (early abort, an Optuna pruner): recorded as pruned.
    pruned: bool = False
    # ... by an Optuna pruner: its partial score is not a result (status "pruned").
    by_pruner: bool = False

    @abc.abstractmethod
    def next_level(self, metrics: Mapping[str, float], done: Sequence[int]) -> int | None:
        """The next level to run, or None to stop."""

    def extra_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Metrics the policy derives once it has stopped (e.g. the capacity found)."""
        return {}


class AllLevels(LevelPolicy):
    """Every level, in the workload's order (today's behaviour)."""

    def __init__(self, levels: Sequence[int]) -> None:
        self.levels = list(levels)

    def next_level(self, metrics: Mapping[str, float], done: Sequence[int]) -> int | None:
        left = [c for c in self.levels if c not in done]
        return left[0] if left else None


class EarlyAbort(AllLevels):
    """Every level in order, until the finished ones show the SLOs cannot be met."""

    def __init__(self, levels: Sequence[int], objective: Objective, margin: float) -> None:
        super().__init__(levels)
        self.objective = objective
        self.margin = margin

    def next_level(self, metrics: Mapping[str, float], done: Sequence[int]) -> int | None:
        left = [c for c in self.levels if c not in done]
        if done and left:
            reason = doomed(self.objective, metrics, done, left, self.margin)
            if reason is not None:
                self.stopped, self.pruned = reason, True
                return None
        return left[0] if left else None


# report(step, metrics, last) -> prune? (``last``: no level follows; report only)
Report = Callable[[int, Mapping[str, float], bool], bool]


class Reporting(LevelPolicy):
    """Wraps a policy: after each level, ``report(step, metrics, last)`` may prune the
    trial (an Optuna pruner, autotune.trial.pruning)."""

    def __init__(self, inner: LevelPolicy, report: Report) -> None:
        self.inner = inner
        self.report = report

    def next_level(self, metrics: Mapping[str, float], done: Sequence[int]) -> int | None:
        nxt = self.inner.next_level(metrics, done)
        if self.inner.stopped is not None:
            self.stopped, self.pruned = self.inner.stopped, self.inner.pruned
        if done and self.report(len(done) - 1, metrics, nxt is None) and nxt is not None:
            self.stopped, self.pruned = f"pruned by the Optuna pruner after c{done[-1]}", True
            self.by_pruner = True
            return None
        return nxt

    def extra_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return self.inner.extra_metrics(metrics)


def doomed(
    objective: Objective,
    metrics: Mapping[str, float],
    done: Sequence[int],
    left: Sequence[int],
    margin: float,
) -> str | None:
    """Why the trial can no longer meet its SLOs, or None while it still can.

    A measurement at the SLO's own level is final (any miss dooms the trial); an
    upper bound missed by more than ``margin`` (relative) at a lower level dooms it
    too (monotonicity, see the module docstring). Across levels (no SLO level):
    ``max`` of an upper bound is final once exceeded; ``mean``/``pooled`` of an
    upper bound only when every level left is higher than all done and the miss
    exceeds ``margin``; ``min`` of a lower bound is final once missed.
    """
    level = (
        objective.slo_concurrency
        if objective.slo_concurrency is not None
        else (objective.concurrency)
    )
    for name, bound in objective.slo.items():
        upper = not higher_is_better(name)
        limit = bound * (1 + margin) if upper else bound * (1 - margin)
        if level is not None:
            reason = _doomed_at_level(metrics, name, bound, limit, upper, level, done)
        else:
            rising = min(left) > max(done)
            reason = _doomed_across(
                objective.across_levels, metrics, name, bound, limit, upper, rising
            )
        if reason is not None:
            return reason
    return None


def _missed(value: float | None, bound: float, upper: bool) -> bool:
    return value is not None and (value > bound if upper else value < bound)


def _doomed_at_level(
    metrics: Mapping[str, float],
    name: str,
    bound: float,
    limit: float,
    upper: bool,
    level: int,
    done: Sequence[int],
) -> str | None:
    if level in done:
        value = read_metric(metrics, name, level, "pooled")
        if _missed(value, bound, upper):
            return f"{name} = {value:.4g} at c{level} misses the SLO {bound:g}"
        return None
    if not upper:
        return None
    for c in sorted(d for d in done if d < level):
        value = read_metric(metrics, name, c, "pooled")
        if _missed(value, limit, upper):
            return (
                f"{name} = {value:.4g} at c{c} already misses the SLO {bound:g} (at c{level}) "
                f"by more than the margin; it grows with concurrency"
            )
    return None


def _doomed_across(
    across: str,
    metrics: Mapping[str, float],
    name: str,
    bound: float,
    limit: float,
    upper: bool,
    rising: bool,
) -> str | None:
    if upper and across == "max":
        value, against = read_metric(metrics, name, None, "max"), bound
    elif upper and across in ("mean", "pooled") and rising:
        value, against = read_metric(metrics, name, None, across), limit
    elif not upper and across == "min":
        value, against = read_metric(metrics, name, None, "min"), bound
    else:
        return None
    if _missed(value, against, upper):
        return f"{name} ({across} of the levels run) = {value:.4g} misses the SLO {bound:g}"
    return None


@dataclass
class LevelsOutcome:
    """The levels run, in order, and why the policy stopped early (None: it did not)."""

    levels: list[int] = field(default_factory=list)
    stopped: str | None = None
    pruned: bool = False
    by_pruner: bool = False
    extra: dict[str, float] = field(default_factory=dict)


def run_levels(
    policy: LevelPolicy,
    run_level: Callable[[int], bool],
    folder: Path,
) -> LevelsOutcome:
    """Run the levels ``policy`` asks for; ``run_level(c)`` adds level c's run file(s)
    to ``folder`` and returns False when the benchmark cannot go on (timeout, error).

    The folder's metadata lists the levels run, so a level the policy chose not to
    run is not reported as missing.
    """
    outcome = LevelsOutcome()
    metrics: dict[str, float] = {}
    while (level := policy.next_level(metrics, outcome.levels)) is not None:
        outcome.levels.append(level)
        go_on = run_level(level)
        list_levels(folder, outcome.levels)
        metrics = parse_experiment(folder).metrics()
        if not go_on:
            break
    outcome.stopped, outcome.pruned, outcome.by_pruner = (
        policy.stopped,
        policy.pruned,
        policy.by_pruner,
    )
    outcome.extra = policy.extra_metrics(metrics)
    if outcome.stopped:
        log.info("benchmark stopped after %s: %s", outcome.levels, outcome.stopped)
    return outcome


def list_levels(folder: Path, levels: Sequence[int]) -> None:
    """The folder's metadata lists ``levels`` as the levels requested."""
    path = folder / METADATA_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    meta["num_concurrency"] = list(levels)
    path.write_text(json.dumps(meta, indent=4))


def level_policy(
    cfg: Any, objective: Objective, report: Report | None, gpus: int = 1
) -> LevelPolicy | None:
    """The policy a trial's config asks for; None: every level in one go.

    ``objective=capacity``: the capacity ladder; ``benchmark.early_abort`` with SLOs
    and several levels: early abort; an Optuna pruner (``report``) is told every
    level's score on top.
    """
    levels = [int(c) for c in cfg.benchmark.concurrency]
    policy: LevelPolicy | None = None
    if objective.capacity:
        from autotune.benchmark.capacity import CapacityLadder

        ladder = [int(c) for c in cfg.objective.get("ladder") or levels]
        policy = CapacityLadder(ladder, objective, gpus)
    elif cfg.benchmark.get("early_abort") and objective.slo and len(levels) > 1:
        policy = EarlyAbort(levels, objective, float(cfg.benchmark.abort_margin))
    if report is not None:
        policy = Reporting(policy or AllLevels(levels), report)
    return policy


def ladder_levels(policy: LevelPolicy | None) -> list[int] | None:
    """The levels a capacity ladder may probe (the workload's levels then)."""
    inner = policy.inner if isinstance(policy, Reporting) else policy
    return None if inner is None or in_order(inner) else inner.levels


def in_order(policy: LevelPolicy | None) -> bool:
    """The policy runs the workload's levels in its order (it only ever stops early)."""
    inner = policy.inner if isinstance(policy, Reporting) else policy
    return type(inner) in (AllLevels, EarlyAbort)
