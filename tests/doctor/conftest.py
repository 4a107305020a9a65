"""Fixtures of the doctor's tests: a composed study config, the Kubernetes API MOCK of
tests/launchers/kube_mock.py, and the real Docker engine of tests/launchers/conftest.py."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from doctor_support import LAUNCHER_TESTS, SIM_TOKENIZER

sys.path.insert(0, str(LAUNCHER_TESTS))  # kube_mock (no package)

# The session's real dockerd: the same fixture the launcher tests use (a second
# definition here finds the daemon the first one started, or starts it).
_spec = importlib.util.spec_from_file_location("_launcher_conftest", LAUNCHER_TESTS / "conftest.py")
_launcher_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_launcher_conftest)
docker_client = _launcher_conftest.docker_client
hostshim = _launcher_conftest.hostshim


@pytest.fixture
def study_cfg():
    """study_cfg(*overrides): the config the doctor composes for ``python -m autotune
    doctor <overrides>`` (a multirun, so sweep lists work), with a local tokenizer."""
    from autotune.doctor.cli import compose_study

    def _make(*overrides: str):
        return compose_study([f"model.tokenizer={SIM_TOKENIZER}", *overrides])

    return _make
