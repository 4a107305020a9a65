"""At study start: a blocking problem stops ``python -m autotune`` before anything is
deployed, with the doctor's message (one study per deploy target, each problem real on
this machine); a passing preflight is recorded on the sweep run."""

from __future__ import annotations

import json
import sys
import time

import pytest
from doctor_support import SIM_CHECKS, SIM_TOKENIZER
from study_runner import SMALL, artifact_paths, artifact_text, run_study, runs, study_env

BLOCKED = "Preflight found a blocking problem:"
# Real deploy targets need a local tokenizer to pass validation; the study is blocked
# by the preflight, not by bad input.
REAL = [f"model.tokenizer={SIM_TOKENIZER}", "search=none"]


def said(study, text: str) -> bool:
    """``text`` is in the output, however the terminal wrapped it."""
    return "".join(text.split()) in "".join(study.output.split())


def blocked(tmp_path, *args, env=None, tracking_uri=None):
    started = time.monotonic()
    study = run_study(tmp_path, *args, env=env, timeout=120, tracking_uri=tracking_uri)
    elapsed = time.monotonic() - started
    assert study.returncode == 1, study.output[-3000:]
    assert BLOCKED in study.output and "Nothing was deployed." in study.output
    # The bound: the tuner's start-up, composition and the checks, all in 10 s.
    assert elapsed <= 10, f"the study took {elapsed:.1f} s to stop"
    sweeps, trials = runs(tmp_path)
    assert sweeps.empty and trials.empty  # no sweep run: the study never started
    assert not list(tmp_path.glob("multirun/*/*/*/engine.log"))
    assert not list((tmp_path / "state" / "running").glob("*.json"))
    study.assert_nothing_left()
    return study


@pytest.mark.slow
def test_sim_study_stops_on_a_tokenizer_that_does_not_load(tmp_path):
    tok = tmp_path / "tokenizer"
    tok.mkdir()  # a directory (validation is content), but no tokenizer files in it
    study = blocked(tmp_path, *SMALL, f"model.tokenizer={tok}")
    assert said(study, f"tokenizer: {tok} has no tokenizer.json, tokenizer.model or vocab.json")
    assert not study.processes("autotune.sim.server")


@pytest.mark.slow
def test_local_study_stops_when_the_engine_is_not_installed(tmp_path):
    study = blocked(tmp_path, "deploy=local", f"deploy.python={sys.executable}", *REAL)
    engine = f"{sys.executable} -m sglang.launch_server"
    assert said(study, f"engine command: `{engine}`: no module named 'sglang'")
    assert not study.processes("-m sglang.launch_server")  # only the doctor's probe ran


@pytest.mark.slow
def test_docker_study_stops_when_no_daemon_answers(tmp_path):
    sock = f"unix://{tmp_path}/docker.sock"
    study = blocked(tmp_path, "deploy=docker", *REAL, env=study_env(tmp_path, DOCKER_HOST=sock))
    assert said(study, f"docker daemon: no Docker engine answers at {sock}")


@pytest.mark.slow
def test_ome_study_stops_without_a_kube_context(tmp_path):
    env = study_env(tmp_path, KUBECONFIG=str(tmp_path / "no-kubeconfig"))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    study = blocked(tmp_path, "deploy=ome", *REAL, env=env)
    assert said(study, "kube context: no Kubernetes context (current)")
    assert not study.processes("kubectl")


@pytest.mark.slow
def test_preflight_false_skips_the_checks(tmp_path):
    tok = tmp_path / "tokenizer"
    tok.mkdir()  # the virtual clock never loads it: only the preflight would object
    args = (*SMALL, "deploy.clock=virtual", "params.mem=0.8", f"model.tokenizer={tok}")
    study = run_study(tmp_path, *args, "preflight=false", timeout=300)
    assert study.returncode == 0, study.output[-3000:]
    assert BLOCKED not in study.output
    (run_id,) = runs(tmp_path)[0]["run_id"]
    assert "preflight.json" not in artifact_paths(tmp_path, run_id)


@pytest.mark.slow
def test_passing_preflight_is_recorded_on_the_sweep_run(tmp_path):
    study = run_study(tmp_path, *SMALL, "deploy.clock=virtual", "params.mem=0.8", timeout=300)
    assert study.returncode == 0, study.output[-3000:]
    sweeps, trials = runs(tmp_path)
    (run_id,) = sweeps["run_id"]
    report = json.loads(artifact_text(tmp_path, run_id, "preflight.json"))
    assert report["ok"] is True and report["target"] == "sim"
    names = [c["name"] for c in report["checks"]]
    # The study checks its tracking store itself (own messages, exit 2).
    assert names == [n for n in SIM_CHECKS if n != "tracking store"]
    assert report["checks"][0]["verdict"].startswith("not used: deploy.clock=virtual")
    assert len(trials) == 1
