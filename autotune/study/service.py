"""A study's lifecycle around Hydra's sweep: open it before the first trial, close it after.

    service = StudyService.open(cfg, sweep_dir, n_trials)   # validate, track, join, guard
    ...                                                     # the sweeper runs the trials
    service.close(cfg)                                      # summary, export, parent closed

``open`` checks the whole study (flags of every sweep value, workload, objective) and
the tracking store before anything is deployed, so bad input exits 2 with a clear
message; it then finds or creates the MLflow sweep run (joining a team study when
workers share it) and writes ``study.json`` for the trials. ``close`` prints the
study's table and best trial, exports it, and closes the sweep run, also when the
sweep is interrupted (Ctrl-C, SIGTERM) or the process exits early.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from autotune import secrets
from autotune.objective import Objective
from autotune.owner import owner_id
from autotune.study import sweep_run
from autotune.study.errors import StudyError
from autotune.study.signals import InterruptGuard
from autotune.study.team import (
    SharedStudy,
    StudyInfo,
    join_study,
    open_storage,
    optuna_storage,
    storage_error,
    study_name,
    worker_name,
    worker_seed,
)
from autotune.study.validation import sweep_values, validate_study
from autotune.tracking.progress import console

log = logging.getLogger(__name__)


def expected_trials(cfg: DictConfig) -> int | None:
    """How many trials the sweep will run, when that is known up front."""
    import math

    if OmegaConf.select(cfg, "hydra.sweeper") is None:
        return 1
    sizes: dict[str, int] = {}
    for key, values, bounds in sweep_values(cfg):
        sizes[key.lstrip("+~")] = max(1, len(values)) if bounds is None else 0
    searched = any(k.startswith("params.") for k in sizes)
    baseline = 1 if searched and OmegaConf.select(cfg, "search.baseline", default=False) else 0
    if OmegaConf.select(cfg, "hydra.sweeper.n_trials") is not None:
        return int(cfg.hydra.sweeper.n_trials) + baseline
    if 0 in sizes.values():
        return None
    return (math.prod(sizes.values()) if sizes else 1) + baseline


def resumable(cfg: DictConfig) -> bool:
    """Does the sweeper keep its study in storage (so the same command resumes it)?"""
    return "optuna" in str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).lower()


def study_storage(cfg: DictConfig) -> str:
    """The Optuna storage URL the sweeper uses."""
    return str(
        OmegaConf.select(cfg, "hydra.sweeper.storage", default=None)
        or optuna_storage(cfg, cfg.hydra.runtime.cwd)
    )


def check_study(cfg: DictConfig) -> None:
    """Validate the study and its storage URLs; raise :class:`StudyError` if bad."""
    from autotune.study.prescreen import check_settings

    errors = validate_study(cfg) + check_settings(cfg)
    if errors:
        raise StudyError("Invalid study configuration:", errors)
    storage = study_storage(cfg) if resumable(cfg) else None
    url_errors = [
        f"{key}: {err}"
        for key, url in (("search.storage", storage), ("tracking.uri", cfg.tracking.uri))
        if url and (err := storage_error(str(url)))
    ]
    if url_errors:
        raise StudyError("Invalid study configuration:", url_errors)


@dataclass
class StudyService:
    """An open study: its sweep run, what the trials read, and how it ends."""

    info: StudyInfo
    parent: Any  # autotune.tracking.RunLogger of the sweep run
    sweep_dir: Path
    worker: str  # search.worker, or "pid@host" for a lone sweep process
    guard: InterruptGuard = field(default_factory=InterruptGuard)
    _left: bool = False

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls, cfg: DictConfig, sweep_dir: Path, n_trials: int | None, preflight: Any = None
    ) -> StudyService:
        """Everything before the first trial (see the module doc); ``preflight``: the
        doctor's report, kept on the sweep run as preflight.json."""
        # Imported only now: mlflow takes seconds to import, and bad input must fail fast.
        from autotune import tracking
        from autotune.deploy import leftovers
        from autotune.tracking import outbox

        leftovers.reap()
        uri = tracking.resolve_uri(cfg.tracking.uri, cfg.hydra.runtime.cwd)
        storage = study_storage(cfg) if resumable(cfg) else None
        # A password in a storage or tracking URL never reaches a log or MLflow.
        secrets.register(secrets.url_credentials(storage) + secrets.url_credentials(uri))
        outbox.bound_http_retries()  # a server that is down fails in seconds, not minutes
        try:
            outbox.check_reachable(uri)
            client, exp_id = tracking.connect(uri, cfg.tracking.experiment)
        except tracking.TrackingError as e:
            raise StudyError(
                "Tracking store unavailable:", [secrets.scrub(str(e), secrets.secret_values())]
            ) from None
        # Results earlier sweeps kept while MLflow was down (before their runs are closed).
        outbox.replay_pending(client, uri)
        for run_id in tracking.close_orphaned_runs(client, exp_id):
            log.warning("closed run %s left RUNNING by a tuner that was killed", run_id)
        sweep_dir = sweep_dir.resolve()
        other = sweep_run.claim_sweep_dir(sweep_dir)
        if other:
            raise StudyError(
                "Sweep directory in use:",
                [
                    f"{sweep_dir} is used by the sweep process {other}; give each worker "
                    f"its own directory: hydra.sweep.dir=multirun/<study>/<worker>"
                ],
            )
        service = cls._join(cfg, client, exp_id, uri, storage, sweep_dir, n_trials)
        if preflight is not None:
            from autotune.doctor.study import record

            record(preflight, service.parent)
        service.guard.install(lambda: service._close_parent("KILLED"))
        service._announce(cfg, n_trials)
        return service

    @classmethod
    def _join(
        cls,
        cfg: DictConfig,
        client: Any,
        exp_id: str,
        uri: str,
        storage: str | None,
        sweep_dir: Path,
        n_trials: int | None,
    ) -> StudyService:
        """The sweep run (found, created or joined) and the StudyInfo the trials read."""
        from autotune import tracking

        objective = Objective.from_config(cfg.objective)
        simulated = bool(cfg.deploy.get("simulated"))
        name = _study_name(cfg)
        worker = worker_name(cfg)
        shared: SharedStudy | None = None
        if storage is not None:
            shared = join_study(open_storage(storage), name, objective.directions, worker)
            sweep_run.check_workers(shared, worker)
        parent, created = sweep_run.find_or_create(
            client,
            exp_id,
            cfg,
            name,
            shared,
            _sweep_tags(cfg, name, simulated, sweep_dir, n_trials),
        )
        me = worker or owner_id()
        joined = not created and tracking.live_workers(client.get_run(parent.run_id).data.tags)
        tracking.join_sweep_run(parent, me)
        if not created:
            console.print(
                f"{'Joining' if joined else 'Resuming'} study {name} (MLflow run {parent.run_id})",
                highlight=False,
            )
        parent.params(_sweep_params(cfg))
        done_before = len(client.get_metric_history(parent.run_id, "trial_ok"))
        info = StudyInfo(
            name=name,
            tracking_uri=uri,
            experiment_id=exp_id,
            parent_run_id=parent.run_id,
            directions=list(objective.directions),
            n_trials=n_trials,
            simulated=simulated,
            # The Optuna sweeper numbers its jobs after the Optuna trials (unique across
            # workers); a grid numbers them after the trials already in the study.
            first_index=0 if shared is not None else done_before,
            worker=me,
            sampler_seed=worker_seed(cfg.search.seed, worker) if shared is not None else None,
        )
        info.write(sweep_dir)
        if n_trials is not None and worker is None:  # live done / failed / total in the UI
            parent.metric("trials_total", done_before + n_trials)
        return cls(info=info, parent=parent, sweep_dir=sweep_dir, worker=me)

    def _announce(self, cfg: DictConfig, n_trials: int | None) -> None:
        info = self.info
        banner = " [magenta](SIMULATED engine)[/]" if info.simulated else ""
        team = (
            f" as worker {info.worker} (sampler seed {info.sampler_seed})"
            if worker_name(cfg)
            else ""
        )
        from autotune.tracking.links import DEFAULT_UI, runs_view_url

        shown = secrets.mask_url(info.tracking_uri)
        if shown.startswith(("http://", "https://")):  # an MLflow server: its own UI
            ui, start_ui = shown, ""
        else:
            ui, start_ui = DEFAULT_UI, f"mlflow ui --backend-store-uri {shown}, then "
        console.print(
            f"[bold]Study {info.name}[/]{banner}: {n_trials or '?'} trial(s) on "
            f"deploy={cfg.deploy.name}{team}, tracking {shown}\n"
            f"  watch: {start_ui}{runs_view_url(ui, info.experiment_id)}",
            highlight=False,
        )

    # -- closing -------------------------------------------------------------------------
    def close(self, cfg: DictConfig) -> None:
        """Summary, export and figures; the sweep run closed whatever happens."""
        try:
            from autotune.study.summary import summarize_study
            from autotune.tracking import outbox

            # Trials' results kept while MLflow was down: in before the summary reads them.
            outbox.Outbox(self.sweep_dir, self.info.tracking_uri).replay(
                self.parent.client, force=True
            )
            summarize_study(cfg, self.info, self.parent, self.sweep_dir)
        except Exception:
            log.exception("could not summarize the study")
        finally:
            self._close_parent("KILLED" if self.guard.ended_by_interrupt() else "FINISHED")
            self.guard.restore()
            sweep_run.release_sweep_dir(self.sweep_dir)

    def _close_parent(self, status: str) -> None:
        if self._left:
            return
        from autotune import tracking

        self._left = True
        try:
            last = tracking.leave_sweep_run(self.parent, self.worker, status)
            if not last:
                log.info("other workers are still running study %s", self.parent.run_id)
            elif not tracking.is_terminal(self.parent.status()):
                self.parent.tag(
                    **{tracking.STATUS: "interrupted" if status == "KILLED" else "done"}
                )
                self.parent.end(status)
        except Exception:
            log.exception("could not close the sweep run %s", self.parent.run_id)


def _study_name(cfg: DictConfig) -> str:
    if cfg.study.name or resumable(cfg):
        return study_name(cfg)
    # A grid keeps no state to resume from: each run is its own study.
    return f"{cfg.tracking.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"


def _sweep_tags(
    cfg: DictConfig, name: str, simulated: bool, sweep_dir: Path, n_trials: int | None
) -> dict[str, Any]:
    from autotune import tracking

    return {
        tracking.ROLE: "sweep",
        tracking.STUDY: name,
        tracking.SIMULATED: str(simulated).lower(),
        tracking.STATUS: "running",
        "autotune.sweep_dir": str(sweep_dir),
        "autotune.n_trials": n_trials if n_trials is not None else "",
        "autotune.command": secrets.scrub(" ".join(sys.argv[1:]), secrets.secret_values()),
        tracking.OWNER: owner_id(),
    }


def _sweep_params(cfg: DictConfig) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "runtime": cfg.runtime.name,
        "deploy": cfg.deploy.name,
        "objective": ",".join(f"{t.direction}:{t.metric}" for t in cfg.objective.terms),
        "objective.concurrency": cfg.objective.concurrency,
        "objective.across_levels": cfg.objective.across_levels,
        "objective.slo_concurrency": cfg.objective.slo_concurrency,
        "slo": ",".join(f"{k}<={v}" for k, v in cfg.objective.slo.items()) or "none",
        "workload.scenarios": ",".join(cfg.benchmark.scenarios),
        "workload.concurrency": ",".join(str(c) for c in cfg.benchmark.concurrency),
    }
