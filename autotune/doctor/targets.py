"""Each deploy target's checks, as its launcher's ``preflight_checks`` returns them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig


def sim(cfg: DictConfig) -> list[Callable[[], Any]]:
    from autotune.doctor.engine import sim_profile

    return [lambda: sim_profile(cfg)]


def local(cfg: DictConfig) -> list[Callable[[], Any]]:
    from autotune.doctor.common import gpus_needed
    from autotune.doctor.engine import engine_command, model_files
    from autotune.doctor.gpus import check_gpus

    return [
        lambda: check_gpus(cfg, gpus_needed(cfg)),
        lambda: engine_command(cfg),
        lambda: model_files(cfg),
    ]


def _docker_host_is_local() -> bool:
    return os.environ.get("DOCKER_HOST", "unix://").startswith("unix://")


def docker(cfg: DictConfig) -> list[Callable[[], Any]]:
    from autotune.doctor.common import gpus_needed
    from autotune.doctor.docker import docker_checks
    from autotune.doctor.gpus import check_gpus

    fns: list[Callable[[], Any]] = [lambda: docker_checks(cfg)]
    if cfg.deploy.get("use_gpus", True) and _docker_host_is_local():
        fns.append(lambda: check_gpus(cfg, gpus_needed(cfg)))  # this host's GPUs
    return fns


def ome(cfg: DictConfig) -> list[Callable[[], Any]]:
    from autotune.doctor.ome import ome_checks

    return [lambda: ome_checks(cfg)]
