"""Model-based search end to end on the simulator: resume, failures, Pareto, parallel GPUs.

Real Hydra + Optuna sweeper (autotune_optuna) + MLflow + Optuna storage on sqlite; the
engine is the simulated SGLang, on the virtual clock unless a test needs real time.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from study_runner import optuna_study, run_cli, runs

from autotune import tracking
from autotune.study.team import RECLAIMED_ATTR, REPEAT_ATTR

VIRTUAL = ["deploy.clock=virtual"]


def autotune(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli(tmp_path, *args, timeout=timeout, check=True)


@pytest.mark.slow
def test_rerunning_the_same_command_resumes_without_repeating_trials(tmp_path):
    autotune(tmp_path, "search=tpe", "search.n_trials=3", *VIRTUAL)
    first = {t.number: t.params for t in optuna_study(tmp_path).trials}
    assert len(first) == 3
    proc = autotune(tmp_path, "search=tpe", "search.n_trials=5", *VIRTUAL)
    assert "3 trial(s) done, 2 to go" in proc.stderr
    # The resumed sampler re-proposes its seeded first points: answered from the earlier
    # measurements (no deployment, no budget), so 5 measured trials.
    trials = [t for t in optuna_study(tmp_path).trials if REPEAT_ATTR not in t.user_attrs]
    assert len(trials) == 5 and {t.number: t.params for t in trials[:3]} == first
    parent, children = runs(tmp_path)
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    # baseline once + 5 searched trials, all nested under the one sweep run
    assert len(children) == 6
    assert (children["tags.autotune.baseline"] == "true").sum() == 1
    assert (children["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]).all()
    assert children["tags.mlflow.runName"].is_unique
    # a third run has nothing left to do
    proc = autotune(tmp_path, "search=tpe", "search.n_trials=5", *VIRTUAL)
    assert "already has its 5 trials" in proc.stderr
    assert len(runs(tmp_path)[1]) == 6


@pytest.mark.slow
def test_a_trial_recorded_but_never_told_is_reclaimed_in_both_stores(tmp_path):
    """A sweep SIGKILLed after recording a trial in MLflow and before telling Optuna
    leaves an ok run for a RUNNING trial: the next run reclaims the trial (its slot is
    re-run) and retags the run, so the result the search never saw is not picked."""
    autotune(tmp_path, "search=tpe", "search.n_trials=1", *VIRTUAL)
    # What the SIGKILL leaves: a RUNNING trial owned by a process that is gone, and its
    # run finished ok with an objective better than anything measured.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    trial = optuna_study(tmp_path).ask()
    trial.set_user_attr("autotune_owner", f"{gone.pid}@{socket.gethostname()}")
    parent = runs(tmp_path)[0].iloc[0]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    index = trial.number + 1  # the job numbering of the Optuna sweeper
    orphan = client.create_run(
        parent["experiment_id"],
        run_name=f"trial-{index:03d}",
        tags={
            tracking.ROLE: "trial",
            tracking.PARENT: parent["run_id"],
            tracking.STATUS: "ok",
            "autotune.trial_index": str(index),
            "autotune.baseline": "false",
        },
    ).info.run_id
    client.log_metric(orphan, "objective", 1e9)
    client.set_terminated(orphan)

    proc = autotune(tmp_path, "search=tpe", "search.n_trials=2", *VIRTUAL)
    assert f"trial {trial.number} was left RUNNING" in proc.stderr
    assert "the search never heard its result: tagged reclaimed" in proc.stderr
    tags = client.get_run(orphan).data.tags
    assert (tags[tracking.STATUS], tags[tracking.FAILURE]) == ("reclaimed", "worker_killed")
    study = optuna_study(tmp_path)
    told = study.trials[trial.number]
    assert told.state == optuna.trial.TrialState.FAIL and told.user_attrs[RECLAIMED_ATTR]
    measured = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len([t for t in measured if REPEAT_ATTR not in t.user_attrs]) == 2
    best = client.get_run(parent["run_id"]).data.tags["autotune.best_run_id"]
    assert best != orphan


@pytest.mark.slow
def test_a_study_where_a_third_of_trials_fail_completes_with_the_best_feasible(tmp_path):
    # 0.05 and 0.06 of an H200 cannot hold the weights: SGLang's start-up failure.
    proc = autotune(
        tmp_path,
        "search=random",
        "search.n_trials=12",
        "search.baseline=false",
        "params.mem-fraction-static=0.05,0.06,0.7,0.8,0.9",
        *VIRTUAL,
    )
    trials = optuna_study(tmp_path).trials
    measured = [t for t in trials if REPEAT_ATTR not in t.user_attrs]
    # A configuration that cannot start is an infeasible region for the sampler (the
    # constraint `startup`, autotune/study/constraints.py), not a FAIL trial.
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    failed = sum(1 for t in measured if t.constraints.get("startup", 0) > 0)
    assert len(measured) == 12 and 2 <= failed <= 9
    _, children = runs(tmp_path)
    bad = children[children["tags.autotune.status"] == "failed"]
    assert len(bad) == failed and (bad["tags.autotune.failure"] == "oom").all()
    assert (bad["params.mem-fraction-static"].astype(float) < 0.1).all()
    ok = children[children["tags.autotune.status"] == "ok"]
    assert (ok["metrics.objective"] > 0).all()
    assert "Best trial:" in proc.stdout
    assert optuna_study(tmp_path).best_value == pytest.approx(ok["metrics.objective"].max())


@pytest.mark.slow
def test_nsgaii_study_logs_a_pareto_front(tmp_path):
    proc = autotune(
        tmp_path, "search=nsgaii", "objective=pareto", "search.n_trials=6", *VIRTUAL,
        "benchmark.concurrency=[8,64]",
    )  # fmt: skip
    assert "Pareto front" in proc.stdout
    st = optuna_study(tmp_path)
    assert [d.name for d in st.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert st.best_trials
    parent, children = runs(tmp_path)
    ok = children[children["tags.autotune.status"] == "ok"]
    assert (ok["metrics.objective_0"] == ok["metrics.output_throughput_tok_s"]).all()
    assert (ok["metrics.objective_1"] == ok["metrics.ttft_p99_ms"]).all()
    client = mlflow.MlflowClient()
    path = client.download_artifacts(parent.iloc[0]["run_id"], "pareto_front.json", str(tmp_path))
    data = json.loads(Path(path).read_text())
    assert data["objectives"] == ["maximize:output_throughput_tok_s", "minimize:ttft_p99_ms"]
    values = [tuple(p["values"]) for p in data["pareto_front"]]
    assert values and parent.iloc[0]["metrics.pareto_size"] == len(values)
    # no point of the front is dominated by any successful trial
    for tput, ttft in values:
        assert not (
            (ok["metrics.objective_0"] >= tput)
            & (ok["metrics.objective_1"] <= ttft)
            & ((ok["metrics.objective_0"] > tput) | (ok["metrics.objective_1"] < ttft))
        ).any()


@pytest.mark.slow
def test_parallel_trials_never_share_a_gpu(tmp_path):
    """Two trials at once (joblib launcher), tp-size 1 or 2, on a fake 3-GPU host."""
    autotune(
        tmp_path,
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "deploy.gpus=[0,1,2]",
        "params.tp=1,2",
        "params.mem=0.7,0.8",
        "benchmark.concurrency=[4]",
        "benchmark.max_requests_per_run=8",
        'benchmark.scenarios=["D(256,64)"]',
    )
    _, t = runs(tmp_path)
    assert len(t) == 4 and (t["tags.autotune.status"] == "ok").all()
    gpus = {r["run_id"]: set(r["tags.autotune.gpus"].split(",")) for _, r in t.iterrows()}
    for _, r in t.iterrows():
        assert len(gpus[r["run_id"]]) == int(r["params.tp-size"])
    # The runs themselves overlap more (a trial waits for its lease inside its run):
    # what must never overlap is the time two trials held the same GPU.
    held = {
        r["run_id"]: tuple(map(float, r["tags.autotune.gpu_lease"].split("-")))
        for _, r in t.iterrows()
    }
    overlapping = 0
    ids = list(held)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if held[a][0] < held[b][1] and held[b][0] < held[a][1]:
                overlapping += 1
                assert not gpus[a] & gpus[b], (gpus[a], gpus[b], held[a], held[b])
    assert overlapping >= 1  # the two jobs did run at the same time
