"""The study a trial belongs to: its name, its storage, its workers.

The driver (``autotune.study.callback.StudyCallback``) creates the MLflow parent run and
writes ``study.json`` into the sweep directory; each trial, in whatever process or
worker it runs, reads it to nest its run under the parent.

Several sweep processes ("workers", ``search.worker=NAME``) share one study when they
use the same ``search.storage`` and study name (docs/team.md). The Optuna study is the
shared state: it records who runs each trial (``autotune_worker``), which MLflow run is
the study's parent, and which trials were reclaimed from a dead worker.

    >>> worker_seed(0, None), worker_seed(0, "gpu0") == worker_seed(0, "gpu0")
    (0, True)
    >>> worker_seed(0, "gpu0") != worker_seed(0, "gpu1")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
# Optuna trial user attributes (the owner attribute is the sweeper's, "pid@host").
WORKER_ATTR, SEED_ATTR, RECLAIMED_ATTR = "autotune_worker", "autotune_seed", "autotune_reclaimed"
# An exact repeat answered from the earlier measurement (no deployment): not budget.
REPEAT_ATTR = "autotune_repeat_of"
# Optuna study system attributes: the MLflow parent run (per experiment) and who runs
# the baseline (the worker that created the study).
_PARENT_ATTR, _BASELINE_BY_ATTR = "autotune:mlflow_parent:", "autotune:baseline_by"
# URL schemes that are not SQLAlchemy databases (tracking URIs).
_NOT_SQLALCHEMY = ("http", "https", "file", "databricks", "mlflow-artifacts")


@dataclass
class StudyInfo:
    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    directions: list[str] = field(default_factory=lambda: ["maximize"])
    n_trials: int | None = None
    simulated: bool = False
    # Trials an earlier run of this study already finished (a resumed study numbers
    # its new trials after them).
    first_index: int = 0
    # The sweep process: search.worker, or "pid@host" when it is the only worker.
    worker: str = ""
    sampler_seed: int | None = None

    def write(self, sweep_dir: Path) -> Path:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path = sweep_dir / STUDY_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, sweep_dir: Path) -> StudyInfo:
        return cls(**json.loads((sweep_dir / STUDY_FILE).read_text()))


def _sweep_space(cfg: DictConfig) -> list[str]:
    from autotune.study.validation import sweep_values  # validation imports the parser: keep lazy

    # Only the searched flags: budget, seed and worker count do not change the study.
    space = {}
    for key, values, bounds in sweep_values(cfg):
        key = key.lstrip("+~")
        if key.startswith("params."):
            space[key] = f"{values if bounds is None else bounds}"
    return sorted(f"{k}={v}" for k, v in space.items())


def study_name(cfg: DictConfig) -> str:
    """``study.name``, or a stable name derived from what defines the study.

    Two runs of the same command (same model, engine, deploy target, workload,
    objective and search space) get the same name, so the second resumes the first.
    """
    if cfg.study.name:
        return str(cfg.study.name)
    identity = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "runtime": [cfg.runtime.name, cfg.runtime.get("image_tag")],
        "deploy": {
            k: v
            for k, v in OmegaConf.to_container(cfg.deploy, resolve=True).items()
            if k not in ("startup_timeout_s", "stop_timeout_s", "faults")
        },
        "benchmark": OmegaConf.to_container(cfg.benchmark, resolve=True),
        "objective": OmegaConf.to_container(cfg.objective, resolve=True),
        "params": OmegaConf.to_container(cfg.params, resolve=True),
        "space": _sweep_space(cfg),
        "sampler": str(OmegaConf.select(cfg, "hydra.sweeper.sampler._target_", default="grid")),
    }
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{cfg.tracking.experiment}-{cfg.model.name}-{digest[:8]}"


def optuna_storage(cfg: DictConfig, start_dir: str | Path) -> str:
    """``search.storage``, or sqlite next to the MLflow store in the start directory."""
    return cfg.search.storage or f"sqlite:///{Path(start_dir).resolve() / 'optuna.db'}"


# -- workers ------------------------------------------------------------------------------


def worker_name(cfg: DictConfig) -> str | None:
    """``search.worker``: the name of this sweep process in a shared study, or None."""
    name = OmegaConf.select(cfg, "search.worker", default=None)
    return str(name) if name not in (None, "") else None


def worker_seed(seed: int, worker: str | None) -> int:
    """The sampler seed of a worker: ``seed`` itself for a lone worker, else derived.

    Workers with the same seed would propose the same first configurations; a seed
    derived from ``search.seed`` and the worker's name differs per worker and stays
    the same when that worker is re-run.
    """
    if worker is None:
        return int(seed)
    digest = hashlib.sha256(f"{seed}:{worker}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def worker_sampler(sampler_cfg: DictConfig | None, sampler: Any, seed: int) -> Any:
    """The configured sampler again, with ``seed`` (the sweeper built it with search.seed)."""
    if sampler_cfg is None or "seed" not in sampler_cfg or sampler_cfg.seed == seed:
        return sampler
    from hydra.utils import instantiate

    return instantiate(
        sampler_cfg,
        seed=seed,
        _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"),
    )


def finished_trials(study: optuna.Study, worker: str | None) -> int:
    """Trials that use up a worker's budget: finished ones it ran (all, for a lone worker).

    Trials reclaimed from a dead worker do not count: their configuration never got a
    fair run, and the re-run worker runs its whole budget ("nothing lost").
    """
    import optuna

    from autotune.study.prescreen import EXCLUDED_ATTR

    done = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.PRUNED,
    )
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=done)
        if not t.user_attrs.get(RECLAIMED_ATTR)
        and REPEAT_ATTR not in t.user_attrs
        and EXCLUDED_ATTR not in t.user_attrs
        and (worker is None or t.user_attrs.get(WORKER_ATTR) == worker)
    )


def is_stale(
    trial: optuna.trial.FrozenTrial, owner: str, worker: str | None, stale_after_s: float
) -> bool:
    """Is a RUNNING trial left behind by a dead sweep process?

    Yes when its process ran on this host and is gone; when it belongs to this worker's
    name but another process (this worker was killed and is re-run, on any host); or
    when it is older than ``stale_after_s`` (workers elsewhere).
    """
    import datetime as dt

    from autotune.owner import owner_dead

    trial_owner = trial.user_attrs.get("autotune_owner")
    if owner_dead(trial_owner):
        return True
    if worker is not None and trial.user_attrs.get(WORKER_ATTR) == worker and trial_owner != owner:
        return True
    start = trial.datetime_start
    return start is not None and (dt.datetime.now() - start).total_seconds() >= stale_after_s


def reclaim(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Mark a stale RUNNING trial FAIL, flagged so that it uses up no budget."""
    import optuna

    study._storage.set_trial_user_attr(trial._trial_id, RECLAIMED_ATTR, True)
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def baseline_is_mine(study: optuna.Study, worker: str | None) -> bool:
    """Only the worker that created a shared study runs its baseline (once)."""
    by = study._storage.get_study_system_attrs(study._study_id).get(_BASELINE_BY_ATTR)
    return by is None or by == worker


# -- the shared Optuna study ---------------------------------------------------------------


def storage_error(url: str) -> str | None:
    """Why the database URL ``url`` cannot be opened here (a missing driver), or None.

    SQLAlchemy picks the driver from the scheme (since 2.1, ``postgresql://`` means
    psycopg 3; ``postgresql+psycopg2://`` psycopg2); both come with the team extra.
    """
    if "://" not in url or url.split("://", 1)[0].lower() in _NOT_SQLALCHEMY:
        return None
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception:  # not a database URL: whoever opens it says what is wrong
        return None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        module = getattr(e, "name", None) or parsed.get_driver_name()
        fix = (
            "pip install -e '.[team]'"
            if parsed.get_backend_name() == "postgresql"
            else f"install the Python package that provides {module!r}"
        )
        return (
            f"{parsed.drivername}:// needs the database driver {module!r}, which is not "
            f"installed: {fix}"
        )
    return None


def open_storage(url: str, attempts: int = 5) -> optuna.storages.BaseStorage:
    """Optuna storage for ``url``; retried, since workers starting at once on an empty
    database race to create its tables."""
    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.get_storage(url)
        except Exception as e:  # IntegrityError / ProgrammingError from the race
            if attempt == attempts - 1:
                raise
            log.info("opening %s failed (%s): retrying", _mask(url), type(e).__name__)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@dataclass
class SharedStudy:
    """The Optuna study as the workers' meeting point (see :func:`join_study`)."""

    storage: Any
    study_id: int
    # This process created the study: it records the MLflow parent and runs the baseline.
    created: bool

    def _attrs(self) -> dict[str, Any]:
        return self.storage.get_study_system_attrs(self.study_id)

    def parent_run_id(self, experiment: str) -> str | None:
        return self._attrs().get(_PARENT_ATTR + experiment)

    def set_parent_run_id(self, experiment: str, run_id: str) -> None:
        self.storage.set_study_system_attr(self.study_id, _PARENT_ATTR + experiment, run_id)

    def is_empty(self) -> bool:
        return not self.storage.get_all_trials(self.study_id, deepcopy=False)

    def wait_parent_run_id(self, experiment: str, timeout_s: float) -> str | None:
        """The parent the creating worker records, polled for up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            run_id = self.parent_run_id(experiment)
            if run_id or time.monotonic() >= deadline:
                return run_id
            time.sleep(0.2)

    def running_trials(self) -> list[optuna.trial.FrozenTrial]:
        import optuna

        return self.storage.get_all_trials(
            self.study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
        )


def join_study(
    storage: Any, name: str, directions: Sequence[str], worker: str | None
) -> SharedStudy:
    """Create the Optuna study, or join it when another process already did.

    Study creation is atomic in the storage (unique name), so of several workers
    starting at once exactly one is the creator: it records the MLflow parent run and
    runs the baseline; the others wait for that record.
    """
    import optuna

    try:
        study_id = storage.create_new_study(
            [optuna.study.StudyDirection[d.upper()] for d in directions], name
        )
    except optuna.exceptions.DuplicatedStudyError:
        return SharedStudy(storage, storage.get_study_id_from_name(name), created=False)
    if worker is not None:
        storage.set_study_system_attr(study_id, _BASELINE_BY_ATTR, worker)
    return SharedStudy(storage, study_id, created=True)


def _mask(url: str) -> str:
    from autotune.secrets import mask_url

    return mask_url(url)
