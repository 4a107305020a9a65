"""The console's only door into autotune's internals (config, validation, tracking names).

Everything the console needs from the CLI's own code goes through here, so that when
those modules move only this file changes: where the config repository is, the
choices of each group as Hydra lists them, composing a study exactly as
``python -m autotune`` does and validating it with the CLI's checks, the tracking
store's URI rules and tag names, and the secret scrubbing of anything shown.

    errors = validate(["params.mem=0.7,0.8"])   # {} when the study can start
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from autotune import secrets as _secrets
from autotune.config import register_configs
from autotune.study.validation import CONFIG_GROUPS, check_group_choices, validate_study
from autotune.tracking import (  # noqa: F401 (re-exported: the console's tag names)
    FAILURE,
    OWNER,
    PARENT,
    PHASE,
    ROLE,
    SIMULATED,
    STATUS,
    STUDY,
    open_client,
    resolve_uri,
    search_all,
)
from autotune.tracking import trial_runs as _trial_runs

# Tag names of the tracking contract: autotune/tracking/runs.py's, and those the study
# service and the trial recorder write as literals.
SWEEP_DIR, N_TRIALS, COMMAND = "autotune.sweep_dir", "autotune.n_trials", "autotune.command"
BEST_RUN = "autotune.best_run_id"
TRIAL_INDEX = "autotune.trial_index"
GROUPS: tuple[str, ...] = tuple(CONFIG_GROUPS)

# Hydra's global state is one per process: composing is serialised.
_hydra_lock = threading.Lock()


def conf_dir() -> Path:
    """The config repository the CLI composes from (the package's autotune.conf)."""
    from autotune.config import config_dir

    return config_dir()


def default_tracking_uri(configured: str | None, start_dir: Path) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in start_dir."""
    return resolve_uri(configured, start_dir)


def _compose(overrides: list[str], config_dirs: Iterable[Path] = ()) -> DictConfig:
    """The study config as the sweep driver sees it (MULTIRUN: sweeps kept as overrides)."""
    register_configs()
    extra = [f"file://{Path(d).resolve()}" for d in config_dirs]
    if extra:
        overrides = [f"hydra.searchpath=[{','.join(extra)}]", *overrides]
    with _hydra_lock:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(conf_dir())):
                gh = GlobalHydra.instance().hydra
                assert gh is not None
                return gh.compose_config(
                    "config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
                )
        finally:
            GlobalHydra.instance().clear()


_choices: tuple[float, dict[str, list[str]]] | None = None
CHOICES_TTL_S = 10.0


def group_choices() -> dict[str, list[str]]:
    """The choices of each config group, as Hydra lists them (a new YAML file shows up
    within ``CHOICES_TTL_S``, without a restart)."""
    global _choices
    if _choices is None or time.monotonic() - _choices[0] > CHOICES_TTL_S:
        _choices = (time.monotonic(), _list_choices())
    return _choices[1]


def _list_choices() -> dict[str, list[str]]:
    register_configs()
    with _hydra_lock:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(conf_dir())):
                loader = GlobalHydra.instance().config_loader()
                return {
                    g: [c for c in loader.get_group_options(g) if not c.endswith("_schema")]
                    for g in GROUPS
                }
        finally:
            GlobalHydra.instance().clear()


def refresh_choices() -> None:
    global _choices
    _choices = None


# "params.mem-fraction-statik: unknown flag ..." -> the field the message is about.
_KEY = re.compile(r"^([+~]*[\w.\-]+?)(?:=|:|\s)")


def error_field(message: str) -> str:
    """The config key an error message names first (``params.mem``), or ``""``."""
    m = _KEY.match(message)
    return m.group(1).lstrip("+~") if m else ""


def validate(overrides: list[str], config_dirs: Iterable[Path] = ()) -> list[str]:
    """The CLI's checks on a study given as overrides; ``[]`` when it can start."""
    config_dirs = list(config_dirs)
    argv = [a for d in config_dirs for a in ("--config-dir", str(d))] + list(overrides)
    errors = check_group_choices(argv, conf_dir())
    if errors:
        return errors
    try:
        cfg = _compose(list(overrides), config_dirs)
    except Exception as e:  # Hydra's composition errors name the key already
        return [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]
    return validate_study(cfg)


def runtime_flags(runtime: str) -> dict[str, dict[str, Any]]:
    """The runtime's flag table (``name -> {type, choices, min, max, help}``) and aliases."""
    cfg = _compose([f"runtime={runtime}"])
    flags = OmegaConf.to_container(cfg.runtime.flags, resolve=False) or {}
    aliases = OmegaConf.to_container(cfg.runtime.aliases, resolve=False) or {}
    return {"flags": flags, "aliases": aliases}  # type: ignore[dict-item]


def study_defaults(overrides: list[str] | None = None) -> dict[str, Any]:
    """The main keys of a composed study, to pre-fill the new-study form."""
    cfg = _compose(list(overrides or []))
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=False) or {}
    return {
        "choices": {g: choices.get(g) for g in GROUPS},
        "scenarios": list(cfg.benchmark.scenarios),
        "concurrency": list(cfg.benchmark.concurrency),
        "slo": dict(OmegaConf.to_container(cfg.objective.slo, resolve=False) or {}),
        "n_trials": OmegaConf.select(cfg, "search.n_trials", default=None),
        "experiment": cfg.tracking.experiment,
    }


def sweep_process_gone(tags: dict[str, str]) -> bool:
    """A RUNNING sweep run whose processes on this host are all gone (killed -9):
    the next study start closes it; until then the console shows it stopped."""
    from autotune.owner import owner_dead
    from autotune.tracking import live_workers

    return owner_dead(tags.get(OWNER)) and not live_workers(tags)


def trial_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every trial run of a study, oldest first (the CLI's own query)."""
    return _trial_runs(client, experiment_id, parent_run_id)


def secret_values(extra: Iterable[str] = ()) -> list[str]:
    """Secret values this process knows (environment, registered, ``extra``)."""
    return _secrets.secret_values(extra=list(extra))


def scrub(text: str, secrets: Iterable[str]) -> str:
    return _secrets.scrub(text, secrets)


def scrub_data(data: Any, secrets: Iterable[str]) -> Any:
    return _secrets.scrub_data(data, secrets)


def override_secrets(overrides: Iterable[str]) -> list[str]:
    """Secret values given on a study's command line (``benchmark.api_key=...``)."""
    return _secrets.override_secrets(overrides)


def mask_url(url: str) -> str:
    return _secrets.mask_url(url)
