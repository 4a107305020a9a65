"""Fixtures for the web console's tests: the app on a throw-away tracking store."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from autotune.web.app import create_app
from autotune.web.service import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        start_dir=tmp_path,
        state_dir=tmp_path / ".autotune-web",
        experiments_dir=tmp_path / "experiments",
        refresh_s=0.5,
    )


@pytest.fixture
def client(settings: Settings) -> TestClient:
    with TestClient(create_app(settings)) as c:
        yield c
