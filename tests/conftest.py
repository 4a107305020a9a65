"""Shared fixtures: composing the real conf/ with Hydra, isolated state directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from autotune.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Keep the engine registry of tests away from the user's ~/.cache."""
    monkeypatch.setenv("AUTOTUNE_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides) -> the study config exactly as `python -m autotune` sees it."""
    register_configs()

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF)):
            return compose("config", overrides=list(overrides), return_hydra_config=True)

    yield _compose
    GlobalHydra.instance().clear()
