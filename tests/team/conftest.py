"""Team tests: a real PostgreSQL and a real ``mlflow server``, started once per session.

Skipped, with the reason, when PostgreSQL (``apt-get install postgresql``) or its
Python driver is not installed; ``.ci/run`` installs both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from team_servers import MlflowServer, Postgres, Unavailable


@dataclass
class TeamServers:
    pg: Postgres
    mlflow_url: str
    storage: str  # Optuna storage URL, with the password


@pytest.fixture(scope="session")
def team_servers(tmp_path_factory):
    try:
        with Postgres.start() as pg:
            pg.create_database("mlflow")
            pg.create_database("optuna")
            workdir = tmp_path_factory.mktemp("mlflow-server")
            with MlflowServer.start(pg.url("mlflow"), workdir) as server:
                yield TeamServers(pg=pg, mlflow_url=server.url, storage=pg.url("optuna"))
    except Unavailable as e:
        pytest.skip(str(e))


@dataclass
class Study:
    """One shared study: its name, experiment and the command line of a worker."""

    servers: TeamServers
    root: Path
    name: str
    experiment: str
    overrides: tuple[str, ...]

    def command(self, worker: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "autotune",
            *self.overrides,
            f"search.storage={self.servers.storage}",
            f"tracking.uri={self.servers.mlflow_url}",
            f"tracking.experiment={self.experiment}",
            f"study.name={self.name}",
            f"search.worker={worker}",
            f"hydra.sweep.dir={self.root}/multirun/{worker}",
        ]

    def start(self, worker: str, log_name: str | None = None) -> subprocess.Popen:
        log = open(self.root / f"{log_name or worker}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "AUTOTUNE_STATE_DIR": str(self.root / "state")}
        env.pop("MLFLOW_TRACKING_URI", None)
        return subprocess.Popen(
            self.command(worker),
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


def wait_ok(proc: subprocess.Popen, study: Study, name: str, timeout: float = 600) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    assert rc == 0, study.log(name)[-4000:]


@pytest.fixture
def new_study(team_servers, tmp_path):
    def make(*overrides: str) -> Study:
        tag = uuid.uuid4().hex[:8]
        return Study(
            servers=team_servers,
            root=tmp_path,
            name=f"team-{tag}",
            experiment=f"team-{tag}",
            overrides=overrides,
        )

    return make
