"""Engine checks, for real: the simulator's own profile lookup, engine commands resolved
in real interpreters, model directories on disk."""

from __future__ import annotations

import shutil
import sys

from autotune.doctor import Status
from autotune.doctor.engine import engine_command, model_files, sim_profile
from autotune.doctor.run import checks_for


def test_sim_profile_for_every_tp_of_the_sweep(study_cfg):
    check = sim_profile(study_cfg("params.tp-size=1,2,8", "model=qwen3-8b", "model.dtype=fp8"))
    assert check.status is Status.OK
    assert check.verdict == "qwen3-8b on h200_sxm (fp8), tp-size 1, 2, 8"


def test_sim_profile_missing(study_cfg):
    # validate_study would refuse tp-size=3 first; the doctor says the same in its words.
    check = sim_profile(study_cfg("params.tp-size=3"))
    assert check.status is Status.FAIL
    assert check.verdict == (
        "no simulated profile for llama-3.1-8b on h200_sxm (bf16) with tp-size 3; "
        "available tp-size: [1, 2, 4, 8]"
    )


def test_sim_profile_unknown_gpu(study_cfg):
    check = sim_profile(study_cfg("deploy.gpu=b200"))
    assert check.status is Status.FAIL and check.verdict.startswith("unknown simulated GPU 'b200'")


def test_engine_module_found_in_its_interpreter(study_cfg):
    cfg = study_cfg(
        "deploy=local",
        f"deploy.python={sys.executable}",
        "runtime.launch=[python3,-m,autotune.sim.server]",
    )
    check = engine_command(cfg)
    assert check.status is Status.OK and check.verdict == f"{sys.executable} -m autotune.sim.server"


def test_engine_module_missing_from_its_interpreter(study_cfg):
    check = engine_command(study_cfg("deploy=local", f"deploy.python={sys.executable}"))
    assert check.status is Status.FAIL  # SGLang is not installed here
    assert check.verdict == f"`{sys.executable} -m sglang.launch_server`: no module named 'sglang'"
    assert check.fix.startswith(f"install sglang into {sys.executable}")


def test_engine_module_found_in_another_interpreter(study_cfg):
    """Real: the probe runs as a child of a bare system Python (no autotune there)."""
    bare = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    cfg = study_cfg("deploy=local", f"deploy.python={bare}", "runtime.launch=[python,-m,json.tool]")
    check = engine_command(cfg)
    assert check.status is Status.OK and check.verdict == f"{bare} -m json.tool"
    cfg = study_cfg("deploy=local", f"deploy.python={bare}", "runtime.launch=[python,-m,json.nope]")
    assert engine_command(cfg).verdict == f"`{bare} -m json.nope`: json has no module 'nope'"


def test_engine_submodule_missing(study_cfg):
    cfg = study_cfg("deploy=local", "runtime.launch=[python,-m,autotune.no_such_server]")
    check = engine_command(cfg)
    assert (
        check.status is Status.FAIL and "autotune has no module 'no_such_server'" in check.verdict
    )


def test_engine_interpreter_missing(study_cfg):
    check = engine_command(study_cfg("deploy=local", "deploy.python=/nonexistent/python"))
    assert check.status is Status.FAIL and check.verdict.startswith(
        "cannot run /nonexistent/python"
    )


def test_engine_executable_on_path(study_cfg):
    ok = engine_command(study_cfg("deploy=local", "runtime.launch=[sh,-c,exit]"))
    assert ok.status is Status.OK and ok.verdict == f"{shutil.which('sh')} -c exit"
    bad = engine_command(study_cfg("deploy=local", "runtime.launch=[no-such-engine-binary]"))
    assert bad.status is Status.FAIL and bad.verdict == "no-such-engine-binary is not on PATH"


def test_model_path(study_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = model_files(study_cfg("deploy=local"))
    assert hub.status is Status.OK and "hub id" in hub.verdict
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model_files(study_cfg("deploy=local")).status is Status.FAIL
    model = tmp_path / "model"
    model.mkdir()
    cfg = study_cfg("deploy=local", f"model.path={model}")
    assert model_files(cfg).verdict == f"{model} has no readable config.json"
    (model / "config.json").write_text("{}")
    assert model_files(cfg).status is Status.OK
    gone = model_files(study_cfg("deploy=local", f"model.path={tmp_path}/gone"))
    assert gone.status is Status.FAIL and gone.verdict == f"{tmp_path}/gone is not a directory"


def test_each_target_brings_its_checks_through_its_launcher(study_cfg):
    """The doctor asks the launcher class (Launcher.preflight_checks), not a list."""
    counts = {
        t: len(checks_for(study_cfg(f"deploy={t}")))
        for t in ("sim", "local", "docker", "docker_sim", "ome")
    }
    common = 5
    assert counts == {
        "sim": common + 1,
        "local": common + 3,
        "docker": common + 2,
        "docker_sim": common + 2,
        "ome": common + 1,
    }
