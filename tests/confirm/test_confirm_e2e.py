"""The confirmation stage end to end on the virtual clock: real Hydra, Optuna, MLflow.

One study (TPE, 3 trials + the baseline), then the same command again after some of
its confirmation runs were removed, as if the study had been stopped in the middle
of the confirmation stage: only the missing runs run again.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from study_runner import SMALL, run_cli

ARGS = [
    "search=tpe",
    "search.n_trials=3",
    "search.confirm.top_k=2",
    "search.confirm.repeats=2",
    "deploy.clock=virtual",
    *SMALL,
]


def confirm_runs(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    return df[df["tags.autotune.role"] == "sweep"], df[df["tags.autotune.role"] == "confirm"]


@pytest.mark.slow
def test_confirmation_runs_tags_verdict_and_resume(tmp_path):
    proc = run_cli(tmp_path, *ARGS, check=True)
    assert "Verdict (SIMULATED): " in proc.stdout
    sweep, confirm = confirm_runs(tmp_path)
    assert len(sweep) == 1
    parent = sweep.iloc[0]
    # (top_k + defaults) x repeats fresh runs, nested, each naming the trial it repeats.
    assert len(confirm) == 3 * 2
    assert (confirm["tags.mlflow.parentRunId"] == parent["run_id"]).all()
    assert confirm["tags.mlflow.runName"].is_unique
    trials = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`autotune.role` = 'trial'"
    )
    ids = set(trials["run_id"])
    assert (
        set(confirm["tags.autotune.confirms"]) <= ids
        and len(set(confirm["tags.autotune.confirms"])) == 3
    )
    # The search's budget and curves know nothing of them.
    assert len(trials) == 4 and parent["metrics.trials_total"] == 4
    verdict = parent["tags.autotune.verdict"]
    assert verdict in ("better", "indistinguishable", "worse")
    assert parent["metrics.confirm.repeats"] == 2
    low, gain, high = (
        parent[f"metrics.confirm.{k}"] for k in ("gain_ci_low_pct", "gain_pct", "gain_ci_high_pct")
    )
    assert low <= gain <= high
    assert parent["metrics.confirm.noise_cv_pct"] >= 0
    line = parent["tags.autotune.verdict_line"]
    assert line[:60] in proc.stdout
    readme = next((tmp_path / "multirun").rglob("best/README.md")).read_text()
    assert f"Confirmed: {line}" in readme
    chosen = parent["tags.autotune.confirmed_run_id"]
    assert chosen in ids and f"(MLflow run `{chosen}`)" in readme

    # Stopped after 4 of 6 confirmation runs: the same command runs only the other 2.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    gone = sorted(confirm["tags.mlflow.runName"])[:2]
    for run_id in confirm[confirm["tags.mlflow.runName"].isin(gone)]["run_id"]:
        client.delete_run(run_id)
    proc = run_cli(tmp_path, *ARGS, check=True)
    assert "confirmation: 4 of 6 runs already done" in proc.stderr
    _, again = confirm_runs(tmp_path)
    assert len(again) == 6 and sorted(again["tags.mlflow.runName"]) == sorted(
        confirm["tags.mlflow.runName"]
    )
    assert set(again["run_id"]) & set(confirm["run_id"]) == set(confirm["run_id"]) - set(
        confirm[confirm["tags.mlflow.runName"].isin(gone)]["run_id"]
    )
