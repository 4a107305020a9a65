"""Constraint-aware search: SLO slack and start-up failures reach the sampler as
Optuna constraints (Trial.set_constraint), never as measurements."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from study_runner import SMALL, optuna_study, run_cli, search_space

from autotune.deploy.failures import Failure
from autotune.objective import Score
from autotune.study.constraints import STARTUP_VIOLATION, Answer, answer_trials
from autotune.trial.spec import TrialResult


def result(**kw) -> TrialResult:
    return TrialResult("trial-001", kw.pop("status", "failed"), **kw)


def test_a_scored_trial_answers_its_value_and_one_constraint_per_slo():
    score = Score(values=[-0.25], raw=[900.0], feasible=False,
                  slack={"ttft_p99_ms": -0.25, "tpot_mean_ms": 0.1})  # fmt: skip
    answer = Answer.of(result(status="ok", score=score))
    assert answer.constraints == {"slo.ttft_p99_ms": 0.25, "slo.tpot_mean_ms": -0.1}
    assert answer.tell_value(["maximize"]) == -0.25 and float(answer) == -0.25


def test_a_start_up_failure_is_an_infeasible_region_not_a_measurement():
    oom = Answer.of(result(failure=Failure.OOM))
    assert oom.startup_failed and oom.values is None
    assert oom.constraints == {"startup": STARTUP_VIOLATION}
    assert oom.tell_value(["maximize"]) == -STARTUP_VIOLATION  # ranked by the constraint
    assert oom.tell_value(["minimize"]) == 1e6 + STARTUP_VIOLATION
    with pytest.raises(TypeError):  # Hydra's stock sweeper would record a FAIL
        float(oom)
    # A crash before the engine was ready is a start-up failure; a timeout is not.
    assert Answer.of(result(failure=Failure.CRASH)).startup_failed
    assert not Answer.of(result(failure=Failure.CRASH, startup_s=30.0)).startup_failed
    timeout = Answer.of(result(failure=Failure.STARTUP_TIMEOUT))
    assert timeout.tell_value(["maximize"]) is None and timeout.constraints == {}


def test_the_sweeper_sets_constraints_before_the_trial_is_told():
    study = optuna.create_study(direction="maximize")
    trials = [study.ask(), study.ask()]
    returns = [
        JobReturn(status=JobStatus.COMPLETED, _return_value=Answer([10.0], {"slo.x": -0.5})),
        JobReturn(status=JobStatus.COMPLETED, _return_value=Answer.of(result(failure=Failure.OOM))),
    ]
    answer_trials(trials, returns, ["maximize"])
    assert [r.return_value for r in returns] == [10.0, -STARTUP_VIOLATION]
    for t, r in zip(trials, returns, strict=True):
        study.tell(t, r.return_value)
    feasible, oom = study.trials
    assert feasible.constraints == {"slo.x": -0.5}
    assert oom.constraints == {"startup": STARTUP_VIOLATION}
    assert oom.user_attrs["autotune_failure"] == "oom"
    assert study.best_trial.number == feasible.number  # an infeasible trial is never best


SPACE = """# @package hydra.sweeper.params
params.mem-fraction-static: choice(0.3, 0.8, 0.9)
params.schedule-policy: choice(fcfs, lpm)
"""


@pytest.mark.slow
def test_a_study_gives_tpe_its_slos_and_start_up_failures_as_constraints(tmp_path: Path):
    run_cli(
        tmp_path,
        "search=tpe",
        "search.n_trials=4",
        "search.baseline=false",
        *search_space(tmp_path, SPACE),
        "deploy.clock=virtual",
        "deploy.gpu=h100_sxm",
        "model=qwen3-32b",  # 64 GB of weights: 30 % of an 80 GiB GPU cannot hold them
        "objective=throughput_slo",
        "objective.concurrency=4",
        *SMALL,
        check=True,
    )
    trials = optuna_study(tmp_path).trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        if t.params["params.mem-fraction-static"] == 0.3:
            assert t.constraints == {"startup": STARTUP_VIOLATION}
        else:
            assert set(t.constraints) == {"slo.ttft_p99_ms"}
