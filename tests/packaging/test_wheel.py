"""The built wheel, installed (not editable) into a fresh virtualenv, runs a study from a
directory outside the repository: configs from the package (pkg://autotune.conf), the
deploy targets under autotune.launchers, nothing read from the source tree.

The wheel goes in with ``--no-deps``; its dependencies come from the test environment's
site-packages, listed in a ``.pth`` file (whose own ``.pth`` files, the editable
install's import hook among them, are not processed). A full install of every
dependency takes minutes on a 2-core machine; ../shared/checks/wheel.sh does that one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
        cwd=work,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("autotune-*.whl")
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True
    ).stdout
    # Self-contained, and no generic top-level package names.
    assert "autotune/conf/config.yaml" in names and "autotune/launchers/sim.py" in names
    assert "autotune/benchmark/datasets/chat.jsonl" in names  # benchmark=dataset's default
    assert not any(line.startswith(("launchers/", "conf/")) for line in names.splitlines())
    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=work).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=work,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    (site / "test-dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    return python


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["runtime=vllm", "search=tpe", "dry_run=true"],
        ["+experiment=sglang-slo-search", "objective.slo.ttft_p99_ms=500", "dry_run=true"],
        # benchmark=dataset: its default prompt file is package data.
        ["deploy.clock=virtual", "hydra.mode=RUN", "params.mem=0.8", "benchmark=dataset"],
    ],
    ids=["vllm-tpe-dry-run", "experiment-slo-dry-run", "virtual-trial"],
)
def test_installed_wheel_runs_outside_the_repository(wheel_python, tmp_path, args):
    proc = _run(
        [str(wheel_python), "-m", "autotune", *args, f"tracking.uri=sqlite:///{tmp_path}/m.db"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # Loaded from the installed package, not from this checkout.
    where = _run(
        [str(wheel_python), "-c", "import autotune.launchers.sim as m, autotune; print(m.__file__)"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout
    if "hydra.mode=RUN" in args:
        assert "ok" in proc.stdout + proc.stderr
