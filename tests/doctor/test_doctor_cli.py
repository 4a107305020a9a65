"""``python -m autotune doctor``: the table, --json, exit codes 0 / 1 / 2; and the
runner's handling of a check that crashes or hangs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from doctor_support import SIM_CHECKS, SIM_TOKENIZER
from study_runner import study_env

from autotune.doctor import Check, Status
from autotune.doctor import run as doctor_run


def doctor(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autotune", "doctor", *args],
        cwd=tmp_path,
        env=study_env(tmp_path, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_default_study_is_ready(tmp_path):
    proc = doctor(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "autotune doctor: deploy=sim" in proc.stdout
    assert "Ready to tune" in proc.stdout
    for name in SIM_CHECKS:
        assert name in proc.stdout


def test_json_and_a_blocking_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = doctor(tmp_path, "--json", f"tracking.uri=sqlite:///{tmp_path}/file/mlflow.db")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["target"] == "sim"
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["tracking store"]
    assert failed[0]["fix"].startswith("fix tracking.uri=")


def test_bad_input_exits_2(tmp_path):
    for args in (["deploy=nope"], ["deploy.gpux=1"], ["--bogus"], ["params.tp-size=3"]):
        proc = doctor(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Invalid study configuration:" in proc.stderr


def test_sweep_overrides_are_checked_per_value(tmp_path):
    proc = doctor(tmp_path, "--json", "-m", "params.tp-size=1,2", "params.mem=0.7,0.8")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["simulator profile"]["verdict"].endswith("tp-size 1, 2")
    assert checks["GPU count"]["verdict"] == "2 simulated h200_sxm per trial"


def test_real_target_reports_every_problem(tmp_path):
    proc = doctor(tmp_path, "--json", "deploy=local", f"model.tokenizer={SIM_TOKENIZER}")
    assert proc.returncode == 1
    failed = {c["name"] for c in json.loads(proc.stdout)["checks"] if c["status"] == "fail"}
    assert failed == {"GPUs", "engine command"}  # no GPU, no SGLang on this machine


def test_a_crashing_check_fails_alone(study_cfg, monkeypatch):
    def boom():
        raise KeyError("x")

    monkeypatch.setattr(
        doctor_run, "checks_for", lambda *_: [boom, lambda: Check.ok("fine", "yes")]
    )
    report = doctor_run.run_checks(study_cfg())
    assert [(c.name, c.status) for c in report.checks] == [
        ("preflight", Status.FAIL),
        ("fine", Status.OK),
    ]
    assert report.checks[0].verdict == "a check crashed: KeyError: 'x'"


def test_a_hanging_check_is_cut_at_the_budget(study_cfg, monkeypatch):
    monkeypatch.setattr(
        doctor_run, "checks_for", lambda *_: [lambda: time.sleep(3), lambda: [Check.ok("a", "b")]]
    )
    started = time.monotonic()
    report = doctor_run.run_checks(study_cfg(), budget_s=0.5)
    assert time.monotonic() - started < 2
    assert (
        report.checks[0].verdict == "a check did not answer within 0 s"
        or "did not answer" in report.checks[0].verdict
    )
    assert not report.ok and report.checks[1].name == "a"


def test_no_secret_in_a_verdict(study_cfg, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_doctor_secret_value")
    leak = Check.fail("x", "token hf_doctor_secret_value rejected", "not hf_doctor_secret_value")
    monkeypatch.setattr(doctor_run, "checks_for", lambda *_: [lambda: leak])
    (check,) = doctor_run.run_checks(study_cfg()).checks
    assert check.verdict == "token *** rejected" and check.fix == "not ***"
