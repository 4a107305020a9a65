"""A deploy target of the tests' own: the simulated engine in a Docker container.

``deploy=docker_sim`` runs the docker launcher's whole path (image, labels, init, env,
logs, stop/remove) with the simulator as the container's process, so it needs no GPU.
It is a plug-in like any other package's target (entry point ``autotune.launchers``,
this module and ``deploy/docker_sim.yaml``); tests install it (tests/plugins/README.md).
"""

from __future__ import annotations

import io
import logging
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autotune.launchers.docker import DockerConfig, DockerLauncher

import autotune
from autotune.deploy.base import Endpoint, LaunchSpec

log = logging.getLogger(__name__)

# The checkout autotune runs from (mounted read-only in the container).
REPO_ROOT = Path(autotune.__file__).resolve().parents[1]
HOSTSHIM_IMAGE = "local/hostshim:latest"


@dataclass
class SimDockerConfig(DockerConfig):
    _target_: str = "autotune_docker_sim.SimDockerLauncher"
    name: str = "docker_sim"
    simulated: bool = True
    image: str | None = HOSTSHIM_IMAGE
    # Mount this host's /usr, Python, virtualenv and checkout read-only in the image.
    mount_host_python: bool = True
    python: str | None = None  # interpreter inside the container; null = this one (mounted)
    gpu: str = "h200_sxm"
    clock: str = "realtime"
    seed: int = 0
    startup_s: float = 1.0
    faults: list[str] = field(default_factory=list)  # e.g. [fail-start=oom]
    use_gpus: bool = False
    ipc_mode: str | None = None
    shm_size: str | None = None
    env_file: str | None = None
    startup_timeout_s: float = 60.0


class SimDockerLauncher(DockerLauncher):
    """deploy=docker_sim: the simulated SGLang engine as the container's process.

    The argv is exactly deploy=sim's (``python -m autotune.sim.server`` + SGLang flags +
    ``--tokenizer-path`` + ``--sim-*``), so it exercises the docker path end to end
    (image, labels, init, env, logs, stop/remove) without a GPU. With
    ``mount_host_python`` (default) the image is a bare "hostshim" rootfs, built on
    first use, and this host's ``/usr``, Python installation, virtualenv and repository
    are mounted read-only at the same paths.
    """

    Config = SimDockerConfig
    export_as: ClassVar[dict[str, str]] = {}
    name = "docker_sim"
    simulated = True

    def __init__(self, config: SimDockerConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if self.clock != "realtime":
            raise ValueError(f"deploy.clock={self.clock!r}: a container runs in real time only")
        self.python = self.python or sys.executable

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        from autotune.doctor import targets
        from autotune.doctor.docker import docker_checks

        return [lambda: docker_checks(cfg), *targets.sim(cfg)]

    def _sim(self, host: str) -> Any:
        from autotune.launchers.sim import SimLauncher

        return SimLauncher(
            gpu=self.gpu, seed=self.seed, startup_s=self.startup_s, faults=list(self.faults),
            host=host, python=self.python, env_file=None,
        )  # fmt: skip

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        host, cport = self.bind(port)
        return self._sim(host).command(spec, cport)

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = super().environment(spec)
        if self.mount_host_python:
            # Import the mounted repository, not whatever the venv's .pth points at.
            env.setdefault("PYTHONPATH", str(REPO_ROOT))
            env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
            env.setdefault("PATH", f"{Path(self.python).parent}:/usr/local/bin:/usr/bin:/bin")
        return env

    def mounts(self, spec: LaunchSpec) -> dict[str, dict[str, str]]:
        out = super().mounts(spec)
        if not self.mount_host_python:
            return out
        paths = [Path("/usr"), Path(sys.base_prefix), Path(sys.prefix), REPO_ROOT]
        tok = self._sim(self.host).tokenizer(spec)
        if Path(tok).is_dir():
            paths.append(Path(tok).resolve())
        for p in _outermost(paths):
            out.setdefault(str(p), {"bind": str(p), "mode": "ro"})
        return out

    def working_dir(self, spec: LaunchSpec) -> str | None:
        return str(REPO_ROOT) if self.mount_host_python else None

    def prepare_image(self, client: Any, image: str) -> None:
        if image == HOSTSHIM_IMAGE:
            ensure_hostshim_image(client, image)
            return
        super().prepare_image(client, image)

    def start(self, spec: LaunchSpec) -> Endpoint:
        endpoint = super().start(spec)
        endpoint.info["tokenizer"] = self._sim(self.host).tokenizer(spec)
        return endpoint


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop paths inside another listed path (one read-only mount covers them)."""
    paths = sorted({p.resolve() if p.exists() else p for p in paths}, key=lambda p: len(p.parts))
    out: list[Path] = []
    for p in paths:
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    return out


def hostshim_tar() -> bytes:
    """An empty rootfs whose /usr (and Python) come from the host's read-only mounts.

    ``/sbin`` is a real directory: Docker bind-mounts ``docker-init`` at
    ``/sbin/docker-init`` for ``init=True``, which fails under a read-only symlink.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, kind: bytes, data: bytes = b"", target: str = "", mode: int = 0o755):
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, mode
            if kind == tarfile.SYMTYPE:
                info.linkname = target
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for d in ("usr", "etc", "tmp", "proc", "sys", "dev", "root", "var", "var/tmp", "sbin"):
            add(d, tarfile.DIRTYPE, mode=0o1777 if d.endswith("tmp") else 0o755)
        for link in ("bin", "lib", "lib64"):
            add(link, tarfile.SYMTYPE, target=f"usr/{link}")
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\n", mode=0o644)
        add("etc/group", tarfile.REGTYPE, b"root:x:0:\n", mode=0o644)
    return buf.getvalue()


def ensure_hostshim_image(client: Any, tag: str = HOSTSHIM_IMAGE) -> None:
    """Import the hostshim image under ``tag`` unless it exists (no registry needed)."""
    import docker

    try:
        client.images.get(tag)
        return
    except docker.errors.ImageNotFound:
        pass
    repo, _, version = tag.rpartition(":")
    log.info("building %s", tag)
    client.api.import_image_from_data(
        hostshim_tar(),
        repository=repo or tag,
        tag=version if repo else "latest",
        changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    )
