"""The confirmation stage: re-run the best configurations and the defaults, interleaved.

Independent of how a run happens: :func:`run_confirmation` takes a ``run_one(params,
label) -> RunResult`` callable (today a fresh trial through ``autotune.trial``; any
trial executor fits) and the results of runs already finished (a resumed study
passes them and they are not run again).

    measured = run_confirmation(candidates, defaults, run_one, repeats=3, seed=0)
    verdict = decide([measured[c.key] for c in candidates], measured[defaults.key], True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autotune.confirm.plan import interleaved_order
from autotune.confirm.verdict import DEFAULTS, Measured

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A configuration to confirm: ``key`` names it (the trial, or the defaults)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)
    confirms: str = ""  # run id of the search trial it repeats ("" if none)


@dataclass(frozen=True)
class RunResult:
    """What one confirmation run measured: the objective (None: failed), SLOs met."""

    value: float | None
    feasible: bool = True
    run_id: str | None = None


def run_label(key: str, repeat: int) -> str:
    """``confirm-trial-007-r2``: one run's stable name (resume matches on it)."""
    name = "defaults" if key == DEFAULTS else key
    return f"confirm-{name}-r{repeat + 1}"


def run_confirmation(
    candidates: Sequence[Candidate],
    defaults: Candidate,
    run_one: Callable[[dict[str, Any], str], RunResult],
    repeats: int,
    seed: int,
    done: Mapping[str, RunResult] | None = None,
) -> dict[str, Measured]:
    """Run every configuration ``repeats`` times in a seeded interleaved order.

    Runs whose label is in ``done`` are not run again; their results are used.
    Returns the measurements per key, in repeat order.
    """
    done = dict(done or {})
    configs = {c.key: c for c in [*candidates, defaults]}
    results: dict[tuple[str, int], RunResult] = {}
    order = interleaved_order(list(configs), repeats, seed)
    todo = sum(1 for k, r in order if run_label(k, r) not in done)
    if todo < len(order):
        log.info("confirmation: %d of %d runs already done", len(order) - todo, len(order))
    for key, r in order:
        label = run_label(key, r)
        if label in done:
            results[key, r] = done[label]
            continue
        results[key, r] = run_one(dict(configs[key].params), label)
    measured = {k: Measured(k) for k in configs}
    for key in configs:
        for r in range(repeats):
            res = results[key, r]
            measured[key].values.append(res.value)
            measured[key].feasible.append(res.feasible and res.value is not None)
    return measured
