"""A registry of engines autotune started, so none outlives a killed tuner.

Each started engine (process group or container) is recorded in a small JSON file;
``stop`` removes it. If the tuner is SIGKILLed mid-trial, the next start of autotune
finds the leftovers and stops them: by PID (checked against the recorded process
start time, so a reused PID is never touched) or by container id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def registry_dir() -> Path:
    base = os.environ.get("AUTOTUNE_STATE_DIR") or Path.home() / ".cache" / "autotune"
    path = Path(base) / "running"
    path.mkdir(parents=True, exist_ok=True)
    return path


def record(pid: int, *, kind: str, name: str, **extra: object) -> None:
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    entry = {"pid": pid, "kind": kind, "name": name, "created": created, "owner": os.getpid()}
    entry.update(extra)
    (registry_dir() / f"{kind}-{pid}.json").write_text(json.dumps(entry))


def forget(pid: int, kind: str = "process") -> None:
    (registry_dir() / f"{kind}-{pid}.json").unlink(missing_ok=True)


def _owner_alive(entry: dict) -> bool:
    owner = entry.get("owner")
    return bool(owner) and owner != os.getpid() and psutil.pid_exists(owner)


def reap() -> list[dict]:
    """Stop engines whose tuner died without stopping them; return what was stopped.

    Processes are handled here; containers and InferenceServices by their launchers.
    """
    stopped = _reap_processes()
    for module in ("autotune.launchers.docker", "autotune.launchers.ome"):
        if not any(registry_dir().glob(f"{'container' if 'docker' in module else 'isvc'}-*.json")):
            continue  # nothing of that kind recorded: don't import its client library
        try:
            mod = __import__(module, fromlist=["reap"])
            stopped += [{"kind": module, "name": n} for n in mod.reap()]
        except Exception as e:  # an unreachable daemon/cluster must not block a study
            log.warning("could not check %s leftovers: %s", module, e)
    return stopped


def _reap_processes() -> list[dict]:
    stopped = []
    for path in sorted(registry_dir().glob("process-*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _owner_alive(entry):
            continue  # another tuner on this machine is using it
        pid = entry["pid"]
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
