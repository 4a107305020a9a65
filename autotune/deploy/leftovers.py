"""What autotune started and must not outlive a killed tuner: engines, containers, services.

Every start is recorded in a small JSON file (``record``); ``stop`` removes it
(``forget``). If the tuner is SIGKILLed mid-trial, the next study's start
(:func:`reap`) finds the entries of tuners that are gone and stops what they
name: process groups here (by PID, checked against the recorded start time so a
reused PID is never touched), containers and InferenceServices by their launchers
(``Launcher.reap``). One rule decides whose leftovers they are: :func:`owner_alive`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from autotune.owner import owner_dead, owner_id

log = logging.getLogger(__name__)


def registry_dir() -> Path:
    base = os.environ.get("AUTOTUNE_STATE_DIR") or Path.home() / ".cache" / "autotune"
    path = Path(base) / "running"
    path.mkdir(parents=True, exist_ok=True)
    return path


def owner_alive(owner: str | None) -> bool:
    """Is the tuner that started a leftover still running? (``"<pid>@<host>"``)

    Tuners on other hosts always count as alive (this host cannot tell); an entry or
    label without a readable owner counts as dead: only an older or crashed tuner
    leaves one, and keeping it would keep its engine running for ever.
    """
    return not owner_dead(owner, unknown_is_dead=True)


def _path(kind: str, key: str) -> Path:
    return registry_dir() / f"{kind}-{key}.json"


def record(kind: str, key: str, **entry: Any) -> None:
    """Note that this tuner started ``kind`` ``key`` (process, container, isvc …)."""
    data = {"kind": kind, "key": key, "owner": owner_id(), **entry}
    _path(kind, key).write_text(json.dumps(data))


def forget(kind: str, key: str) -> None:
    _path(kind, key).unlink(missing_ok=True)


def orphans(kind: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Entries of ``kind`` whose tuner is gone (unreadable entries are dropped)."""
    for path in sorted(registry_dir().glob(f"{kind}-*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        owner = entry.get("owner")
        if isinstance(owner, int):  # written before owners were "<pid>@<host>"
            owner = f"{owner}@{socket.gethostname()}"
        if not owner_alive(owner):
            yield path, entry


def record_process(pid: int, name: str) -> None:
    """A process group this tuner started (its leader's PID and start time)."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    record("process", str(pid), pid=pid, name=name, created=created)


def forget_process(pid: int) -> None:
    forget("process", str(pid))


def reap() -> list[dict[str, Any]]:
    """Stop what tuners that died left running; return what was stopped.

    Process groups are stopped here; each deploy target with leftovers of its own
    (``Launcher.leftover_kinds``) stops them in its ``reap``, and its client library
    is loaded only when the registry holds such an entry.
    """
    from autotune.deploy.plugins import launchers

    stopped = _reap_processes()
    for name, cls in launchers().items():
        kinds = [k for k in cls.leftover_kinds if k != "process"]
        if not any(any(registry_dir().glob(f"{k}-*.json")) for k in kinds):
            continue
        try:
            stopped += [{"kind": name, "name": n} for n in cls.reap()]
        except Exception as e:  # an unreachable daemon/cluster must not block a study
            log.warning("could not check deploy=%s leftovers: %s", name, e)
    return stopped


def _reap_processes() -> list[dict[str, Any]]:
    stopped = []
    for path, entry in orphans("process"):
        pid = int(entry.get("pid", entry.get("key", 0)))
        try:
            proc = psutil.Process(pid)
            same = entry.get("created") is None or abs(proc.create_time() - entry["created"]) < 1
        except psutil.Error:
            same = False
        if same:
            log.warning(
                "stopping engine pid %d left running by a killed tuner (%s)", pid, entry["name"]
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(entry)
        path.unlink(missing_ok=True)
    return stopped
