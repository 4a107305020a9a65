"""A real (virtual-clock) study end to end: export and figures on the sweep run, the
exported params.yaml reproduces the best trial's metrics, the report prints the gain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_study_export_reproduce_report(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study_args = [
        "deploy.clock=virtual",
        "deploy.noise=0",
        "search.confirm.enabled=false",
        "params.mem=0.7,0.9",
        "search.baseline=true",
    ]
    out = run(tmp_path, "-m", "autotune", *study_args, f"tracking.uri={uri}").stdout
    assert "Best configuration exported" in out

    client = MlflowClient(tracking_uri=uri)
    (parent,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`autotune.role` = 'sweep'",
    )
    pid = parent.info.run_id
    arts = {a.path for a in client.list_artifacts(pid, "best")}
    assert {"best/launch.sh", "best/params.yaml", "best/inferenceservice.yaml"} <= arts
    figs = {a.path for a in client.list_artifacts(pid, "figures")}
    assert {"figures/history.png", "figures/pareto.png"} <= figs

    from autotune.report import best_trial, load_study

    study = load_study(client, pid)
    best = best_trial(study)
    sweep = Path(parent.data.tags["autotune.sweep_dir"])
    launch = (sweep / "best" / "launch.sh").read_text()
    for flag, value in best.flags.items():
        assert f"--{flag} {value}" in launch
    assert (sweep / "figures" / "history.png").is_file()

    # Re-running params.yaml reproduces the trial (the virtual clock is deterministic).
    doc = yaml.safe_load((sweep / "best" / "params.yaml").read_text())
    assert {k: str(v) for k, v in doc["params"].items()} == best.flags
    repro_uri = f"sqlite:///{tmp_path / 'repro.db'}"
    run(
        tmp_path,
        "-m",
        "autotune",
        "--config-dir",
        str(sweep / "best"),
        "--config-name",
        "params",
        f"tracking.uri={repro_uri}",
    )
    repro = MlflowClient(tracking_uri=repro_uri)
    (again,) = repro.search_runs(
        [e.experiment_id for e in repro.search_experiments()],
        filter_string="tags.`autotune.role` = 'trial'",
    )
    assert again.data.params == client.get_run(best.run_id).data.params
    original = {k: v for k, v in best.metrics.items() if k != "startup_s"}
    repeated = {k: v for k, v in again.data.metrics.items() if k != "startup_s"}
    assert repeated == pytest.approx(original, rel=1e-9)

    report = run(tmp_path, "-m", "autotune.report", f"tracking.uri={uri}").stdout
    assert "Gain over the baseline trial-000-baseline" in report
    assert "SIMULATED" in report
