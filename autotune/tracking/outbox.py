"""Nothing a trial records is lost when MLflow is down: it is kept locally, then uploaded.

A study runs for hours; the tracking server may restart, or the sqlite file may be
locked by another process for a while. Every MLflow call of a trial goes through
:class:`SafeRun`: a transient failure is retried (tenacity: 3 attempts, at most
~20 s), and if the store is still unavailable the run switches to its **outbox**, a
journal under the sweep directory::

    <sweep dir>/outbox/<trial>-<id>/ops.jsonl     one line per call (create, batch, artifact, end)
                                   files/<n>/      copies of the artifacts
                                   progress.json   calls replayed so far, and the run id

The trial goes on (its score still reaches the sweeper). The journal is replayed,
in order, into the same store at the next trial's start, at the study's end, and at
the next start of ``python -m autotune`` (a small index in the state directory
remembers journals of earlier sweeps), then deleted. A call MLflow rejects for good
(an invalid value) is logged and skipped, not retried forever.

    box = Outbox(sweep_dir)
    box.replay(client)                         # upload what earlier trials kept
    run = SafeRun.create(client, box, exp_id, "trial-003", tags)
    run.params({...}); run.metrics({...}); run.artifact(path, "logs"); run.end("FINISHED")

MLflow's HTTP client retries a refused connection 7 times over ~4 minutes by default;
:func:`bound_http_retries` lowers that (unless set by the user), so that an outage
costs a trial seconds, and a study whose server is down fails at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from autotune import tracking
from autotune.deploy import leftovers as registry
from autotune.owner import owner_dead, owner_id

log = logging.getLogger(__name__)

OUTBOX = "outbox"
_OPS, _PROGRESS, _FILES, _HEADER = "ops.jsonl", "progress.json", "files", "journal.json"
# Written once the run that keeps the journal is done with it: only then is it replayed
# (or when the process that kept it is gone).
_CLOSED = "closed"
# MlflowException error codes that mean "try again later" (the store, not the call).
_TRANSIENT_CODES = frozenset(
    {
        "TEMPORARILY_UNAVAILABLE",
        "INTERNAL_ERROR",
        "REQUEST_LIMIT_EXCEEDED",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "SERVICE_UNDER_MAINTENANCE",
    }
)
# Bounds of MLflow's own HTTP retries (environment defaults; a user's settings win).
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


# After a call found the store unavailable, this process sends nothing to it for a
# while (calls go straight to the journal): an outage costs one timeout, not one per call.
DOWN_FOR_S = 15.0
_down_until = 0.0


def _mark_down() -> None:
    global _down_until
    _down_until = time.monotonic() + DOWN_FOR_S


def _mark_up() -> None:
    global _down_until
    _down_until = 0.0


def store_down() -> bool:
    """Did a call of this process find the store unavailable moments ago?"""
    return time.monotonic() < _down_until


def bound_http_retries() -> None:
    """Keep one failing MLflow HTTP call to seconds, not minutes (see module doc)."""
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)


class _StoreDown(ConnectionError):
    """Not tried: the store was found unavailable moments ago."""


def is_transient(exc: BaseException) -> bool:
    """Is ``exc`` the store being unavailable (retry later), not a rejected call?"""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    try:
        import requests
        from sqlalchemy.exc import OperationalError

        transient: tuple[type[BaseException], ...] = (
            OSError,
            requests.RequestException,
            OperationalError,
        )
    except ImportError:  # pragma: no cover - both come with mlflow
        transient = (OSError,)
    return isinstance(exc, transient)


def _retrying() -> Retrying:
    return Retrying(
        stop=stop_after_attempt(3) | stop_after_delay(20),
        wait=wait_exponential(multiplier=0.5, max=4),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )


def check_reachable(uri: str) -> None:
    """Fail at once, naming the fix, when an HTTP tracking server does not answer.

    Raises :class:`autotune.tracking.TrackingError`. Other stores (sqlite, a
    database URL) are checked by opening them (:func:`autotune.tracking.connect`).
    """
    if not uri.startswith(("http://", "https://")):
        return
    import httpx

    from autotune.secrets import mask_url

    try:
        httpx.get(uri.rstrip("/") + "/health", timeout=httpx.Timeout(10.0, connect=5.0))
    except httpx.HTTPError as e:
        raise tracking.TrackingError(
            f"the MLflow tracking server {mask_url(uri)} does not answer "
            f"({type(e).__name__}: {str(e)[:200]}). Start it (e.g. mlflow server --host "
            f"127.0.0.1 --port <port> --backend-store-uri sqlite:///$PWD/mlflow.db), or "
            f"fix tracking.uri= / MLFLOW_TRACKING_URI, then re-run."
        ) from e


# -- the journal ---------------------------------------------------------------------------
class Journal:
    """One run's calls that MLflow did not take, in order, with copies of the files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, root: Path, label: str, uri: str, run_id: str | None) -> Journal:
        path = root / f"{label}-{uuid.uuid4().hex[:8]}"
        (path / _FILES).mkdir(parents=True, exist_ok=True)
        (path / _HEADER).write_text(json.dumps({"uri": uri, "label": label, "owner": owner_id()}))
        if run_id is not None:
            _write_json(path / _PROGRESS, {"done": 0, "run_id": run_id})
        _index_add(path, uri)
        return cls(path)

    def append(self, op: dict[str, Any]) -> None:
        with open(self.path / _OPS, "a") as f:
            f.write(json.dumps(op) + "\n")

    def keep_file(self, src: Path) -> str:
        """Copy ``src`` (file or folder) into the journal; its path relative to it."""
        n = len(list((self.path / _FILES).iterdir()))
        dest = self.path / _FILES / str(n) / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
        return str(dest.relative_to(self.path))

    def keep_text(self, text: str, name: str) -> str:
        n = len(list((self.path / _FILES).iterdir()))
        dest = self.path / _FILES / str(n) / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        return str(dest.relative_to(self.path))

    def close(self) -> None:
        (self.path / _CLOSED).touch()

    @property
    def ready(self) -> bool:
        """Complete: closed by its run, or left by a process that is gone."""
        if (self.path / _CLOSED).exists():
            return True
        header = _read_json(self.path / _HEADER) or {}
        return owner_dead(header.get("owner"))

    def replay(self, client: Any) -> bool:
        """Send the calls not sent yet; True when all went (the journal is then removed).

        One attempt per call: a store that is still down leaves the rest for later.
        """
        _mark_up()
        progress = _read_json(self.path / _PROGRESS) or {"done": 0, "run_id": None}
        ops_path = self.path / _OPS
        ops = (
            [json.loads(line) for line in ops_path.read_text().splitlines()]
            if ops_path.exists()
            else []
        )
        for i in range(progress["done"], len(ops)):
            op = ops[i]
            try:
                progress["run_id"] = _apply(client, self.path, op, progress.get("run_id"))
            except Exception as e:
                if is_transient(e):
                    _mark_down()
                    log.info(
                        "tracking still unavailable (%s): %s waits", type(e).__name__, self.path
                    )
                    _write_json(self.path / _PROGRESS, progress)
                    return False
                log.warning("MLflow rejected a kept %s call of %s: %s", op["op"], self.path.name, e)
            progress["done"] = i + 1
            _write_json(self.path / _PROGRESS, progress)
        log.info(
            "uploaded the tracking data kept in %s (run %s)", self.path, progress.get("run_id")
        )
        _index_remove(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        return True


def _apply(client: Any, folder: Path, op: dict[str, Any], run_id: str | None) -> str | None:
    from mlflow.entities import Metric, Param, RunTag

    kind = op["op"]
    if kind == "create":
        run = client.create_run(
            op["experiment_id"], start_time=op["start_time"], tags=op["tags"], run_name=op["name"]
        )
        return run.info.run_id
    assert run_id is not None, f"{kind} before the run exists"
    if kind == "batch":
        tags = [RunTag(k, v) for k, v in op.get("tags", {}).items()]
        params = [Param(k, v) for k, v in op.get("params", {}).items()]
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in op.get("metrics", [])]
        tracking.RunLogger(client, run_id)._send(tags=tags, params=params, metrics=metrics)
    elif kind == "artifact":
        src = folder / op["src"]
        if src.is_dir():
            client.log_artifacts(run_id, str(src), op.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(src), op.get("artifact_path"))
    elif kind == "end":
        client.set_terminated(run_id, status=op["status"], end_time=op["end_time"])
    return run_id


# -- the outbox of a sweep -----------------------------------------------------------------
class Outbox:
    """The journals of one sweep directory."""

    def __init__(self, sweep_dir: Path, uri: str) -> None:
        self.root = Path(sweep_dir) / OUTBOX
        self.uri = uri

    def journals(self) -> list[Journal]:
        if not self.root.is_dir():
            return []
        return [Journal(p) for p in sorted(self.root.iterdir()) if (p / _HEADER).exists()]

    def replay(self, client: Any, force: bool = False) -> int:
        """Upload every journal of this sweep while the store takes them; how many went.

        Skipped (0) when the store was found down moments ago, unless ``force``.
        """
        if store_down() and not force:
            return 0
        return _replay_all(client, self.journals())


def replay_pending(client: Any, uri: str) -> int:
    """Upload the journals that earlier sweeps (into ``uri``) left; how many went."""
    journals = []
    for entry in sorted(_index_dir().glob("*.json")):
        data = _read_json(entry) or {}
        path = Path(data.get("path", ""))
        if not (path / _HEADER).exists():
            entry.unlink(missing_ok=True)
        elif data.get("uri") == uri:
            journals.append(Journal(path))
    return _replay_all(client, journals)


def _replay_all(client: Any, journals: list[Journal]) -> int:
    sent = 0
    for j in journals:
        if not j.ready:
            continue  # a trial running now still writes it
        try:
            if not j.replay(client):
                break  # still down: the others wait too
        except Exception:  # a broken journal must not stop the study
            log.exception("could not replay %s", j.path)
            continue
        sent += 1
    return sent


def _index_dir() -> Path:
    path = registry.registry_dir().parent / "outbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _index_entry(path: Path) -> Path:
    return _index_dir() / (hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16] + ".json")


def _index_add(path: Path, uri: str) -> None:
    _write_json(_index_entry(path), {"path": str(path.resolve()), "uri": uri})


def _index_remove(path: Path) -> None:
    _index_entry(path).unlink(missing_ok=True)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- the run a trial logs into -------------------------------------------------------------
class SafeRun:
    """:class:`autotune.tracking.RunLogger`'s interface; never raises for an outage.

    Online, calls go to MLflow (retried while transient). After a call fails for good
    with the store unavailable, this call and every later one go to a journal in the
    outbox; :meth:`end` tries once to upload it.
    """

    def __init__(
        self,
        client: Any,
        outbox: Outbox,
        run_id: str | None,
        label: str,
        deferred: bool = False,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.label = label
        self.logger = tracking.RunLogger(client, run_id, deferred=deferred) if run_id else None
        self.deferred = deferred
        self.journal: Journal | None = None

    @classmethod
    def create(
        cls,
        client: Any,
        outbox: Outbox,
        experiment_id: str,
        name: str,
        tags: Mapping[str, Any],
        deferred: bool = False,
    ) -> SafeRun:
        run = cls(client, outbox, None, name, deferred)
        start = int(time.time() * 1000)
        try:
            if store_down():
                raise _StoreDown()
            created = _retrying()(tracking.create_run, client, experiment_id, name, tags, deferred)
            run.logger = created
            _mark_up()
        except Exception as e:
            if not is_transient(e):
                raise
            run._offline(None if isinstance(e, _StoreDown) else e)
            assert run.journal is not None
            # The same tags tracking.create_run would give (the job's worker tags).
            all_tags = {k: str(v) for k, v in tags.items()}
            if all_tags.get(tracking.ROLE) == "trial":
                all_tags = {**getattr(tracking, "_job_tags", {}), **all_tags}
            run.journal.append(
                {
                    "op": "create",
                    "experiment_id": experiment_id,
                    "name": name,
                    "tags": all_tags,
                    "start_time": start,
                }
            )
        return run

    @property
    def run_id(self) -> str | None:
        return self.logger.run_id if self.logger else None

    @property
    def online(self) -> bool:
        return self.journal is None

    def _offline(self, exc: BaseException | None) -> None:
        if exc is not None:
            _mark_down()
        if self.journal is None:
            self.journal = Journal.open(self.outbox.root, self.label, self.outbox.uri, self.run_id)
            if self.logger is not None and self.deferred:
                # What the buffer holds came first: it goes first (later tags win).
                held = self.logger
                self.journal.append(
                    {
                        "op": "batch",
                        "tags": dict(held._tags),
                        "params": dict(held._params),
                        "metrics": [[m.key, m.value, m.timestamp, m.step] for m in held._metrics],
                    }
                )
                held._tags, held._params, held._metrics = {}, {}, []
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if exc else "down"
            log.warning(
                "MLflow is unavailable (%s); %s's results are kept in %s and uploaded "
                "when it is back",
                why,
                self.label,
                self.journal.path,
            )

    def _call(self, fn: Callable[[], Any], keep: Callable[[Journal], None]) -> None:
        if self.journal is None and store_down():
            self._offline(None)
        if self.journal is None:
            try:
                _retrying()(fn)
                return
            except Exception as e:
                if not is_transient(e):
                    log.warning("MLflow rejected a call for %s: %s", self.label, e)
                    return
                self._offline(e)
        assert self.journal is not None
        keep(self.journal)

    # -- RunLogger's interface -------------------------------------------------------------
    def tag(self, **tags: Any) -> None:
        self.set_tags(tags)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        self._call(
            lambda: self.logger.set_tags(tags),
            lambda j: j.append({"op": "batch", "tags": tags}),
        )

    def params(self, params: Mapping[str, Any]) -> None:
        params = {k: tracking._param_value(v) for k, v in params.items()}
        self._call(
            lambda: self.logger.params(params),
            lambda j: j.append({"op": "batch", "params": params}),
        )

    def metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        rows = [
            [k, float(v), now, step]
            for k, v in metrics.items()
            if v is not None and isinstance(v, int | float) and v == v and abs(v) != float("inf")
        ]
        self._call(
            lambda: self.logger.metrics(metrics, step=step),
            lambda j: j.append({"op": "batch", "metrics": rows}),
        )

    def metric(self, key: str, value: float, step: int = 0) -> None:
        self.metrics({key: value}, step=step)

    def text(self, text: str, artifact_file: str) -> None:
        folder, _, name = artifact_file.rpartition("/")
        self._call(
            lambda: self.logger.text(text, artifact_file),
            lambda j: j.append(
                {"op": "artifact", "src": j.keep_text(text, name), "artifact_path": folder or None}
            ),
        )

    def dict(self, data: Any, artifact_file: str) -> None:
        self.text(json.dumps(data, indent=2), artifact_file)

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.exists():
            return
        self._call(
            lambda: self.logger.artifact(path, artifact_path),
            lambda j: j.append(
                {"op": "artifact", "src": j.keep_file(path), "artifact_path": artifact_path}
            ),
        )

    def end(self, status: str) -> None:
        """Close the run (or keep the close), then try once to upload what was kept."""
        end_time = int(time.time() * 1000)
        if self.journal is None and store_down():
            self._offline(None)
        if self.journal is None:
            try:
                _retrying()(self.logger.end, status)
                return
            except Exception as e:
                if not is_transient(e):
                    log.warning("MLflow rejected closing %s: %s", self.label, e)
                    return
                self._offline(e)
        assert self.journal is not None
        self.journal.append({"op": "end", "status": status, "end_time": end_time})
        self.close()

    def close(self) -> None:
        """Done with this run here: a journal is complete, and tried once right away."""
        if self.journal is None:
            return
        self.journal.close()
        if not store_down() and self.journal.replay(self.client):
            log.info("%s: tracking is back, its kept results are uploaded", self.label)
