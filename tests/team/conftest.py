"""Team tests: a real PostgreSQL and a real ``mlflow server``, started once per session.

Skipped, with the reason, when PostgreSQL (``apt-get install postgresql``) or its
Python driver is not installed; ``.ci/run`` installs both.
"""

from __future__ import annotations

import uuid

import pytest
from team_servers import MlflowServer, Postgres, Study, TeamServers, Unavailable


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
