"""The one interface every deploy target implements: start → endpoint, logs, stop.

    launcher = hydra.utils.instantiate(cfg.deploy)      # launchers.sim.SimLauncher, ...
    endpoint = launcher.start(spec)                     # returns at once; not ready yet
    ...                                                 # autotune.readiness.wait_ready
    launcher.stop(endpoint)                             # always; idempotent; never raises

Guarantees every target gives: the full engine log in ``endpoint.log_path``, nothing
left running after ``stop``, and a classified :class:`TrialFailure` for anything that
prevents a trial from producing numbers.
"""

from __future__ import annotations

import abc
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Failure(StrEnum):
    """Values of the ``autotune.failure`` tag."""

    OOM = "oom"
    CUDA_GRAPH = "cuda_graph"
    BAD_FLAG = "bad_flag"
    CRASH = "crash"
    STARTUP_TIMEOUT = "startup_timeout"
    BENCHMARK_FAILED = "benchmark_failed"
    BENCHMARK_TIMEOUT = "benchmark_timeout"
    DEPLOY_ERROR = "deploy_error"
    INTERRUPTED = "interrupted"
    INTERNAL_ERROR = "internal_error"


class TrialFailure(Exception):
    """A trial could not produce numbers; ``failure`` says why in one word."""

    def __init__(self, failure: Failure | str, message: str) -> None:
        super().__init__(message)
        self.failure = Failure(failure)


@dataclass
class LaunchSpec:
    """Everything a launcher needs to start one engine for one trial."""

    trial_name: str
    runtime: Any  # RuntimeConfig (DictConfig)
    model: Any  # ModelConfig (DictConfig)
    params: dict[str, Any]  # normalized native flags
    workdir: Path
    gpus: list[int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    study: str | None = None

    @classmethod
    def for_trial(
        cls,
        cfg: Any,
        params: dict[str, Any],
        *,
        study: str,
        trial: str,
        workdir: Path,
        gpus: list[int] | None = None,
    ) -> LaunchSpec:
        """The spec of trial ``trial`` of ``study`` from a composed study config."""
        return cls(
            trial_name=f"{study}-{trial}",
            runtime=cfg.runtime,
            model=cfg.model,
            params=params,
            workdir=workdir,
            gpus=gpus,
            study=study,
        )

    @property
    def served_name(self) -> str:
        return self.model.served_name or self.model.name


@dataclass
class Endpoint:
    """A started engine. ``base_url`` has no ``/v1``; ``virtual://`` for the virtual clock."""

    base_url: str
    model_name: str
    log_path: Path
    handle: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def virtual(self) -> bool:
        return self.base_url.startswith("virtual://")


class Launcher(abc.ABC):
    """Base class of deploy targets (``launchers/<name>.py``)."""

    name: str = "base"
    simulated: bool = False
    startup_timeout_s: float = 600.0
    # Trials finish in milliseconds (no live progress worth reporting).
    instant: bool = False

    @abc.abstractmethod
    def render(self, spec: LaunchSpec, port: int | None = None) -> dict[str, str]:
        """What would be launched, as artifacts: file name -> text (no secrets)."""

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> Endpoint:
        """Start the engine and return at once; readiness is checked separately."""

    @abc.abstractmethod
    def poll(self, endpoint: Endpoint) -> int | None:
        """None while the engine runs; its exit code once it has stopped."""

    @abc.abstractmethod
    def stop(self, endpoint: Endpoint) -> None:
        """Stop the engine and release everything it holds. Idempotent; never raises."""

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        """This target's doctor checks for study ``cfg``: zero-argument callables that
        return an ``autotune.doctor.Check`` (or a list of them); see autotune/doctor/."""
        return []


def create_launcher(deploy_cfg: Any) -> Launcher:
    """The deploy target named by ``deploy._target_`` (only ``launchers.*`` classes)."""
    from hydra.utils import execution_whitelist, instantiate

    launcher = instantiate(deploy_cfg, _execution_whitelist_=execution_whitelist(["launchers.*"]))
    if not isinstance(launcher, Launcher):
        raise TypeError(f"deploy._target_={deploy_cfg._target_} is not an autotune Launcher")
    return launcher


# Ports other services on users' machines rely on; never handed to an engine.
RESERVED_PORTS = frozenset({8443})


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (never a reserved one)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise RuntimeError(f"no free port on {host}")
