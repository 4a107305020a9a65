"""The study's one MLflow parent run ("sweep run") and the workers that share it.

Several sweep processes (workers) may share one study (docs/team.md): the one that
creates the Optuna study creates the parent run and records it in the study, the
others join it; a worker name runs once at a time; two processes never share a
sweep directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from autotune.owner import owner_dead, owner_id
from autotune.study.errors import StudyError
from autotune.study.team import WORKER_ATTR, SharedStudy

log = logging.getLogger(__name__)

# How long a worker that joins a brand-new study waits for its creator to record the
# MLflow parent run (one create_run call), and how long two workers that both created
# a parent run (no shared Optuna study to decide) wait before keeping the oldest.
PARENT_WAIT_S, PARENT_SETTLE_S = 30.0, 2.0
_SWEEP_DIR_OWNER = ".autotune-worker"


def claim_sweep_dir(sweep_dir: Path) -> str | None:
    """Make this process the sweep directory's only user; else say who uses it.

    Two workers started in the same second on one host get the same default
    ``hydra.sweep.dir``: their trials would overwrite each other's files.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / _SWEEP_DIR_OWNER
    me = owner_id()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            other = path.read_text().strip()
            if other and other != me and not owner_dead(other, unknown_is_dead=True):
                return other
            path.unlink(missing_ok=True)  # left by a process that is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return None
    return None


def find_or_create(
    client: Any,
    exp_id: str,
    cfg: DictConfig,
    name: str,
    shared: SharedStudy | None,
    tags: dict[str, Any],
) -> tuple[Any, bool]:
    """The study's one MLflow parent run, found or created; True if created here.

    With an Optuna study, the worker that created it creates the parent run and
    records its id in the study; the others read it (waiting for it if the study
    is brand new). Without one (a grid, or a study recorded before autotune kept
    the parent's id), find or create by tag.
    """
    from autotune import tracking

    experiment = str(cfg.tracking.experiment)
    if shared is not None:
        run = tracking.sweep_run(client, shared.parent_run_id(experiment))
        if run is None and not shared.created and shared.is_empty():
            log.info("waiting for the worker that created study %s to record its run", name)
            run_id = shared.wait_parent_run_id(experiment, PARENT_WAIT_S)
            run = tracking.sweep_run(client, run_id)
        if run is not None:
            return run, False
        if shared.created:
            run = tracking.find_sweep_run(client, exp_id, name)
            created = run is None
            if run is None:
                run = tracking.create_run(client, exp_id, name, tags)
            shared.set_parent_run_id(experiment, run.run_id)
            return run, created
    settle = PARENT_SETTLE_S if shared is not None or cfg.study.name else 0.0
    run, created = tracking.find_or_create_sweep_run(client, exp_id, name, tags, settle)
    if shared is not None:
        shared.set_parent_run_id(experiment, run.run_id)
    return run, created


def check_workers(shared: SharedStudy, worker: str | None) -> None:
    """A worker name runs once at a time; a lone sweep should not share a study."""
    me = owner_id()
    for t in shared.running_trials():
        owner = t.user_attrs.get("autotune_owner")
        if owner == me or owner_dead(owner):
            continue
        if worker is not None and t.user_attrs.get(WORKER_ATTR) == worker:
            if owner and owner.partition("@")[2] == me.partition("@")[2]:
                raise StudyError(
                    "Worker already running:",
                    [
                        f"search.worker={worker} is running as {owner} (trial {t.number}); "
                        f"give each worker its own search.worker name"
                    ],
                )
        elif worker is None:
            log.warning(
                "%s is running trials of this study too: give every process that "
                "shares a study its own search.worker=NAME, so that each gets its own "
                "sampler seed and budget (docs/team.md)",
                owner,
            )
            return


def release_sweep_dir(sweep_dir: Path) -> None:
    (sweep_dir / _SWEEP_DIR_OWNER).unlink(missing_ok=True)
