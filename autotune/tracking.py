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
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from autotune.owner import owner_dead, owner_id

log = logging.getLogger(__name__)

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


@functools.lru_cache(maxsize=8)
def connect(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client and the experiment id, creating the experiment if needed.

    Fails with TrackingError (naming the store and the fix) when the store is
    unreachable or locked, so that a study never runs untracked. Cached per
    process: a new client re-opens the store, which costs about a second on sqlite.
    """
    try:
        client = MlflowClient(tracking_uri=uri)
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


def create_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    tags: Mapping[str, Any],
    deferred: bool = False,
) -> RunLogger:
    run = client.create_run(experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
    return RunLogger(client, run.info.run_id, deferred=deferred)


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process on this host no longer exists."""
    closed = []
    running = client.search_runs(
        [experiment_id],
        filter_string="attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in running:
        if owner_dead(run.data.tags.get(OWNER)):
            client.set_tag(run.info.run_id, STATUS, "interrupted")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def find_sweep_run(client: MlflowClient, experiment_id: str, study: str) -> RunLogger | None:
    """The oldest sweep run of ``study`` in the experiment, if there is one."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE}` = 'sweep' and tags.`{STUDY}` = '{study}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return RunLogger(client, found[0].info.run_id) if found else None


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """All trial runs nested under a sweep run, oldest first."""
    runs = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{ROLE}` = 'trial'",
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def is_terminal(status: str) -> bool:
    return RunStatus.is_terminated(RunStatus.from_string(status))
