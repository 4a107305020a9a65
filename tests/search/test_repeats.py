"""No silent duplicate trials: TPE's exact repeats on a small space cost no deployment.

A 3 x 2 space and a budget of 6: TPE proposes repeats long before it has seen all six
configurations. Each repeat is told the earlier measurement and the sampler is asked
again, so the six deployed trials are the six distinct configurations, the repeats
use none of the budget, and a re-run of the command has nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from study_runner import SMALL, optuna_study, run_cli, runs, search_space

from autotune.study.team import REPEAT_ATTR

SPACE = """# @package hydra.sweeper.params
params.mem-fraction-static: choice(0.7, 0.8, 0.9)
params.schedule-policy: choice(fcfs, lpm)
"""


@pytest.mark.slow
def test_exact_repeats_are_answered_without_a_deployment(tmp_path: Path):
    args = [
        "search=tpe",
        "search.n_trials=6",
        *search_space(tmp_path, SPACE),
        "deploy.clock=virtual",
        *SMALL,
    ]
    proc = run_cli(tmp_path, *args, check=True)
    assert "answered from its measurement (no deployment)" in proc.stderr
    _, trials = runs(tmp_path)
    searched = trials[trials["tags.autotune.baseline"] != "true"]
    flags = searched[["params.mem-fraction-static", "params.schedule-policy"]]
    assert len(searched) == 6 and not flags.duplicated().any()  # all six, each once

    study = optuna_study(tmp_path)
    by_number = {t.number: t for t in study.trials}
    repeats = [t for t in study.trials if REPEAT_ATTR in t.user_attrs]
    assert repeats, "TPE proposed no exact repeat on a 6-point space (the test needs one)"
    for t in repeats:
        twin = by_number[t.user_attrs[REPEAT_ATTR]]
        assert t.params == twin.params and t.values == twin.values
    assert sum(1 for t in study.trials if REPEAT_ATTR not in t.user_attrs) == 6
    # Repeats used none of the budget: the same command has nothing left to run.
    again = run_cli(tmp_path, *args, check=True)
    assert "already has its 6 trials" in again.stderr
