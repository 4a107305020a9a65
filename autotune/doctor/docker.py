"""deploy=docker checks: the daemon, its NVIDIA runtime, the image, shm/ipc, the model mount.

    for check in docker_checks(cfg): ...      # one Docker client, closed at the end

The image check asks the daemon itself (``images.get``, then ``get_registry_data``
when ``deploy.pull`` is on), so a pull goes through the proxy the daemon is
configured with, exactly as a trial's pull would.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from omegaconf import DictConfig

from autotune.doctor.engine import looks_local, model_files
from autotune.doctor.result import Check

HOSTSHIM_PREFIX = "local/hostshim"  # built on first use by deploy=docker_sim
MIN_SHM_GIB = 1.0  # NCCL between tp ranks needs more than Docker's default 64 MiB
DAEMON_TIMEOUT_S = 5


def image_ref(cfg: DictConfig) -> str:
    """``deploy.image``, else ``runtime.image:runtime.image_tag`` (as the launcher does)."""
    if cfg.deploy.get("image"):
        return str(cfg.deploy.image)
    image = str(cfg.runtime.get("image") or "")
    return f"{image}:{cfg.runtime.get('image_tag') or 'latest'}" if image else ""


def connect(timeout: int = DAEMON_TIMEOUT_S) -> Any:
    import docker

    client = docker.from_env(timeout=timeout)
    client.ping()
    return client


def docker_checks(cfg: DictConfig, client: Any = None) -> list[Check]:
    """All docker checks with one client; only the daemon check when none answers."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = client or connect()
    except Exception as e:
        return [
            Check.fail(
                "docker daemon",
                f"no Docker engine answers at {host} ({type(e).__name__})",
                "start dockerd (or Docker Desktop), or set DOCKER_HOST",
            )
        ]
    try:
        info = client.info()
        out = [Check.ok("docker daemon", f"{info.get('ServerVersion', '?')} at {host}")]
        if cfg.deploy.get("use_gpus", True):
            out.append(nvidia_runtime(info))
        out += [image(cfg, client, info), shm_ipc(cfg), model_mount(cfg)]
        return out
    finally:
        client.close()


def nvidia_runtime(info: dict[str, Any]) -> Check:
    """The daemon can honour an NVIDIA device request (``--gpus``)."""
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    cdi = [d for d in info.get("CDISpecDirs") or [] if os.path.isdir(d) and os.listdir(d)]
    if "nvidia" in runtimes or cdi or shutil.which("nvidia-container-runtime-hook"):
        return Check.ok("NVIDIA runtime", f"runtimes {', '.join(runtimes)}")
    return Check.fail(
        "NVIDIA runtime",
        f"the daemon has no NVIDIA runtime (runtimes: {', '.join(runtimes) or 'none'})",
        "install the NVIDIA Container Toolkit, run `nvidia-ctk runtime configure --runtime=docker` and restart dockerd; or deploy.use_gpus=false",
    )


def image(cfg: DictConfig, client: Any, info: dict[str, Any]) -> Check:
    """The image is on the host, or (with ``deploy.pull``) the registry answers the daemon."""
    import docker

    ref = image_ref(cfg)
    if not ref:
        return Check.fail(
            "image",
            f"runtime {cfg.runtime.name} names no image",
            "set runtime.image or deploy.image",
        )
    if ref.startswith(HOSTSHIM_PREFIX):
        return Check.ok("image", f"{ref} (built locally on first use)")
    try:
        client.images.get(ref)
        return Check.ok("image", f"{ref} present")
    except docker.errors.ImageNotFound:
        pass
    if not cfg.deploy.get("pull"):
        return Check.fail(
            "image",
            f"{ref} is not on this Docker host",
            f"docker pull {ref}, or set deploy.pull=true",
        )
    from autotune.secrets import mask_url

    proxy = mask_url(info.get("HttpsProxy") or info.get("HttpProxy") or "") or "no proxy"
    try:
        client.images.get_registry_data(ref)
    except Exception as e:
        why = re.sub(r"\s+", " ", str(e))[:200]
        return Check.fail(
            "image",
            f"{ref} is not local and its registry does not answer the daemon ({proxy}): {why}",
            "configure the daemon's proxy (systemd drop-in HTTPS_PROXY) or a mirror, or docker pull/load the image",
        )
    return Check.ok("image", f"{ref} pullable ({proxy})")


def _gib(size: Any) -> float:
    """Docker's size strings: ``32g``, ``512m``, ``1073741824``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", str(size).lower())
    if not m:
        return 0.0
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)]
    return float(m.group(1)) * scale / 2**30


def shm_ipc(cfg: DictConfig) -> Check:
    """Shared memory for the engine's processes (NCCL, tokenizer workers)."""
    ipc, shm = cfg.deploy.get("ipc_mode"), cfg.deploy.get("shm_size")
    if ipc == "host":
        return Check.ok("shm/ipc", "ipc_mode=host (the host's /dev/shm)")
    if shm is None or _gib(shm) < MIN_SHM_GIB:
        return Check.warn(
            "shm/ipc",
            f"ipc_mode={ipc}, shm_size={shm}: Docker's 64 MiB default breaks NCCL with tp-size > 1",
            "set deploy.ipc_mode=host or deploy.shm_size=32g",
        )
    return Check.ok("shm/ipc", f"ipc_mode={ipc}, shm_size={shm}")


def model_mount(cfg: DictConfig) -> Check:
    """A local model path is mounted into the container and readable on the host."""
    path = str(cfg.model.path)
    if cfg.deploy.get("simulated") or not looks_local(path):
        return (
            model_files(cfg)
            if not cfg.deploy.get("simulated")
            else Check.ok("model path", "simulated engine: no weights")
        )
    for host_path, target in dict(cfg.deploy.get("volumes") or {}).items():
        bind = str(target).partition(":")[0].rstrip("/")
        if path == bind or path.startswith(bind + "/"):
            return model_files(
                cfg, host_path=os.path.expanduser(str(host_path)) + path[len(bind) :]
            )
    return Check.fail(
        "model path",
        f"{path} is not inside any deploy.volumes mount",
        f"mount it: deploy.volumes='{{{path}: {path}:ro}}'",
    )
