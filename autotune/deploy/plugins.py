"""Deploy targets are plug-ins: found through the entry-point group ``autotune.launchers``.

A package adds a target without editing autotune: one module with a
:class:`~autotune.deploy.base.Launcher` subclass (its ``Config`` dataclass states
every default) and a ``deploy/<name>.yaml`` beside it, and in its pyproject.toml::

    [project.entry-points."autotune.launchers"]
    mytarget = "mypackage.launcher:MyLauncher"

autotune then stores ``MyLauncher.Config`` as the schema ``deploy/mytarget_schema``
(the YAML's defaults list names it) and puts ``pkg://mypackage`` on Hydra's search
path (``hydra_plugins/autotune_searchpath``), so ``deploy=mytarget`` works.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autotune.deploy.base import Launcher

log = logging.getLogger(__name__)

GROUP = "autotune.launchers"


def _entry_points() -> list[EntryPoint]:
    # Sorted, and one per name: a checkout installed twice must not register twice.
    seen: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        seen.setdefault(ep.name, ep)
    return list(seen.values())


@functools.cache
def launchers() -> dict[str, type[Launcher]]:
    """Every registered deploy target: entry-point name -> launcher class."""
    from autotune.deploy.base import Launcher

    found: dict[str, type[Launcher]] = {}
    for ep in _entry_points():
        try:
            cls = ep.load()
        except Exception as e:  # a broken third-party plug-in must not break the others
            log.warning("deploy target %r (%s) cannot be loaded: %s", ep.name, ep.value, e)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Launcher)):
            log.warning("deploy target %r (%s) is not a Launcher subclass", ep.name, ep.value)
            continue
        found[ep.name] = cls
    return found


def launcher_for_target(target: str) -> type[Launcher]:
    """The registered launcher class whose dotted path is ``target``."""
    for cls in launchers().values():
        if f"{cls.__module__}.{cls.__qualname__}" == target:
            return cls
    known = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in launchers().values()))
    raise ValueError(
        f"deploy._target_={target} is not a registered deploy target (entry-point group "
        f"{GROUP!r}); registered: {known}"
    )


def config_packages() -> list[str]:
    """Packages outside autotune that bring deploy targets: their ``deploy/*.yaml``
    are found through Hydra's search path ``pkg://<package>``."""
    out = []
    for ep in _entry_points():
        package = ep.module.rpartition(".")[0] or ep.module
        if package.split(".")[0] != "autotune" and package not in out:
            out.append(package)
    return out


def register_schemas() -> None:
    """Each target's ``Config`` as ``deploy/<name>_schema`` in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, cls in launchers().items():
        cs.store(group="deploy", name=f"{name}_schema", node=cls.Config, replace=True)
