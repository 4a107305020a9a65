"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Everything goes through ``MlflowClient`` with explicit run ids (no fluent active run,
no ``MLFLOW_RUN_ID``), so trials in any process or worker nest under the right parent.

Names (contract, see README):
- tags ``autotune.role`` = ``sweep`` | ``trial``; ``mlflow.parentRunId`` on trials;
  ``autotune.status`` = ``running`` | ``ok`` | ``failed``; ``autotune.failure``;
  ``autotune.phase`` (deploying → ready → benchmarking c<N> → done);
  ``autotune.simulated`` = ``true`` for simulator results; ``autotune.study``.
- parent metrics ``best_objective``, ``trials_done``, ``trials_failed`` with
  step = trial index (live curves).
- ``autotune.worker`` on trials: the sweep process that ran it (``search.worker`` or
  ``pid@host``); ``autotune.worker.<name>`` on the parent: ``pid@host`` while that
  worker is in the study, then ``done`` | ``interrupted``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from autotune.logs import route_library_logs
from autotune.owner import owner_dead, owner_id

log = logging.getLogger(__name__)
route_library_logs()

ROLE, STATUS, FAILURE, PHASE = (
    "autotune.role",
    "autotune.status",
    "autotune.failure",
    "autotune.phase",
)
SIMULATED, STUDY, PARENT = "autotune.simulated", "autotune.study", "mlflow.parentRunId"
# "<pid>@<host>" of the process that runs a sweep or trial: lets the next start close
# runs whose process was SIGKILLed (it could not close them itself).
OWNER = "autotune.owner"
# The sweep process (worker) a trial belongs to; on the parent, one tag per worker.
WORKER, SAMPLER_SEED = "autotune.worker", "autotune.sampler_seed"
_WORKER_DONE = ("done", "interrupted")
_TAG_UNSAFE = re.compile(r"[^\w.\- ]")
# Tags every trial run this process creates gets (its worker, its sampler seed): set
# by the sweep callback when a job starts, in the process that runs the job.
_job_tags: dict[str, str] = {}
# MLflow limits: 6000 characters per param value; batches of 100 params / 1000 metrics.
_PARAM_MAX = 6000


class TrackingError(RuntimeError):
    """The tracking store cannot be used; raised before anything is deployed."""


def default_uri(start_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(start_dir).resolve() / 'mlflow.db'}"


def resolve_uri(configured: str | None, start_dir: str | os.PathLike) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else sqlite in the start directory."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(start_dir)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # Relative sqlite paths would follow Hydra's per-job directories: pin them.
        rel = uri[len("sqlite:///") :]
        uri = f"sqlite:///{(Path(start_dir) / rel).resolve()}"
    return uri


# How long a study waits at start for another process's lock on a sqlite store. MLflow
# itself retries a locked store ten times with back-off: ~3 minutes of warnings.
SQLITE_LOCK_WAIT_S = 10.0


def _probe_sqlite(uri: str, wait_s: float = SQLITE_LOCK_WAIT_S) -> None:
    """Fail fast, naming the cause, when a sqlite store is locked by another process."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    if not path.is_file():
        return  # MLflow creates it
    try:
        con = sqlite3.connect(path, timeout=wait_s, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")  # the write lock a trial will need
            con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.Error as e:
        raise TrackingError(
            f"cannot use the MLflow tracking store {uri!r} ({type(e).__name__}: {e}, after "
            f"waiting {wait_s:.0f} s). Another process holds it: stop it (an open sqlite "
            "shell, a stuck writer), or use an MLflow server (tracking.uri=http://...), "
            "then re-run."
        ) from e


def open_client(uri: str) -> MlflowClient:
    """An MLflow client whose store is created and migrated before it is handed out.

    MLflow creates a sqlite store's tables on first use; two processes doing that at
    once (the console and the study it just launched, two workers on a fresh
    mlflow.db) break each other's alembic migration ("expected to match one row ...
    0 found", "duplicate column"). A lock file beside the database serialises that
    first use; after it, sqlite's own locking is enough.
    """
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    path = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    with FileLock(f"{path}.init.lock"):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    return client


@functools.lru_cache(maxsize=8)
def connect(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client and the experiment id, creating the experiment if needed.

    Fails with TrackingError (naming the store and the fix) when the store is
    unreachable or locked, so that a study never runs untracked. Cached per
    process: a new client re-opens the store, which costs about a second on sqlite.
    """
    _probe_sqlite(uri)
    try:
        client = open_client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                exp_id = client.create_experiment(experiment)
            except Exception:
                # Another worker created it between our lookup and create.
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
    except Exception as e:  # MLflow raises many types for an unusable store
        raise TrackingError(
            f"cannot use the MLflow tracking store {uri!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300] if str(e) else ''}). Fix tracking.uri= or "
            f"MLFLOW_TRACKING_URI, or start the tracking server, then re-run."
        ) from e
    return client, exp_id


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= _PARAM_MAX else s[: _PARAM_MAX - 3] + "..."


class RunLogger:
    """Log into one run by id; every call is cheap and safe to repeat.

    With ``deferred=True`` tags, params and metrics are buffered and sent in one
    batch by :meth:`flush` (and :meth:`end`): for trials that finish in
    milliseconds (the virtual clock) live updates are pointless and each store
    round trip costs more than the trial.
    """

    def __init__(self, client: MlflowClient, run_id: str, deferred: bool = False) -> None:
        self.client = client
        self.run_id = run_id
        self.deferred = deferred
        self._tags: dict[str, str] = {}
        self._params: dict[str, str] = {}
        self._metrics: list[Metric] = []

    def _send(self, tags=(), params=(), metrics=()) -> None:
        tags, params, metrics = list(tags), list(params), list(metrics)
        while tags or params or metrics:
            self.client.log_batch(
                self.run_id, tags=tags[:100], params=params[:100], metrics=metrics[:1000]
            )
            tags, params, metrics = tags[100:], params[100:], metrics[1000:]

    def tag(self, **tags: Any) -> None:
        self.set_tags(tags)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.deferred:
            self._tags.update({k: str(v) for k, v in tags.items()})
        elif tags:
            self._send(tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def params(self, params: Mapping[str, Any]) -> None:
        if self.deferred:
            self._params.update({k: _param_value(v) for k, v in params.items()})
        else:
            self._send(params=[Param(k, _param_value(v)) for k, v in params.items()])

    def metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v is not None and isinstance(v, int | float) and math.isfinite(v)
        ]
        if self.deferred:
            self._metrics += items
        else:
            self._send(metrics=items)

    def metric(self, key: str, value: float, step: int = 0) -> None:
        self.metrics({key: value}, step=step)

    def flush(self) -> None:
        tags = [RunTag(k, v) for k, v in self._tags.items()]
        params = [Param(k, v) for k, v in self._params.items()]
        self._send(tags=tags, params=params, metrics=self._metrics)
        self._tags, self._params, self._metrics = {}, {}, []

    def text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)

    def status(self) -> str:
        return self.client.get_run(self.run_id).info.status

    def reopen(self) -> None:
        """Mark a finished run RUNNING again (a resumed study)."""
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, OWNER, owner_id())


def set_job_tags(tags: Mapping[str, Any]) -> None:
    """Tags for the trial runs this process creates from now on (see ``_job_tags``)."""
    _job_tags.clear()
    _job_tags.update({k: str(v) for k, v in tags.items() if v is not None})


def create_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    tags: Mapping[str, Any],
    deferred: bool = False,
) -> RunLogger:
    tags = {k: str(v) for k, v in tags.items()}
    if tags.get(ROLE) == "trial":
        tags = {**_job_tags, **tags}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    return RunLogger(client, run.info.run_id, deferred=deferred)


def worker_tag(worker: str) -> str:
    """The parent run's tag for one worker (MLflow keys allow word characters, ``./ :-``)."""
    return WORKER + "." + _TAG_UNSAFE.sub("_", worker)


def live_workers(tags: Mapping[str, str], but: str | None = None) -> list[str]:
    """Owners of the workers still in a sweep run (a killed one on this host is not)."""
    prefix = WORKER + "."
    return [
        v
        for k, v in tags.items()
        if k.startswith(prefix) and k != but and v not in _WORKER_DONE and not owner_dead(v)
    ]


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process on this host no longer exists.

    A sweep run shared by several workers stays open while any of them lives.
    """
    closed = []
    running = client.search_runs(
        [experiment_id],
        filter_string="attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in running:
        tags = run.data.tags
        if owner_dead(tags.get(OWNER)) and not live_workers(tags):
            client.set_tag(run.info.run_id, STATUS, "interrupted")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def _sweep_runs(client: MlflowClient, experiment_id: str, study: str) -> list[Any]:
    """The live sweep runs of ``study``, the canonical one (oldest, then by id) first."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = 'sweep' and tags.`{STUDY}` = '{study}'",
        order_by=["attributes.start_time ASC"],
        max_results=100,
    )
    return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))


def find_sweep_run(client: MlflowClient, experiment_id: str, study: str) -> RunLogger | None:
    """The oldest sweep run of ``study`` in the experiment, if there is one."""
    found = _sweep_runs(client, experiment_id, study)
    return RunLogger(client, found[0].info.run_id) if found else None


def sweep_run(client: MlflowClient, run_id: str | None) -> RunLogger | None:
    """The sweep run ``run_id`` if it exists in this store and is not deleted."""
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except Exception:
        return None
    if run.info.lifecycle_stage != "active" or run.data.tags.get(ROLE) != "sweep":
        return None
    return RunLogger(client, run_id)


def find_or_create_sweep_run(
    client: MlflowClient,
    experiment_id: str,
    study: str,
    tags: Mapping[str, Any],
    settle_s: float = 0.0,
) -> tuple[RunLogger, bool]:
    """The sweep run of ``study`` found by tag, or a new one; True if it was created.

    Without a lock: when two processes both find none and both create one, each looks
    again after ``settle_s`` (longer than a create takes) and both keep the oldest;
    the other is deleted. The callback uses this only where the Optuna study cannot
    serve as the lock (see :func:`autotune.study.join_study`).
    """
    found = find_sweep_run(client, experiment_id, study)
    if found is not None:
        return found, False
    mine = create_run(client, experiment_id, study, tags)
    if settle_s <= 0:
        return mine, True
    time.sleep(settle_s)
    canonical = _sweep_runs(client, experiment_id, study)[0].info.run_id
    if canonical == mine.run_id:
        return mine, True
    log.info("another worker created the sweep run of %s first: joining it", study)
    client.delete_run(mine.run_id)
    return RunLogger(client, canonical), False


def join_sweep_run(run: RunLogger, worker: str) -> None:
    """Record this process as one of the sweep run's workers and mark the run RUNNING."""
    run.tag(**{worker_tag(worker): owner_id(), OWNER: owner_id(), STATUS: "running"})
    if run.status() != "RUNNING":
        run.client.update_run(run.run_id, status="RUNNING")


def leave_sweep_run(run: RunLogger, worker: str, status: str) -> bool:
    """Record that this worker left; True when it was the last one (close the run)."""
    key = worker_tag(worker)
    run.tag(**{key: "interrupted" if status == "KILLED" else "done"})
    return not live_workers(run.client.get_run(run.run_id).data.tags, but=key)


def search_all(
    client: MlflowClient, experiment_ids: list[str], filter_string: str, order: str = "ASC"
) -> list[Any]:
    """Every run matching ``filter_string`` (all pages), by start time ``order``."""
    runs: list[Any] = []
    token = None
    while experiment_ids:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            max_results=1000,
            order_by=[f"attributes.start_time {order}"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """All trial runs nested under a sweep run, oldest first."""
    return search_all(
        client,
        [experiment_id],
        f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{ROLE}` = 'trial'",
    )


def mark_reclaimed(
    client: MlflowClient, experiment_id: str, parent_run_id: str, trial_index: int
) -> list[str]:
    """Retag the ok runs of a trial the search never heard back from.

    A sweep process killed after a trial's run was recorded but before Optuna was told
    leaves an ok run for a trial the next sweep reclaims (FAIL, budget given back, the
    slot re-run). Its numbers stay, but as ``reclaimed``: MLflow and Optuna then agree
    on which trials count, and the summary does not pick a result the search never saw.
    """
    runs = search_all(
        client,
        [experiment_id],
        f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{ROLE}` = 'trial' "
        f"and tags.`autotune.trial_index` = '{trial_index}' and tags.`{STATUS}` = 'ok'",
    )
    for run in runs:
        client.set_tag(run.info.run_id, STATUS, "reclaimed")
        client.set_tag(run.info.run_id, FAILURE, "worker_killed")
    return [run.info.run_id for run in runs]


def is_terminal(status: str) -> bool:
    return RunStatus.is_terminated(RunStatus.from_string(status))
