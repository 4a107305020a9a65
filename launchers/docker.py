"""deploy=docker: the engine in a container, through the Docker SDK.

    launcher = DockerLauncher(network_mode="host")
    launcher.render(spec)     # {"container.json": SDK kwargs, "docker_run.sh": same as a CLI line}
    endpoint = launcher.start(spec)      # container running, log streamed to endpoint.log_path
    launcher.stop(endpoint)              # stop(timeout) → logs saved → remove(force=True)

The image is ``deploy.image`` or ``runtime.image:runtime.image_tag`` (SGLang:
``lmsysorg/sglang:v0.5.5.post3-cu129-amd64``; ``runtime.image_tag=...`` picks another).
With host networking (the default) the engine binds ``deploy.host`` (127.0.0.1) on a
free port of the host; with ``network_mode=bridge`` it binds 0.0.0.0 on port 30000 in
the container and that port is published on 127.0.0.1:<free port>. A trial's GPUs
(``spec.gpus``, tp-size of them) become an NVIDIA device request.

The tests run the simulated engine through this launcher (``deploy=docker_sim``, a
deploy target of their own in tests/support; see docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dotenv import dotenv_values

from autotune.deploy import leftovers
from autotune.deploy.base import DeployConfig, Endpoint, Launcher, LaunchSpec, free_port
from autotune.deploy.failures import Failure, TrialFailure
from autotune.owner import owner_id
from autotune.params import gpu_count, to_argv
from autotune.secrets import MASK, is_secret_name

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Port the engine listens on inside the container when its network is a bridge.
CONTAINER_PORT = 30000
LABEL_TRIAL = "autotune.trial"
LABEL_MANAGED = "autotune.managed"
LABEL_OWNER = "autotune.owner"  # "<pid>@<hostname>" of the tuner that started it
# Taken from the tuner's environment when set (the engine downloads models, maybe
# through a proxy); values from .env / config win.
PASSTHROUGH_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
)
_PROXY_NAMES = {n for n in PASSTHROUGH_ENV if n.lower().endswith("_proxy")}


def _hidden(name: str) -> bool:
    """Variables never written out with their value (they may carry credentials)."""
    return is_secret_name(name) or name in _PROXY_NAMES


def container_name(trial_name: str) -> str:
    """A Docker container name for a trial.

    >>> container_name("My Study/trial 003")
    'autotune-my-study-trial-003'
    """
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in trial_name.lower())
    safe = "-".join(p for p in safe.split("-") if p)
    name = safe if safe.startswith("autotune-") else f"autotune-{safe}"
    return name[:120]


@dataclass
class DockerConfig(DeployConfig):
    _target_: str = "autotune.launchers.docker.DockerLauncher"
    name: str = "docker"
    # null = ${runtime.image}:${runtime.image_tag}, e.g. runtime.image_tag=v0.5.5.post3-cu129-amd64
    image: str | None = None
    # host: the engine binds 127.0.0.1 on a free port of the host's network (no bridge
    # needed); bridge: the engine binds 0.0.0.0:30000 in the container, published on
    # 127.0.0.1:<free port>.
    network_mode: str = "host"
    shm_size: str | None = "32g"  # used when ipc_mode is not host
    ipc_mode: str | None = "host"
    # host path -> container path[:ro], e.g. {~/.cache/huggingface: /root/.cache/huggingface}
    volumes: dict[str, str] = field(default_factory=dict)
    # HF_TOKEN, proxies ... (masked in everything rendered or logged)
    env_file: str | None = ".env"
    # NVIDIA device request of the trial's GPUs (false on hosts without GPUs).
    use_gpus: bool = True
    # Pull the image when it is not on the Docker host.
    pull: bool = False
    startup_timeout_s: float = 900.0


class DockerLauncher(Launcher):
    """Runs ``runtime.launch`` in ``image`` with the trial's flags; see the module doc."""

    Config = DockerConfig
    export_as: ClassVar[dict[str, str]] = {"docker_run.sh": "docker_run.sh"}
    # start() may pull the image first: Ctrl-C must reach it (it removes what it made).
    start_blocks = True
    leftover_kinds: ClassVar[tuple[str, ...]] = ("container",)
    name = "docker"

    # -- what is launched -------------------------------------------------------------
    @property
    def host_network(self) -> bool:
        return self.network_mode == "host"

    def image_ref(self, spec: LaunchSpec) -> str:
        """``deploy.image`` if set, else ``runtime.image:runtime.image_tag``."""
        if self.image:
            return str(self.image)
        image, tag = str(spec.runtime.image or ""), str(spec.runtime.image_tag or "latest")
        if not image:
            raise TrialFailure(
                Failure.DEPLOY_ERROR,
                f"runtime {spec.runtime.name} names no image: set runtime.image or deploy.image",
            )
        return f"{image}:{tag}"

    def bind(self, port: int) -> tuple[str, int]:
        """(host, port) the engine listens on inside the container."""
        if self.host_network:
            return self.host, port
        return "0.0.0.0", CONTAINER_PORT  # a bridge: reachable only through the published port

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        """The engine's argv in the container: launch prefix, model, host, port, flags."""
        host, cport = self.bind(port)
        argv = [
            *(str(a) for a in spec.runtime.launch),
            spec.runtime.model_arg,
            str(spec.model.path),
        ]
        if spec.runtime.served_name_arg:
            argv += [spec.runtime.served_name_arg, spec.served_name]
        argv += [spec.runtime.host_arg, host, spec.runtime.port_arg, str(cport)]
        argv += [str(a) for a in spec.runtime.extra_args]
        argv += to_argv(spec.params, spec.runtime.flags)
        return argv

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        """The container's environment: passthrough < .env < runtime.env < deploy.env."""
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if os.environ.get(k)}
        if self.env_file and Path(self.env_file).is_file():
            env.update({k: v for k, v in dotenv_values(self.env_file).items() if v is not None})
        env.update({k: str(v) for k, v in dict(spec.runtime.env or {}).items()})
        env.update(self.env)
        env.update(spec.env)
        # GPUs are selected by the device request; inside the container they are 0..n-1.
        env.pop("CUDA_VISIBLE_DEVICES", None)
        return env

    def device_requests(self, spec: LaunchSpec) -> list[dict[str, Any]]:
        """NVIDIA device requests (as ``docker.types.DeviceRequest`` kwargs)."""
        if not self.use_gpus:
            return []
        req: dict[str, Any] = {"driver": "nvidia", "capabilities": [["gpu"]]}
        if spec.gpus is not None:
            req["device_ids"] = [str(g) for g in spec.gpus]
        else:
            req["count"] = gpu_count(spec.params, spec.runtime.gpu_flag)
        return [req]

    def mounts(self, spec: LaunchSpec) -> dict[str, dict[str, str]]:
        """``volumes`` kwarg: host path -> {bind, mode}; ``deploy.volumes`` values may end in :ro."""
        out: dict[str, dict[str, str]] = {}
        for host_path, target in self.volumes.items():
            bind, _, mode = target.partition(":")
            out[str(Path(host_path).expanduser())] = {"bind": bind, "mode": mode or "rw"}
        return out

    def working_dir(self, spec: LaunchSpec) -> str | None:
        return None

    def container_spec(self, spec: LaunchSpec, port: int) -> dict[str, Any]:
        """Keyword arguments of ``client.containers.create`` (JSON-friendly, real secrets)."""
        kwargs: dict[str, Any] = {
            "image": self.image_ref(spec),
            "command": self.command(spec, port),
            "name": container_name(spec.trial_name),
            "labels": {
                LABEL_TRIAL: spec.trial_name,
                LABEL_MANAGED: "true",
                LABEL_OWNER: owner_id(),
            },
            "environment": self.environment(spec),
            "network_mode": self.network_mode,
            # PID 1 of a Python server ignores SIGTERM; tini (init) forwards it.
            "init": True,
            "volumes": self.mounts(spec),
        }
        if not self.host_network:
            kwargs["ports"] = {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)}
        if self.ipc_mode:
            kwargs["ipc_mode"] = self.ipc_mode
        if self.shm_size and self.ipc_mode != "host":  # ipc=host shares the host's /dev/shm
            kwargs["shm_size"] = self.shm_size
        if devices := self.device_requests(spec):
            kwargs["device_requests"] = devices
        if workdir := self.working_dir(spec):
            kwargs["working_dir"] = workdir
        return kwargs

    def run_command(self, kwargs: dict[str, Any]) -> list[str]:
        """The ``docker run`` argv equivalent to ``kwargs`` (secrets as ``-e NAME``)."""
        argv = ["docker", "run", "--detach", "--name", kwargs["name"]]
        if kwargs.get("init"):
            argv.append("--init")
        for k, v in kwargs["labels"].items():
            argv += ["--label", f"{k}={v}"]
        argv += ["--network", kwargs["network_mode"]]
        for cport, (hip, hport) in (kwargs.get("ports") or {}).items():
            argv += ["--publish", f"{hip}:{hport}:{cport.split('/')[0]}"]
        if kwargs.get("ipc_mode"):
            argv += ["--ipc", kwargs["ipc_mode"]]
        if kwargs.get("shm_size"):
            argv += ["--shm-size", str(kwargs["shm_size"])]
        for req in kwargs.get("device_requests", []):
            if "device_ids" in req:
                argv += ["--gpus", f'"device={",".join(req["device_ids"])}"']
            else:
                argv += ["--gpus", str(req.get("count", "all"))]
        for k, v in sorted(kwargs["environment"].items()):
            # `-e NAME` takes the value from the caller's environment: equivalent, and
            # keeps the value out of the file.
            argv += ["--env", k if _hidden(k) else f"{k}={v}"]
        for host_path, m in kwargs.get("volumes", {}).items():
            argv += ["--volume", f"{host_path}:{m['bind']}:{m['mode']}"]
        if kwargs.get("working_dir"):
            argv += ["--workdir", kwargs["working_dir"]]
        return [*argv, kwargs["image"], *kwargs["command"]]

    def render(self, spec: LaunchSpec, port: int | None = None) -> dict[str, str]:
        """``container.json`` (SDK kwargs, secrets masked) and ``docker_run.sh``.

        Contacts no Docker engine (dry runs work anywhere).
        """
        port = port or CONTAINER_PORT
        kwargs = self.container_spec(spec, port)
        shown = dict(kwargs)
        shown["environment"] = {
            k: (MASK if _hidden(k) else v) for k, v in sorted(kwargs["environment"].items())
        }
        cmd = self.run_command(kwargs)
        # One option (and its value) per line, the engine argv on the last lines.
        lines, i, n_opts = [], 2, len(cmd) - len(kwargs["command"]) - 1
        while i < n_opts:
            if i + 1 < n_opts and not cmd[i + 1].startswith("--"):
                lines.append(shlex.join(cmd[i : i + 2]))
                i += 2
            else:
                lines.append(shlex.quote(cmd[i]))
                i += 1
        lines += [shlex.quote(kwargs["image"]), shlex.join(kwargs["command"])]
        script = (
            "#!/bin/sh\n"
            f"# deploy={self.name}: the container autotune starts for {spec.trial_name}.\n"
            "# Variables given as `--env NAME` take their value from your environment.\n"
            "docker run \\\n  " + " \\\n  ".join(lines) + "\n"
        )
        return {
            "container.json": json.dumps(shown, indent=2) + "\n",
            "docker_run.sh": script,
        }

    # -- lifecycle ----------------------------------------------------------------------
    def client(self) -> Any:
        """A Docker SDK client (``DOCKER_HOST`` etc. honoured); DEPLOY_ERROR if none answers."""
        import docker

        try:
            client = docker.from_env()
            client.ping()
        except Exception as e:
            raise TrialFailure(
                Failure.DEPLOY_ERROR,
                f"no Docker engine answers ({e}); start dockerd or set DOCKER_HOST",
            ) from None
        return client

    def prepare_image(self, client: Any, image: str) -> None:
        """Make sure ``image`` is local; pull it only when ``deploy.pull`` allows."""
        import docker

        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        if not self.pull:
            raise TrialFailure(
                Failure.DEPLOY_ERROR,
                f"image {image} is not on this Docker host: `docker pull {image}` first, "
                f"or set deploy.pull=true",
            )
        log.info("pulling %s", image)
        try:
            client.images.pull(image)
        except docker.errors.APIError as e:
            raise TrialFailure(Failure.DEPLOY_ERROR, f"could not pull {image}: {e}") from None

    def _remove_leftover(self, client: Any, name: str) -> None:
        """A container of the same name left by a dead tuner is removed; a live one is not."""
        import docker

        try:
            old = client.containers.get(name)
        except docker.errors.NotFound:
            return
        if old.labels.get(LABEL_MANAGED) == "true" and not leftovers.owner_alive(
            old.labels.get(LABEL_OWNER)
        ):
            log.warning("removing container %s left by an earlier run", name)
            old.remove(force=True)
            return
        raise TrialFailure(
            Failure.DEPLOY_ERROR, f"a container named {name} exists and is in use: remove it first"
        )

    def start(self, spec: LaunchSpec) -> Endpoint:
        """Create and start the container; return at once (readiness is checked apart)."""
        import docker
        from docker.types import DeviceRequest

        spec.workdir.mkdir(parents=True, exist_ok=True)
        client = self.client()
        port = free_port("127.0.0.1")
        kwargs = self.container_spec(spec, port)
        log_path = spec.workdir / "engine.log"
        try:
            self.prepare_image(client, kwargs["image"])
            self._remove_leftover(client, kwargs["name"])
            sdk = dict(kwargs)
            if "device_requests" in sdk:
                sdk["device_requests"] = [DeviceRequest(**r) for r in sdk["device_requests"]]
            container = client.containers.create(**sdk)
        except docker.errors.APIError as e:
            client.close()
            raise TrialFailure(
                Failure.DEPLOY_ERROR, f"docker could not create the container: {e}"
            ) from None
        except TrialFailure:
            client.close()
            raise
        leftovers.record("container", container.id[:12], id=container.id, name=spec.trial_name)
        try:
            container.start()
            pump = LogPump(container, log_path)
            pump.start()
        except BaseException as e:  # the trial only stops what start() returned
            _remove(container)
            leftovers.forget("container", container.id[:12])
            client.close()
            if isinstance(e, docker.errors.APIError):
                # e.g. `could not select device driver "nvidia"` on a host without the toolkit
                raise TrialFailure(
                    Failure.DEPLOY_ERROR, f"docker could not start the container: {e}"
                ) from None
            raise
        log.info("started container %s (%s) on port %d", kwargs["name"], kwargs["image"], port)
        return Endpoint(
            base_url=f"http://127.0.0.1:{port}",
            model_name=spec.served_name,
            log_path=log_path,
            handle=Running(client=client, container=container, pump=pump),
            info={
                "container": kwargs["name"],
                "container_id": container.id,
                "port": port,
                "image": kwargs["image"],
            },
        )

    def poll(self, endpoint: Endpoint) -> int | None:
        """None while the container runs; its exit code once it has exited."""
        import docker

        run: Running = endpoint.handle
        if run.exit_code is not None:
            return run.exit_code
        try:
            run.container.reload()
            state = run.container.attrs.get("State", {})
        except docker.errors.NotFound:
            state = {"Status": "removed", "ExitCode": -1}
        except docker.errors.APIError as e:
            log.warning("could not inspect container: %s", e)
            return None
        if state.get("Status") not in ("exited", "dead", "removed"):
            return None
        # The log is complete once the stream ends; readiness reads it right after this.
        run.pump.join(timeout=10)
        if state.get("OOMKilled"):
            _append(endpoint.log_path, "autotune: the container was OOM-killed (host memory)\n")
        run.exit_code = int(state.get("ExitCode", -1))
        return run.exit_code

    @classmethod
    def reap(cls) -> list[str]:
        return reap_containers()

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        from autotune.doctor import targets

        return targets.docker(cfg)

    def stop(self, endpoint: Endpoint) -> None:
        """stop(timeout) → full log saved → remove(force=True). Idempotent; never raises."""
        run: Running | None = endpoint.handle
        if run is None or run.stopped:
            return
        run.stopped = True
        container = run.container
        try:
            container.stop(timeout=int(self.stop_timeout_s))
        except Exception as e:  # already gone, daemon hiccup: removal below still runs
            log.debug("container stop: %s", e)
        run.pump.join(timeout=10)
        if run.pump.is_alive() or run.pump.error:
            try:  # the stream broke: take the whole log from the daemon instead
                endpoint.log_path.write_bytes(container.logs(stdout=True, stderr=True))
            except Exception as e:
                log.warning("could not save the container log: %s", e)
        _remove(container)
        leftovers.forget("container", container.id[:12])
        with contextlib.suppress(Exception):
            run.client.close()


@dataclass
class Running:
    """What ``start`` hands to ``poll`` and ``stop`` (``Endpoint.handle``)."""

    client: Any
    container: Any
    pump: LogPump
    exit_code: int | None = None
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class LogPump(threading.Thread):
    """Streams a container's stdout+stderr into a file while it runs."""

    def __init__(self, container: Any, path: Path) -> None:
        super().__init__(name=f"logs-{container.name}", daemon=True)
        self.container = container
        self.path = path
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with open(self.path, "ab", buffering=0) as f:
                for chunk in self.container.logs(
                    stream=True, follow=True, stdout=True, stderr=True
                ):
                    f.write(chunk)
        except Exception as e:  # the daemon went away; stop() falls back to a full read
            self.error = e


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception as e:
        if "No such container" not in str(e) and "404" not in str(e):
            log.warning("could not remove container %s: %s", getattr(container, "name", "?"), e)


def reap_containers(client: Any | None = None) -> list[str]:
    """Remove containers whose tuner died without removing them; return their ids.

    Covers the registry entries written by :meth:`DockerLauncher.start` and any
    container labelled ``autotune.managed=true`` whose owner process is gone.
    """
    import docker

    entries = list(leftovers.orphans("container"))
    try:
        client = client or docker.from_env()
        containers = client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"})
    except Exception as e:
        log.debug("no Docker engine to reap: %s", e)
        return []
    removed = []
    for c in containers:
        if not leftovers.owner_alive(c.labels.get(LABEL_OWNER)):
            log.warning("removing container %s left running by a killed tuner", c.name)
            _remove(c)
            removed.append(c.id)
    for path, entry in entries:
        if entry["id"] not in removed:
            try:
                _remove(client.containers.get(entry["id"]))
                removed.append(entry["id"])
            except docker.errors.NotFound:
                pass
        path.unlink(missing_ok=True)
    return removed
