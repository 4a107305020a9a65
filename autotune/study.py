"""The study a trial belongs to: written by the sweep driver, read by every trial.

The driver (``autotune.callbacks.StudyCallback``) creates the MLflow parent run and
writes ``study.json`` into the sweep directory; each trial, in whatever process or
worker it runs, reads it to nest its run under the parent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
