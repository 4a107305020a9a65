"""A real Docker engine for the docker launcher's tests (``@pytest.mark.docker``).

If no daemon answers, the session starts one (Debian's ``docker.io``) the way
docs/deploy.md describes for test machines: no bridge, no iptables, so containers
use the host network and traffic stays on loopback. It is stopped by its PID at the
end of the session and its run-time leftovers are removed. Tests are skipped, with
the reason, only when dockerd is missing or cannot start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import pytest

DOCKERD_ARGS = ["--bridge=none", "--iptables=false", "--ip-forward=false"]


def _answers(docker_mod) -> object | None:
    try:
        client = docker_mod.from_env(timeout=10)
        client.ping()
        return client
    except Exception:
        return None


def _start_dockerd(log_path, extra: list[str]) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - inherited by dockerd, closed with the session
    return subprocess.Popen(
        ["dockerd", *DOCKERD_ARGS, *extra],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop_dockerd(proc: subprocess.Popen) -> None:
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # What dockerd leaves behind even with the flags above.
    subprocess.run(["umount", "/run/docker/netns/default"], capture_output=True, check=False)
    shutil.rmtree("/run/docker", ignore_errors=True)
    for pidfile in ("/var/run/docker.pid", "/run/docker.pid"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pidfile)


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory):
    """A Docker SDK client to a running daemon (started here if none answers)."""
    docker = pytest.importorskip("docker", reason="the docker SDK is not installed")
    client = _answers(docker)
    if client is not None:
        yield client
        client.close()
        return
    if shutil.which("dockerd") is None:
        pytest.skip(
            "no Docker daemon answers and dockerd is not installed "
            "(apt-get install -y --no-install-recommends docker.io)"
        )
    if os.geteuid() != 0:
        pytest.skip("no Docker daemon answers and starting dockerd needs root")
    log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    proc = None
    for extra in ([], ["--storage-driver=vfs"]):  # vfs where overlay2 is unavailable
        proc = _start_dockerd(log_path, extra)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            client = _answers(docker)
            if client is not None:
                break
            time.sleep(0.25)
        if client is not None:
            break
        _stop_dockerd(proc)
    if client is None:
        tail = log_path.read_text(errors="replace")[-2000:]
        pytest.skip(f"dockerd could not be started:\n{tail}")
    try:
        yield client
    finally:
        client.close()
        _stop_dockerd(proc)


@pytest.fixture(scope="session")
def hostshim(docker_client) -> str:
    """The local image whose /usr and Python are the host's (mounted read-only)."""
    from autotune_docker_sim import HOSTSHIM_IMAGE, ensure_hostshim_image

    ensure_hostshim_image(docker_client, HOSTSHIM_IMAGE)
    return HOSTSHIM_IMAGE
