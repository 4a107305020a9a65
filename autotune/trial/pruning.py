"""Optuna pruners for trials the Optuna sweeper runs (``search.pruner``).

The sweeper asks Optuna for a trial, then Hydra runs the job in the same process
(the basic launcher): the sweeper registers each job's Optuna trial here under the
Hydra job number, and the job picks it up to report one intermediate value per
concurrency level (``trial.report(value, step=level_index)``) and ask
``trial.should_prune()``. A job in another process (a joblib or Ray launcher) finds
nothing registered and runs unpruned.

A trial the pruner stopped is told to Optuna as PRUNED (the sweeper's ``tell`` is
wrapped, :func:`tell_pruned`): its partial score is not comparable to a complete
trial's, and TPE treats pruned trials by their last intermediate value. A trial
stopped by early abort (its SLOs can no longer be met) is told its infeasible score
instead: that number is a measurement, and tells the sampler how far it missed.

    pruning.register(job_num, trial)                 # the sweeper, before launching
    report = pruning.reporter_for_job(job_num, obj)  # the job: None when unregistered
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from autotune.objective import Objective

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "hyperband")

# Hydra job number -> the Optuna trial it runs; Optuna trial numbers that were pruned.
_jobs: dict[int, optuna.trial.Trial] = {}
_pruned: set[tuple[str, int]] = set()  # (study name, trial number)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruner ``search.pruner`` names. Median waits for 3 complete trials and
    prunes from the second level on; Hyperband's levels are the steps."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"search.pruner={name!r}: use one of {', '.join(PRUNERS)}")


def register(job_num: int, trial: optuna.trial.Trial, pruner: str) -> None:
    """Job ``job_num`` runs ``trial``; its study prunes with ``pruner``."""
    if pruner == "none":
        return
    trial.study.pruner = make_pruner(pruner)
    tell_pruned(trial.study)
    _jobs[job_num] = trial


def reporter_for_job(
    job_num: int | None, objective: Objective
) -> Callable[[int, Mapping[str, float], bool], bool] | None:
    """Reports a level's score to the job's Optuna trial; True: prune. None when the
    job has no registered trial (no pruner, another process, not a sweep)."""
    trial = _jobs.pop(job_num, None) if job_num is not None else None
    if trial is None:
        return None
    if len(objective.directions) > 1:
        log.warning("search.pruner: Optuna cannot prune multi-objective studies; ignored")
        return None
    return functools.partial(_report, trial, objective)


def _report(
    trial: optuna.trial.Trial,
    objective: Objective,
    step: int,
    metrics: Mapping[str, float],
    last: bool,
) -> bool:
    score = objective.score(metrics)
    if score is None:
        return False
    trial.report(float(score.values[0]), step)
    if last or not trial.should_prune():
        return False
    _pruned.add((trial.study.study_name, trial.number))
    return True


def was_pruned(study: optuna.Study, number: int) -> bool:
    return (study.study_name, number) in _pruned


def tell_pruned(study: optuna.Study) -> None:
    """Make ``study.tell`` tell a pruned trial as PRUNED, whatever the job returned."""
    if getattr(study, "_autotune_tell_pruned", False):
        return
    tell = study.tell

    def wrapped(trial: Any, values: Any = None, state: Any = None, **kwargs: Any) -> Any:
        number = trial if isinstance(trial, int) else trial.number
        if was_pruned(study, number):
            log.info("trial %d was pruned: told to Optuna as PRUNED", number)
            return tell(trial, state=optuna.trial.TrialState.PRUNED, **kwargs)
        return tell(trial, values=values, state=state, **kwargs)

    study.tell = wrapped  # type: ignore[method-assign]
    study._autotune_tell_pruned = True  # type: ignore[attr-defined]
