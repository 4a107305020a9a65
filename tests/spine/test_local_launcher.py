"""The process launcher and readiness, on the real simulated engine process."""

from __future__ import annotations

import json
import os

import httpx
import psutil
import pytest

from autotune.deploy import Failure, LaunchSpec, TrialFailure, create_launcher, leftovers
from autotune.deploy.readiness import wait_ready
from autotune.params import normalize


def spec_for(cfg, tmp_path, **params) -> LaunchSpec:
    return LaunchSpec(
        trial_name="test",
        runtime=cfg.runtime,
        model=cfg.model,
        params=normalize(params, cfg.runtime.flags, cfg.runtime.aliases),
        workdir=tmp_path,
    )


def ready(launcher, endpoint, cfg, timeout=60):
    return wait_ready(
        launcher,
        endpoint,
        health_path=cfg.runtime.health_path,
        ready_pattern=cfg.runtime.ready_log_pattern,
        failure_patterns=cfg.runtime.failure_patterns,
        timeout_s=timeout,
    )


def test_command_is_argv_with_native_flags(compose_cfg, tmp_path):
    cfg = compose_cfg("deploy=local", "model.tokenizer=/tmp")
    launcher = create_launcher(cfg.deploy)
    argv = launcher.command(spec_for(cfg, tmp_path, mem=0.8, **{"enable-mixed-chunk": True}), 31000)
    assert argv[1:3] == ["-m", "sglang.launch_server"]
    assert argv[3:5] == ["--model-path", "meta-llama/Llama-3.1-8B-Instruct"]
    assert argv[7:11] == ["--host", "127.0.0.1", "--port", "31000"]
    assert argv[-3:] == ["--mem-fraction-static", "0.8", "--enable-mixed-chunk"]


def test_secrets_are_masked_in_the_rendered_command(compose_cfg, tmp_path, monkeypatch):
    cfg = compose_cfg("deploy=local", "+deploy.env.HF_TOKEN=hf_canary_secret_1")
    launcher = create_launcher(cfg.deploy)
    text = launcher.render(spec_for(cfg, tmp_path))["command.sh"]
    assert "hf_canary_secret_1" not in text and "HF_TOKEN='***'" in text


@pytest.mark.slow
def test_sim_engine_starts_serves_and_stops_with_its_whole_group(compose_cfg, tmp_path):
    cfg = compose_cfg()
    launcher = create_launcher(cfg.deploy)
    endpoint = launcher.start(spec_for(cfg, tmp_path, mem=0.8))
    pid = endpoint.info["pid"]
    try:
        assert (leftovers.registry_dir() / f"process-{pid}.json").exists()
        ready(launcher, endpoint, cfg)
        info = httpx.get(endpoint.base_url + "/get_server_info", timeout=5).json()
        assert float(info["mem_fraction_static"]) == 0.8
        group = [p for p in psutil.process_iter() if _pgid(p.pid) == pid]
    finally:
        launcher.stop(endpoint)
    assert launcher.poll(endpoint) is not None
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in group)
    assert not (leftovers.registry_dir() / f"process-{pid}.json").exists()
    assert "ready to roll" in endpoint.log_path.read_text()


@pytest.mark.slow
def test_startup_failure_is_classified_from_the_log(compose_cfg, tmp_path):
    cfg = compose_cfg()
    launcher = create_launcher(cfg.deploy)
    endpoint = launcher.start(spec_for(cfg, tmp_path, mem=0.05))
    try:
        with pytest.raises(TrialFailure) as e:
            ready(launcher, endpoint, cfg)
    finally:
        launcher.stop(endpoint)
    assert e.value.failure == Failure.OOM
    assert "Not enough memory" in str(e.value)


@pytest.mark.slow
def test_engine_that_never_gets_ready_times_out(compose_cfg, tmp_path):
    cfg = compose_cfg("deploy.faults=[hang-start]")
    launcher = create_launcher(cfg.deploy)
    endpoint = launcher.start(spec_for(cfg, tmp_path))
    try:
        with pytest.raises(TrialFailure) as e:
            ready(launcher, endpoint, cfg, timeout=4)
    finally:
        launcher.stop(endpoint)
    assert e.value.failure == Failure.STARTUP_TIMEOUT


def test_reap_stops_engines_of_a_dead_tuner(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    leftovers.record_process(proc.pid, "orphan")
    entry = leftovers.registry_dir() / f"process-{proc.pid}.json"
    data = json.loads(entry.read_text())
    data["owner"] = f"{2**22 + 4321}@{os.uname().nodename}"  # a tuner that no longer exists
    entry.write_text(json.dumps(data))
    stopped = leftovers.reap()
    assert [s["pid"] for s in stopped] == [proc.pid]
    assert proc.wait(timeout=5) == -9
    assert not entry.exists()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
