"""Compose each distinct config-group choice once per sweep, not once per trial.

Hydra re-composes the whole config for every job of a sweep (defaults list, YAML
loads, merges: ~0.25 CPU-s here), although most trials of a study differ only in
plain values (``params.mem=0.8``). :class:`ComposeCache` wraps the sweep's config
loader: a job's overrides are split the way Hydra itself splits them
(``hydra._internal.defaults_list.Overrides``) into those that choose configs and
those that set values; the first part is composed once and cached, the second is
applied to a copy with Hydra's own ``_apply_overrides_to_config``, in the same
order and with the same struct-mode checks as a full composition.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.plugins.config_source import ConfigLoadError
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict


class ComposeCache:
    """A config loader that delegates to Hydra's, caching compositions by config choice."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __getstate__(self) -> dict[str, Any]:
        # Parallel launchers pickle the loader into their workers: send no cache.
        return {"_loader": self._loader, "_composed": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _sets_a_value(self, override: Override, groups: set[str]) -> bool:
        if override.is_hydra_override() or override.is_sweep_override():
            return False
        if override.package is not None:
            return False
        if getattr(override, "is_value_path", False):
            return True
        # Groups the study chose (its hydra.runtime.choices): also those that only a
        # hydra.searchpath entry brings, which the loader's own repository lacks.
        if override.key_or_group in groups:
            return False
        repo = getattr(self._loader, "repository", None)
        if repo is None:
            return False
        try:
            key = override.key_or_group
            return not (repo.group_exists(key) or repo.config_exists(key))
        except ConfigLoadError:
            return False

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        groups = set(OmegaConf.select(master_config, "hydra.runtime.choices", default={}) or {})
        values = [o for o in parsed if self._sets_a_value(o, groups)]
        if not values:
            return self._loader.load_sweep_config(master_config, list(sweep_overrides))
        choices = tuple(o.input_line for o in parsed if not self._sets_a_value(o, groups))
        base = self._composed.get(choices)
        if base is None:
            base = self._loader.load_sweep_config(master_config, list(choices))
            self._composed[choices] = base
        # A pickle round trip copies an OmegaConf tree (flags included) ~3x faster
        # than deepcopy.
        cfg = pickle.loads(pickle.dumps(base, protocol=pickle.HIGHEST_PROTOCOL))
        OmegaConf.copy_cache(from_config=base, to_config=cfg)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        with open_dict(cfg.hydra):
            # What a full composition records: the job's task overrides, in order.
            cfg.hydra.overrides.task = [
                o.input_line for o in parsed if not o.is_hydra_override() and o.input_line
            ]
        return cfg


def with_compose_cache(hydra_context: HydraContext) -> HydraContext:
    """The same context, its config loader wrapped in a :class:`ComposeCache`."""
    if isinstance(hydra_context.config_loader, ComposeCache):
        return hydra_context
    # replace(): every other field stays, the execution whitelist included (without
    # it Hydra configures logging unchecked, and warns at every launch).
    return dataclasses.replace(
        hydra_context,
        config_loader=ComposeCache(hydra_context.config_loader),  # type: ignore[arg-type]
    )
