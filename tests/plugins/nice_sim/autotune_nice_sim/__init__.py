"""A deploy target added from outside autotune: the simulated engine at a lower CPU priority.

What a third-party target looks like (docs/architecture.md, "Add a deploy target"):
this one module — its config dataclass, its launcher — plus ``deploy/nice_sim.yaml``
and an entry point in the package's pyproject.toml. autotune is not edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from autotune.launchers.sim import SimConfig, SimLauncher

from autotune.deploy.base import LaunchSpec


@dataclass
class NiceSimConfig(SimConfig):
    _target_: str = "autotune_nice_sim.NiceSimLauncher"
    name: str = "nice_sim"
    # The engine's niceness (`nice -n`): a trial on a shared box yields the CPU.
    niceness: int = 10


class NiceSimLauncher(SimLauncher):
    Config = NiceSimConfig
    export_as: ClassVar[dict[str, str]] = {}
    name = "nice_sim"

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        return ["nice", "-n", str(self.niceness), *super().command(spec, port)]
