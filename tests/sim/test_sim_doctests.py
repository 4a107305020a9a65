"""The usage examples in the simulator's docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = [
    "autotune.sim.perf",
    "autotune.sim.settings",
    "autotune.sim.scheduler",
    "autotune.sim.replay",
    "autotune.sim.predict",
    "autotune.sim.validate",
    "autotune.sim.server_args",
    "autotune.sim.prompt_tokens",
    "autotune.sim.http_api",
    "autotune.sim.versions",
    "autotune.sim.prefix",
    "autotune.sim.frontend",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # examples use repo paths
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
