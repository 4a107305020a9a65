"""Resume: which confirmation runs of a stopped study count as done (a real MLflow store)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from autotune import tracking
from autotune.confirm.study import ROLE_CONFIRM, SLOT, finished_runs


def test_finished_and_failed_runs_are_done_killed_and_running_ones_run_again(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("e")
    parent = client.create_run(exp, tags={tracking.ROLE: "sweep"}).info.run_id

    def confirm_run(label: str, end: str | None, status: str, objective: float | None = None):
        run = client.create_run(
            exp,
            tags={
                tracking.ROLE: ROLE_CONFIRM,
                tracking.PARENT: parent,
                SLOT: label,
                tracking.STATUS: status,
                "autotune.feasible": "false" if label.endswith("r3") else "true",
            },
        )
        if objective is not None:
            client.log_metric(run.info.run_id, "objective", objective)
        if end is not None:
            client.set_terminated(run.info.run_id, end)
        return run.info.run_id

    ok = confirm_run("confirm-trial-001-r1", "FINISHED", "ok", 100.0)
    confirm_run("confirm-trial-001-r2", "FAILED", "failed")
    confirm_run("confirm-defaults-r1", "KILLED", "failed")  # interrupted: runs again
    confirm_run("confirm-defaults-r2", None, "running")  # still RUNNING: runs again
    confirm_run("confirm-trial-001-r3", "FINISHED", "ok", 90.0)  # missed its SLO
    client.create_run(exp, tags={tracking.ROLE: "trial", tracking.PARENT: parent})

    done = finished_runs(client, exp, parent)
    assert set(done) == {"confirm-trial-001-r1", "confirm-trial-001-r2", "confirm-trial-001-r3"}
    assert done["confirm-trial-001-r1"].value == 100.0 and done["confirm-trial-001-r1"].run_id == ok
    assert done["confirm-trial-001-r2"].value is None and not done["confirm-trial-001-r2"].feasible
    assert done["confirm-trial-001-r3"].value == 90.0 and not done["confirm-trial-001-r3"].feasible
