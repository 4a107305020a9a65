"""The study a trial belongs to: written by the sweep driver, read by every trial.

The driver (``autotune.callbacks.StudyCallback``) creates the MLflow parent run and
writes ``study.json`` into the sweep directory; each trial, in whatever process or
worker it runs, reads it to nest its run under the parent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

STUDY_FILE = "study.json"


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
    from autotune.validation import sweep_values  # validation imports the parser: keep lazy

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
