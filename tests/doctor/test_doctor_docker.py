"""Docker checks against a real Docker engine (started by the session if none answers,
as tests/launchers does). Only a GPU host's ``docker info`` is a recorded fixture:
this machine has no NVIDIA runtime to find."""

from __future__ import annotations

import json
import time

import pytest
from doctor_support import FIXTURES

from autotune.doctor import Status
from autotune.doctor.docker import docker_checks, model_mount, nvidia_runtime, shm_ipc

PRESENT = "local/doctor-present:1"


def by_name(checks):
    return {c.name: c for c in checks}


def test_no_daemon_answers(study_cfg, monkeypatch, tmp_path):
    """Real: the SDK finds no daemon at DOCKER_HOST."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    (check,) = docker_checks(study_cfg("deploy=docker"))
    assert check.status is Status.FAIL
    assert check.verdict.startswith(f"no Docker engine answers at unix://{tmp_path}/docker.sock")
    assert "start dockerd" in check.fix


@pytest.mark.docker
def test_image_present_on_the_daemon(study_cfg, docker_client, hostshim):
    docker_client.images.get(hostshim).tag(PRESENT)
    checks = by_name(
        docker_checks(
            study_cfg("deploy=docker", f"deploy.image={PRESENT}", "deploy.use_gpus=false"),
            docker_client,
        )
    )
    assert checks["docker daemon"].status is Status.OK
    assert checks["image"].status is Status.OK and checks["image"].verdict == f"{PRESENT} present"
    assert "NVIDIA runtime" not in checks  # use_gpus=false asks for no device


@pytest.mark.docker
def test_daemon_without_nvidia_runtime(study_cfg, docker_client):
    checks = by_name(docker_checks(study_cfg("deploy=docker"), docker_client))
    check = checks["NVIDIA runtime"]
    assert (
        check.status is Status.FAIL
        and "the daemon has no NVIDIA runtime (runtimes: " in check.verdict
    )
    assert "nvidia-ctk runtime configure" in check.fix


def test_gpu_host_docker_info_has_the_runtime():
    info = json.loads((FIXTURES / "docker-info-gpu-host.json").read_text())
    check = nvidia_runtime(info)
    assert (
        check.status is Status.OK
        and check.verdict == "runtimes io.containerd.runc.v2, nvidia, runc"
    )


@pytest.mark.docker
def test_image_missing_without_pull(study_cfg, docker_client):
    checks = by_name(
        docker_checks(study_cfg("deploy=docker", "deploy.use_gpus=false"), docker_client)
    )
    check = checks["image"]
    image = "lmsysorg/sglang:v0.5.5.post3-cu129-amd64"
    assert check.status is Status.FAIL and check.verdict == f"{image} is not on this Docker host"
    assert check.fix == f"docker pull {image}, or set deploy.pull=true"


@pytest.mark.docker
def test_image_missing_and_registry_unreachable(study_cfg, docker_client):
    """Real: the daemon asks the registry (through its own proxy settings); none answers here."""
    cfg = study_cfg(
        "deploy=docker",
        "deploy.use_gpus=false",
        "deploy.pull=true",
        "deploy.image=registry.invalid/none/engine:1",
    )
    started = time.monotonic()
    check = by_name(docker_checks(cfg, docker_client))["image"]
    assert time.monotonic() - started < 30
    assert check.status is Status.FAIL
    assert check.verdict.startswith(
        "registry.invalid/none/engine:1 is not local and its registry does not answer the daemon"
    )


def test_shm_and_ipc(study_cfg):
    assert shm_ipc(study_cfg("deploy=docker")).status is Status.OK  # ipc_mode=host
    small = shm_ipc(study_cfg("deploy=docker", "deploy.ipc_mode=private", "deploy.shm_size=64m"))
    assert small.status is Status.WARN and "deploy.shm_size=32g" in small.fix
    assert (
        shm_ipc(study_cfg("deploy=docker", "deploy.ipc_mode=private", "deploy.shm_size=32g")).status
        is Status.OK
    )


def test_local_model_must_be_mounted(study_cfg, tmp_path):
    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg = study_cfg("deploy=docker", "model.path=/models/llama")
    unmounted = model_mount(cfg)
    assert unmounted.status is Status.FAIL
    assert unmounted.verdict == "/models/llama is not inside any deploy.volumes mount"
    cfg.deploy.volumes = {str(tmp_path): "/models:ro"}
    mounted = model_mount(cfg)
    assert mounted.status is Status.OK and mounted.verdict == f"{model} readable"
    cfg.model.path = "/models/other"
    empty = model_mount(cfg)
    assert empty.status is Status.FAIL and empty.verdict == f"{tmp_path}/other is not a directory"
