"""Several workers, one study, on a real PostgreSQL and a real ``mlflow server``.

Two sweep processes (``search.worker=w1`` / ``w2``) on the simulator's virtual clock
share one Optuna study in PostgreSQL and one MLflow parent run on the server; one is
SIGKILLed mid-study and re-run. Nothing is mocked: real Hydra, Optuna, MLflow.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from team_servers import Study, wait_ok

from autotune import tracking
from autotune.study.team import REPEAT_ATTR

VIRTUAL = ("search=tpe", "deploy=sim", "deploy.clock=virtual")
pytestmark = pytest.mark.slow


def optuna_study(study: Study) -> optuna.Study:
    return optuna.load_study(study_name=study.name, storage=study.servers.storage)


def check_study(study: Study, budgets: dict[str, int], reclaimed: int = 0) -> MlflowClient:
    """The study holds every worker's budget once, in Optuna and in MLflow."""
    trials = optuna_study(study).get_trials(deepcopy=False)
    # Exact repeats are answered from the earlier measurement: no deployment, no budget.
    complete = [
        t
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE and REPEAT_ATTR not in t.user_attrs
    ]
    by_worker = Counter(t.user_attrs["autotune_worker"] for t in complete)
    assert by_worker == budgets
    lost = [t for t in trials if t.state != optuna.trial.TrialState.COMPLETE]
    assert len(lost) == reclaimed and all(t.user_attrs.get("autotune_reclaimed") for t in lost)
    seeds = {
        w: {t.user_attrs["autotune_seed"] for t in complete if t.user_attrs["autotune_worker"] == w}
        for w in budgets
    }
    assert all(len(s) == 1 for s in seeds.values())
    assert len({next(iter(s)) for s in seeds.values()}) == len(budgets), seeds

    client = MlflowClient(study.servers.mlflow_url)
    exp = client.get_experiment_by_name(study.experiment)
    sweeps = client.search_runs([exp.experiment_id], f"tags.`{tracking.ROLE}` = 'sweep'")
    assert len(sweeps) == 1, [r.info.run_name for r in sweeps]
    parent = sweeps[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.STUDY] == study.name
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`{tracking.ROLE}` = 'trial'", max_results=1000
    )
    assert {r.data.tags[tracking.PARENT] for r in runs} == {parent.info.run_id}
    index = Counter(r.data.tags["autotune.trial_index"] for r in runs)
    assert max(index.values()) == 1, index  # no trial recorded twice
    assert sum(r.data.tags["autotune.baseline"] == "true" for r in runs) == 1
    ok = {
        int(r.data.tags["autotune.trial_index"]): r
        for r in runs
        if r.data.tags[tracking.STATUS] == "ok" and r.data.tags["autotune.baseline"] == "false"
    }
    # Every COMPLETE Optuna trial is one ok MLflow run (job = trial number + 1), tagged
    # with the worker that ran it.
    assert sorted(ok) == sorted(t.number + 1 for t in complete)
    for t in complete:
        run = ok[t.number + 1]
        assert run.data.tags[tracking.WORKER] == t.user_attrs["autotune_worker"]
        assert run.data.tags[tracking.SAMPLER_SEED] == str(t.user_attrs["autotune_seed"])
        assert float(run.data.metrics["objective"]) == pytest.approx(t.value)
    return client


def test_two_workers_share_one_study_and_one_parent_run(new_study):
    study = new_study(*VIRTUAL, "search.n_trials=4")
    procs = {w: study.start(w) for w in ("w1", "w2")}  # at once: both race to create
    for w, p in procs.items():
        wait_ok(p, study, w)
    client = check_study(study, {"w1": 4, "w2": 4})

    # The storage password (on both command lines) is in no log and nowhere in MLflow.
    password = study.servers.pg.password
    for w in procs:
        log = study.log(w)
        assert password not in log
        assert "Study team-" in log
    exp = client.get_experiment_by_name(study.experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    for r in runs:
        stored = [*r.data.tags.values(), *r.data.params.values()]
        assert not [v for v in stored if password in v], r.info.run_name
    parent = next(r for r in runs if r.data.tags[tracking.ROLE] == "sweep")
    assert "search.storage=postgresql://***@127.0.0.1" in parent.data.tags["autotune.command"]
    trial = next(r for r in runs if r.data.tags[tracking.ROLE] == "trial")
    mlflow.set_tracking_uri(study.servers.mlflow_url)
    config = mlflow.artifacts.load_text(f"runs:/{trial.info.run_id}/config.yaml")
    assert password not in config and "postgresql://***@127.0.0.1" in config


def test_a_killed_worker_rerun_completes_the_study_and_loses_nothing(new_study):
    study = new_study(*VIRTUAL, "search.n_trials=5")
    w1, w2 = study.start("w1"), study.start("w2")
    # SIGKILL w1 while it runs a trial (after it has finished some).
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and w1.poll() is None:
        try:
            trials = optuna_study(study).get_trials(deepcopy=False)
        except KeyError:  # the study does not exist yet
            trials = []
        mine = [t for t in trials if t.user_attrs.get("autotune_worker") == "w1"]
        running = [t for t in mine if t.state == optuna.trial.TrialState.RUNNING]
        if running and len(mine) >= 2:
            os.killpg(w1.pid, signal.SIGKILL)
            killed = running[0].number
        time.sleep(0.05)
    assert killed is not None, "w1 never ran a trial to kill: " + study.log("w1")[-2000:]
    assert w1.wait(timeout=30) == -signal.SIGKILL
    # The trial w1 died in, as Optuna has it now: the one seen above, unless it was told
    # between the poll and the kill (then w1's next one, or none if it had not asked).
    left = [
        t.number
        for t in optuna_study(study).get_trials(deepcopy=False)
        if t.user_attrs.get("autotune_worker") == "w1"
        and t.state == optuna.trial.TrialState.RUNNING
    ]
    assert len(left) <= 1, left
    wait_ok(w2, study, "w2")

    rerun = study.start("w1", log_name="w1-rerun")
    wait_ok(rerun, study, "w1-rerun")
    for number in left:
        assert f"trial {number} was left RUNNING" in study.log("w1-rerun")
    client = check_study(study, {"w1": 5, "w2": 5}, reclaimed=len(left))
    # The killed trial's run is closed, not left RUNNING; nothing else is.
    exp = client.get_experiment_by_name(study.experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    for number in left:
        killed_runs = [
            r for r in runs if r.data.tags.get("autotune.trial_index") == str(number + 1)
        ]
        # None when w1 died before its trial opened a run; KILLED when it died during
        # the trial; FINISHED but reclaimed when it died after recording the run and
        # before telling Optuna.
        assert [(r.info.status, r.data.tags[tracking.STATUS]) for r in killed_runs] in (
            [],
            [("KILLED", "interrupted")],
            [("FINISHED", "reclaimed")],
        )
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


def test_workers_creating_the_parent_run_at_once_keep_one(team_servers):
    """The lock-free path (grids, older studies): both create, both keep the oldest."""
    client, exp_id = tracking.connect(team_servers.mlflow_url, f"race-{time.time_ns()}")
    barrier, got = threading.Barrier(3), []

    def worker() -> None:
        barrier.wait()
        run, _ = tracking.find_or_create_sweep_run(
            client, exp_id, "race", {tracking.ROLE: "sweep", tracking.STUDY: "race"}, 2.0
        )
        got.append(run.run_id)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1
    left = client.search_runs([exp_id], f"tags.`{tracking.STUDY}` = 'race'")
    assert [r.info.run_id for r in left] == got[:1]
