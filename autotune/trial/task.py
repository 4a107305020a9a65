"""The Hydra job: one trial of the study, recorded in MLflow and shown on the terminal.

score = hydra_trial(cfg)      # in the task function of ``python -m autotune``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from autotune.params import normalize
from autotune.study.team import StudyInfo
from autotune.trial.spec import TrialSpec

if TYPE_CHECKING:
    from autotune.study.constraints import Answer


@dataclass
class TrialContext:
    """Where a trial sits: its index, its directory and its study."""

    index: int
    workdir: Path
    study: StudyInfo
    # Where the sweep keeps its files (study.json, outbox/).
    sweep_dir: Path
    # Hydra's job number in the sweep (None outside a multirun): finds the job's
    # Optuna trial for a pruner (autotune.trial.pruning).
    job: int | None = None

    @classmethod
    def from_hydra(cls) -> TrialContext:
        hc = HydraConfig.get()
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
        sweep_dir = Path(hc.sweep.dir if multirun else hc.run.dir).resolve()
        study = StudyInfo.read(sweep_dir)
        index = int(hc.job.num) if multirun and hc.job.get("num") is not None else 0
        return cls(
            index=study.first_index + index,
            workdir=Path(hc.runtime.output_dir).resolve(),
            study=study,
            sweep_dir=sweep_dir,
            job=int(hc.job.num) if multirun and hc.job.get("num") is not None else None,
        )


def trial_spec(cfg: DictConfig, ctx: TrialContext) -> TrialSpec:
    """The job's trial: ``trial-<index>``, ``-baseline`` for the engine's defaults."""
    from autotune.objective import Objective
    from autotune.trial.pruning import reporter_for_job

    baseline = bool(cfg.study.baseline_trial)
    return TrialSpec(
        report=reporter_for_job(ctx.job, Objective.from_config(cfg.objective)),
        cfg=cfg,
        params=normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases),
        name=f"trial-{ctx.index:03d}" + ("-baseline" if baseline else ""),
        study=ctx.study.name,
        workdir=ctx.workdir,
        index=ctx.index,
        baseline=baseline,
    )


def hydra_trial(cfg: DictConfig) -> Answer:
    """Run this job's trial; its answer for the sweeper: value(s) (None: failed or
    unscorable) and the constraints a feasibility-aware sampler reads."""
    from autotune.study.constraints import Answer
    from autotune.tracking.progress import TrialProgress
    from autotune.tracking.recorder import TrialRecorder
    from autotune.trial.executor import run_trial

    ctx = TrialContext.from_hydra()
    spec = trial_spec(cfg, ctx)
    recorder = TrialRecorder(ctx.study, ctx.sweep_dir, str(cfg.tracking.experiment))
    progress = TrialProgress(ctx.index, ctx.study.n_trials, spec.params, ctx.study.simulated)
    return Answer.of(run_trial(spec, [recorder, progress]))
