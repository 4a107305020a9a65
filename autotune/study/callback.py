"""Hydra's side of a study: the callback that opens and closes it around the sweep.

In the sweep driver, ``on_multirun_start`` checks the study and opens it
(:class:`~autotune.study.service.StudyService`) and ``on_multirun_end`` closes it.
In the process that runs each trial (the driver, or a joblib/Ray worker that got
this callback pickled), ``on_job_start``/``on_job_end`` keep the study's secrets out
of that process's logs and of the files Hydra writes for the job, and stop the sweep
once a signal came.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from autotune import secrets
from autotune.study.errors import StudyError, exit_with
from autotune.study.service import StudyService, check_study, expected_trials

log = logging.getLogger(__name__)


class StudyCallback(Callback):
    def __init__(self) -> None:
        self.service: StudyService | None = None
        # Every secret the study knows (env, config, command line, URL passwords):
        # masked in every log record and scrubbed from the sweep dir's Hydra files.
        self._secrets: list[str] = []
        self._multirun_yaml: Path | None = None

    # -- the sweep driver ------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, Path(config.hydra.sweep.dir), expected_trials(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._end(config)
        finally:
            # Hydra's files (multirun.yaml, each job's .hydra/), the trials' files.
            if self._secrets:
                secrets.scrub_tree(Path(config.hydra.sweep.dir), self._secrets)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, Path(config.hydra.run.dir), 1)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._end(config)
        finally:
            if self._secrets:
                secrets.scrub_tree(Path(config.hydra.run.dir) / ".hydra", self._secrets)

    # -- each trial's process ----------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self._secrets:
            secrets.register(self._secrets)
            self._scrub_hydra_files(config)
        # Again at each job (cheap): a library that re-applies its own logger set-up
        # mid-study (MLflow can) would otherwise print INFO lines past the trial log.
        from autotune.logs import route_library_logs

        route_library_logs()
        self._stop_if_interrupted()
        if self.service is None:
            return
        from autotune import tracking

        info = self.service.info
        tracking.set_job_tags(
            {tracking.WORKER: info.worker, tracking.SAMPLER_SEED: info.sampler_seed}
        )

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        # A study killed later (SIGKILL) leaves no secret in a finished job's files.
        if self._secrets:
            self._scrub_hydra_files(config)
        self._stop_if_interrupted()

    # -- implementation ------------------------------------------------------------------
    def _start(self, cfg: DictConfig, sweep_dir: Path, n_trials: int | None) -> None:
        # Before anything is printed or the first job is launched (Hydra's launcher
        # logs each job's overrides): every secret the study knows is masked from now
        # on in every log record, on the terminal and in the jobs' log files.
        self._secrets = secrets.secret_values(extra=secrets.config_secrets(cfg))
        secrets.register(self._secrets)
        # Hydra turns exceptions raised in callbacks into warnings and carries on;
        # a study that cannot start must stop here instead.
        try:
            check_study(cfg)
            if cfg.dry_run:
                return
            from autotune.doctor.study import preflight

            # Exits 1 with the doctor's message, nothing deployed, on a blocking problem.
            report = preflight(cfg)
            self.service = StudyService.open(cfg, sweep_dir, n_trials, preflight=report)
        except StudyError as e:
            exit_with(e)
        except SystemExit:
            raise
        except Exception as e:
            log.exception("the study could not start")
            exit_with(StudyError("The study could not start:", [f"{type(e).__name__}: {e}"]))
        self._secrets = secrets.secret_values()
        # What is alive now (MLflow, SQLAlchemy, pandas, Hydra: ~370k objects) lives as
        # long as the study: kept out of the cyclic GC's reach, and young collections
        # made rarer, the GC walks mostly what the trials allocate (OmegaConf copies are
        # cyclic garbage). A 100-trial virtual study spent ~7 s of ~50 in the GC, ~3 s now.
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)

    def _end(self, cfg: DictConfig) -> None:
        if self.service is not None:
            self.service.close(cfg)

    def _stop_if_interrupted(self) -> None:
        if self.service is not None:
            self.service.guard.check()

    def _scrub_hydra_files(self, config: DictConfig) -> None:
        """Mask the study's secrets in the job's ``.hydra/*.yaml`` (config, hydra,
        overrides: Hydra writes the command line there) and, once, ``multirun.yaml``."""
        hc = config.hydra
        job_dir = OmegaConf.select(hc, "runtime.output_dir", default=None)
        subdir = OmegaConf.select(hc, "output_subdir", default=None)
        if job_dir and subdir:
            secrets.scrub_tree(Path(job_dir) / str(subdir), self._secrets)
        if self._multirun_yaml is None:
            sweep_dir = OmegaConf.select(hc, "sweep.dir", default=None)
            if sweep_dir and str(hc.mode) == "RunMode.MULTIRUN":
                self._multirun_yaml = Path(sweep_dir) / "multirun.yaml"
                if self._multirun_yaml.is_file():
                    secrets.scrub_file(self._multirun_yaml, self._secrets)
