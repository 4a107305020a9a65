"""Feasibility for the sampler: SLO slack and start-up failures as Optuna constraints.

A trial answers the sweeper with an :class:`Answer`: its objective value(s) and one
constraint per SLO (``slo.<metric>`` = −slack: > 0 is a violation, Optuna's
convention), so samplers that model feasibility (TPE, GP, NSGA-II read
``FrozenTrial.constraints``) learn where the SLOs hold apart from the objective.
A configuration that cannot start (OOM, CUDA-graph capture, a flag the engine
refuses) is an infeasible region: it gets the constraint ``startup`` =
:data:`STARTUP_VIOLATION` and no measurement.

    answer = Answer.of(result, objective)        # in the Hydra job
    value = answer.tell_value(objective_directions)     # in the sweeper
    for key, v in answer.constraints.items():
        trial.set_constraint(key, v)             # before study.tell
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autotune.deploy.failures import Failure

if TYPE_CHECKING:
    from autotune.trial.spec import TrialResult

# Failure classes that say "this configuration cannot start", not "the run went wrong".
STARTUP_FAILURES = frozenset({Failure.OOM, Failure.CUDA_GRAPH, Failure.BAD_FLAG})
# The constraint of a configuration that cannot start: above any SLO miss a measured
# trial shows in practice (a relative slack of −10 is a metric 11x its bound), so
# such trials sort last among the infeasible ones.
STARTUP_VIOLATION = 10.0
# The objective's offset for infeasible trials of a minimized metric
# (autotune.objective.Objective.infeasible_offset).
_INFEASIBLE_OFFSET = 1e6


def startup_failure(result: TrialResult) -> bool:
    """The engine never became ready because of its flags (not an outage)."""
    if result.failure in STARTUP_FAILURES:
        return True
    return result.failure == Failure.CRASH and result.startup_s is None


def slo_constraints(slack: dict[str, float]) -> dict[str, float]:
    """Optuna constraints (> 0 violated) from the objective's relative SLO slack."""
    return {f"slo.{name}": -float(s) for name, s in slack.items()}


def penalty(directions: Sequence[str], violation: float) -> list[float]:
    """The objective's score of an infeasible trial (below every feasible one)."""
    return [-violation if d == "maximize" else _INFEASIBLE_OFFSET + violation for d in directions]


@dataclass(frozen=True)
class Answer:
    """What a trial tells the sweeper: value(s), constraints, and whether it could start.

    Float-castable (one objective) and iterable (several), so Hydra's stock Optuna
    sweeper reads it as the bare value.
    """

    values: list[float] | None
    constraints: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    startup_failed: bool = False

    @classmethod
    def of(cls, result: TrialResult) -> Answer:
        failure = result.failure.value if result.failure else None
        if result.score is not None:
            return cls(list(result.score.values), slo_constraints(result.score.slack), failure)
        if startup_failure(result):
            return cls(None, {"startup": STARTUP_VIOLATION}, failure, startup_failed=True)
        return cls(None, {}, failure)

    def tell_value(self, directions: Sequence[str]) -> float | list[float] | None:
        """The value(s) for ``study.tell``: the penalty for a start-up failure (its
        ``startup`` constraint marks it infeasible, so it is never a best trial and
        TPE ranks it by the constraint alone), None for any other failure (FAIL)."""
        values = self.values
        if values is None and self.startup_failed:
            values = penalty(directions, STARTUP_VIOLATION)
        if values is None:
            return None
        return values[0] if len(values) == 1 else list(values)

    # -- the bare value, for code that expects what run_trial(...).value was ------------
    def __float__(self) -> float:
        if not self.values:
            raise TypeError("the trial produced no value")
        return float(self.values[0])

    def __iter__(self) -> Iterator[float]:
        if self.values is None:
            raise TypeError("the trial produced no value")
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values or [])


def answer_trials(trials: Sequence[Any], returns: Sequence[Any], directions: Sequence[str]) -> None:
    """Before the stock sweeper tells ``trials``: set each one's constraints and turn
    the jobs' :class:`Answer` into the value(s) it tells (in place)."""
    from hydra.core.utils import JobStatus

    for trial, ret in zip(trials, returns, strict=False):
        answer = ret._return_value
        if ret.status != JobStatus.COMPLETED or not isinstance(answer, Answer):
            continue
        for key, value in answer.constraints.items():
            trial.set_constraint(key, value)
        if answer.failure:
            trial.set_user_attr("autotune_failure", answer.failure)
        ret._return_value = answer.tell_value(directions)


__all__ = [
    "STARTUP_FAILURES",
    "STARTUP_VIOLATION",
    "Answer",
    "answer_trials",
    "penalty",
    "slo_constraints",
    "startup_failure",
]
