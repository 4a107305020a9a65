"""Studies the console started: each its own ``python -m autotune`` process.

A launch runs the CLI with the study's overrides as argv (never a shell) in its own
session, so the browser or the console can go away and the study runs on; stopping
it is Ctrl-C's path (SIGINT to its process group), then SIGTERM and SIGKILL only if
it has not ended within a grace period. Each launch is recorded as a small JSON
file in the console's state directory, so a restarted console finds its studies
again (their MLflow parent runs carry ``autotune.owner = <pid>@<host>``).

    launches = Launches(state_dir, start_dir)
    launch = launches.start(["deploy.clock=virtual"])   # -> Launch(id="l-…", pid=…)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets as _random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

# Seconds a stopping study gets after SIGINT (its trial's teardown) before SIGTERM,
# and after SIGTERM before SIGKILL.
STOP_GRACE_S = (60.0, 15.0)


@dataclass
class Launch:
    id: str
    argv: list[str]
    cwd: str
    pid: int
    create_time: float  # the process's start (clock ticks since boot): tells a reused PID
    started: float
    output: str
    host: str = field(default_factory=socket.gethostname)
    stop_requested: float | None = None

    @property
    def owner(self) -> str:
        return f"{self.pid}@{self.host}"

    @property
    def command(self) -> str:
        return " ".join(self.argv)

    def process(self) -> psutil.Process | None:
        """The launch's process if it still runs (a reused PID is not it)."""
        if self.host != socket.gethostname():
            return None
        try:
            proc = psutil.Process(self.pid)
            if start_ticks(self.pid) != self.create_time:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                proc.wait(timeout=0)  # our own child: reap it
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.TimeoutExpired, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def output_tail(self, limit: int = 4000) -> str:
        try:
            with open(self.output, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Launches:
    """Start, find and stop the console's study processes."""

    def __init__(self, state_dir: Path, start_dir: Path, python: str = sys.executable) -> None:
        self.dir = Path(state_dir) / "launches"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start_dir = Path(start_dir)
        self.python = python
        self._lock = threading.Lock()

    def command(self, args: list[str]) -> list[str]:
        return [self.python, "-m", "autotune", *args]

    def start(self, args: list[str], env: dict[str, str] | None = None) -> Launch:
        """Start ``python -m autotune *args`` in its own session; returns its record."""
        launch_id = "l-" + _random.token_hex(6)
        output = self.dir / f"{launch_id}.out"
        argv = self.command(list(args))
        with open(output, "wb") as out:
            proc = subprocess.Popen(  # argv, never a shell
                argv,
                cwd=self.start_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
        launch = Launch(
            id=launch_id,
            argv=argv,
            cwd=str(self.start_dir),
            pid=proc.pid,
            create_time=start_ticks(proc.pid),
            started=time.time(),
            output=str(output),
        )
        self._save(launch)
        log.info("launched %s (pid %d): %s", launch_id, proc.pid, launch.command)
        return launch

    def _save(self, launch: Launch) -> None:
        path = self.dir / f"{launch.id}.json"
        tmp = path.with_suffix(".tmp")
        # The argv may hold a secret given on the command line: owner-only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(launch)))
        tmp.replace(path)

    def get(self, launch_id: str) -> Launch | None:
        if not launch_id.startswith("l-") or not launch_id[2:].isalnum():
            return None
        try:
            return Launch(**json.loads((self.dir / f"{launch_id}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def all(self) -> list[Launch]:
        found = []
        for path in sorted(self.dir.glob("l-*.json")):
            launch = self.get(path.stem)
            if launch is not None:
                found.append(launch)
        return found

    def by_owner(self, owner: str) -> Launch | None:
        return next((launch for launch in self.all() if launch.owner == owner), None)

    def stop(self, launch: Launch) -> bool:
        """Ctrl-C's path: SIGINT to the study's process group, escalating in the
        background if it does not end. False when it was not running."""
        proc = launch.process()
        if proc is None:
            return False
        launch.stop_requested = time.time()
        self._save(launch)
        _signal_group(launch.pid, signal.SIGINT)
        threading.Thread(target=self._escalate, args=(launch,), daemon=True).start()
        return True

    def _escalate(self, launch: Launch) -> None:
        for grace, sig in zip(STOP_GRACE_S, (signal.SIGTERM, signal.SIGKILL), strict=True):
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not launch.alive():
                    return
                time.sleep(0.5)
            log.warning("study %s still running: sending %s", launch.id, sig.name)
            _signal_group(launch.pid, sig)


def start_ticks(pid: int) -> float:
    """When ``pid`` started, in clock ticks since boot (/proc/<pid>/stat field 22).

    psutil's create_time() adds the boot time, which moves when the wall clock is
    adjusted (seen here: 2 s apart for the same process); the tick count does not.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return float(stat.rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        try:
            return round(psutil.Process(pid).create_time())
        except psutil.Error:
            return -1.0


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)  # the launch is its own session: pgid == its pid
