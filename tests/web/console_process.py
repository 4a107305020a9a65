"""A real console process (``python -m autotune.web``) on a free loopback port, for the
browser tests; and stopping the studies a test's console started, by their PIDs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConsoleProcess:
    """``python -m autotune.web`` started by a test, stopped by its PID."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
            # The studies' engine registry: this test's own, not the user's ~/.cache.
            "AUTOTUNE_STATE_DIR": str(workdir / "state"),
        }
        self.log = open(workdir / "console.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autotune.web",
                "--port",
                str(self.port),
                "--refresh",
                "1",
                *args,
            ],
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/studies", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the console did not start: {(workdir / 'console.log').read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def stop_launches(state_dir: Path) -> None:
    """Stop, by their recorded PIDs, any study a test's console left running."""
    from autotune.web.launches import Launches

    for launch in Launches(state_dir, state_dir).all():
        if launch.alive():
            os.killpg(launch.pid, signal.SIGKILL)
