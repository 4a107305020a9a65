"""search.pruner: each level's score is reported to the job's Optuna trial, and a
trial the pruner stops is told to Optuna as PRUNED."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from study_runner import optuna_study, run_cli, runs

from autotune.objective import Objective
from autotune.trial import pruning

OBJ = Objective(["output_throughput_tok_s"], ["maximize"])


def _finished(study: optuna.Study, per_step: list[float]) -> None:
    trial = study.ask()
    for step, value in enumerate(per_step):
        trial.report(value, step)
    study.tell(trial, per_step[-1])


def test_a_trial_below_the_median_is_pruned_and_told_as_pruned():
    study = optuna.create_study(direction="maximize")
    for v in (100.0, 110.0, 120.0):
        _finished(study, [v, v, v])
    low = {"output_throughput_tok_s": 10.0}
    trial = study.ask()
    pruning.register(41, trial, "median")
    report = pruning.reporter_for_job(41, OBJ)
    assert report is not None and pruning.reporter_for_job(41, OBJ) is None  # taken once
    assert not report(0, low, False)  # warm-up step: never pruned
    assert report(1, low, False)  # below the median at step 1, a level to go
    study.tell(trial, 10.0)  # what the stock sweep loop does with the job's value
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED
    assert study.trials[-1].intermediate_values == {0: 10.0, 1: 10.0}

    # At the last level nothing is left to save: reported, never pruned.
    last = study.ask()
    pruning.register(43, last, "median")
    report = pruning.reporter_for_job(43, OBJ)
    assert not report(0, low, False) and not report(1, low, True)
    study.tell(last, 10.0)
    assert study.trials[-1].state == optuna.trial.TrialState.COMPLETE


def test_no_pruner_registers_nothing_and_bad_names_are_refused():
    study = optuna.create_study(direction="maximize")
    pruning.register(42, study.ask(), "none")
    assert pruning.reporter_for_job(42, OBJ) is None
    with pytest.raises(ValueError, match="median, hyperband"):
        pruning.make_pruner("sometimes")


@pytest.mark.slow
def test_a_tpe_study_with_the_median_pruner_prunes_and_records_it(tmp_path: Path):
    run_cli(
        tmp_path,
        "search=tpe",
        "search.n_trials=10",
        "search.pruner=median",
        "deploy.clock=virtual",
        "benchmark.concurrency=[4,16,64]",
        "benchmark.max_requests_per_run=64",
        'benchmark.scenarios=["D(256,64)"]',
        check=True,
    )
    trials = optuna_study(tmp_path).trials
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and complete
    assert all(len(t.intermediate_values) == 3 for t in complete)
    assert all(len(t.intermediate_values) < 3 for t in pruned)
    _, mlruns = runs(tmp_path)
    tagged = mlruns[mlruns["tags.autotune.pruned"] == "true"]
    assert len(tagged) == len(pruned)
    assert set(tagged["tags.autotune.levels_run"]) <= {"4,16", "4"}
    assert tagged["metrics.c4.output_throughput_tok_s"].notna().all()


@pytest.mark.parametrize(
    "name, kind",
    [("median", optuna.pruners.MedianPruner), ("hyperband", optuna.pruners.HyperbandPruner)],
)
def test_the_configured_pruner_is_the_studys(name, kind):
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    pruning.register(44, trial, name)
    assert isinstance(study.pruner, kind)
    report = pruning.reporter_for_job(44, OBJ)
    assert report is not None and not report(0, {"output_throughput_tok_s": 5.0}, False)
    assert study.trials[-1].intermediate_values == {0: 5.0}
