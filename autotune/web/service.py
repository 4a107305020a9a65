"""The console's operations, shared by the JSON API and the pages.

A study's id is its MLflow parent run id. A study the console has just launched is
known by its launch id (``l-…``) until its sweep process has created the parent run;
both ids work everywhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from autotune.tracking import links
from autotune.web import bridge, experiments, files
from autotune.web.launches import Launch, Launches
from autotune.web.store import Cached, Store, Study, Trial


@dataclass
class Settings:
    tracking_uri: str
    start_dir: Path
    state_dir: Path
    experiments_dir: Path
    mlflow_url: str = links.DEFAULT_UI
    token: str | None = None
    refresh_s: float = 2.0
    python: str = field(default_factory=lambda: __import__("sys").executable)


class InvalidStudy(ValueError):
    def __init__(self, errors: list[str], command: str) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.command = command


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


class Console:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.tracking_uri, ttl_s=settings.refresh_s)
        self.launches = Launches(settings.state_dir, settings.start_dir, settings.python)
        # What 20 clients polling the same study ask for: computed once a second.
        self._answers = Cached(min(1.0, settings.refresh_s))
        self._secrets = Cached(5.0)

    # --- secrets -------------------------------------------------------------------
    def secrets(self) -> list[str]:
        def collect() -> list[str]:
            extra: list[str] = []
            for launch in self.launches.all():
                extra += bridge.override_secrets(launch.argv)
            return bridge.secret_values(extra)

        return self._secrets.get("all", collect)

    def scrub(self, data: Any) -> Any:
        return bridge.scrub_data(data, self.secrets())

    # --- composing and starting ----------------------------------------------------
    def args_for(self, body: dict[str, Any]) -> tuple[list[str], list[Path]]:
        """CLI arguments and extra config dirs for ``{"overrides"}`` or ``{"experiment"}``."""
        if body.get("experiment"):
            args = experiments.launch_args(self.settings.experiments_dir, body["experiment"])
            return args + list(body.get("overrides") or []), [self.settings.experiments_dir]
        overrides = body.get("overrides")
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise InvalidStudy(['"overrides" must be a list of strings'], "")
        return list(overrides), []

    def command(self, args: list[str]) -> str:
        shown = bridge.scrub(shlex.join(["python", "-m", "autotune", *args]), self.secrets())
        return bridge.scrub(shown, bridge.override_secrets(args))

    def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        args, dirs = self.args_for(body)
        overrides = [a for a in args if not a.startswith("--") and not _is_dir_arg(args, a)]
        errors = bridge.validate(overrides, dirs)
        secrets = self.secrets() + bridge.override_secrets(args)
        return {
            "ok": not errors,
            "errors": [
                {"field": bridge.error_field(e), "message": bridge.scrub(e, secrets)}
                for e in errors
            ],
            "command": self.command(args),
        }

    def start(self, body: dict[str, Any]) -> dict[str, str]:
        result = self.validate(body)
        if not result["ok"]:
            raise InvalidStudy([e["message"] for e in result["errors"]], result["command"])
        args, _ = self.args_for(body)
        # The study records where the console reads (a tracking.uri override still
        # wins), whatever MLFLOW_TRACKING_URI the console's own environment has.
        launch = self.launches.start(args, env={"MLFLOW_TRACKING_URI": self.settings.tracking_uri})
        self.invalidate()
        return {"id": launch.id, "command": result["command"]}

    def invalidate(self) -> None:
        self.store.invalidate()
        self._answers.clear()
        self._secrets.clear()

    # --- reading -------------------------------------------------------------------
    def _launch_for(self, study: Study) -> Launch | None:
        return self.launches.by_owner(study.owner) if study.owner else None

    def resolve(self, study_id: str) -> tuple[Study | None, Launch | None]:
        """The study (None while a launch is starting) and the console's launch of it."""
        launch = self.launches.get(study_id)
        if launch is None:
            study = self.store.study(study_id)
            if study is None:
                raise NotFound(f"no study {study_id!r} in {bridge.mask_url(self.store.uri)}")
            return study, self._launch_for(study)
        found = self.store.find_by_owner({launch.owner})
        if found is None and not launch.alive():
            self.store.invalidate()  # it may have finished since the last snapshot
            found = self.store.find_by_owner({launch.owner})
        return (self.store.study(found.id) if found else None), launch

    def study_json(self, study_id: str) -> dict[str, Any]:
        def answer() -> dict[str, Any]:
            study, launch = self.resolve(study_id)
            return self.scrub(self._describe(study, launch, detail=True))

        return self._answers.get(study_id, answer)

    def studies_json(self) -> list[dict[str, Any]]:
        return self._answers.get("", self._studies_json)

    def _studies_json(self) -> list[dict[str, Any]]:
        studies = self.store.studies()
        owners = {s.owner for s in studies}
        rows = [self._describe(s, self._launch_for(s), detail=False) for s in studies]
        starting = [
            self._describe(None, launch, detail=False)
            for launch in self.launches.all()
            if launch.owner not in owners and (launch.alive() or not _ended_long_ago(launch))
        ]
        return self.scrub(starting + rows)

    def _describe(self, study: Study | None, launch: Launch | None, detail: bool) -> dict:
        if study is None:
            assert launch is not None
            alive = launch.alive()
            return {
                "id": launch.id,
                "launch_id": launch.id,
                "name": "(starting)" if alive else "(did not start)",
                "status": "running" if alive else "failed",
                "phase": "starting" if alive else "",
                "trials_done": 0,
                "trials_failed": 0,
                "trials_total": None,
                "best": None,
                "eta_s": None,
                "current": None,
                "verdict": "Starting: the sweep process has not opened its MLflow run yet."
                if alive
                else "The study process ended before opening its MLflow run: "
                + launch.output_tail(1500).strip()[-1500:],
                "command": launch.command,
                "stoppable": alive,
            }
        best = study.best_trial() if detail else None
        current = study.current
        return {
            "id": study.id,
            "launch_id": launch.id if launch else None,
            "name": study.name,
            "experiment_id": study.experiment_id,
            "status": study.status,
            "simulated": study.simulated,
            "trials_done": study.trials_done,
            "trials_failed": study.trials_failed,
            "trials_total": study.trials_total,
            "current": {"run_id": current.run_id, "trial": current.name, "phase": current.phase}
            if current
            else None,
            "phase": current.phase if current else "",
            "best_objective": study.best_objective,
            "best": {
                "run_id": best.run_id,
                "trial": best.name,
                "objective": best.objective,
                "params": best.params,
            }
            if best
            else None,
            "verdict": study.verdict() if detail else None,
            "eta_s": study.eta_s(),
            "command": study.command,
            "start_ms": study.start_ms,
            "end_ms": study.end_ms,
            "mlflow_url": links.run_url(self.settings.mlflow_url, study.experiment_id, study.id),
            "stoppable": study.status == "running" and self._stoppable(study),
        }

    def trial(self, run_id: str) -> tuple[Trial, Study]:
        found = self.store.trial(run_id)
        if found is None:
            raise NotFound(f"no trial {run_id!r}")
        trial, parent = found
        study = self.store.study(parent)
        if study is None:
            raise NotFound(f"the study of trial {run_id!r} is not in the store")
        return trial, study

    def artifact(self, run_id: str, path: str) -> Path | None:
        """A finished trial's artifact file (fixed ``path``), downloaded once, or None."""
        root = self.settings.state_dir / "artifacts" / run_id
        try:
            return files.inside(root, path)
        except files.FileRefused:
            pass
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent))
        try:
            local = self.store.client.download_artifacts(run_id, path, str(tmp))
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Path(local).replace(root / path)
        except Exception:
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            return files.inside(root, path)
        except files.FileRefused:
            return None

    # --- control -------------------------------------------------------------------
    def _stoppable(self, study: Study) -> bool:
        return self._launch_for(study) is not None or _local_autotune(study.owner) is not None

    def stop(self, study_id: str) -> dict[str, Any]:
        """Ctrl-C's path for a running study: SIGINT to its sweep process (group)."""
        study, launch = self.resolve(study_id)
        if study is not None and study.status != "running":
            raise Conflict(f"the study is {study.status}, not running")
        if launch is not None:
            if not self.launches.stop(launch):
                raise Conflict("the study is not running")
        else:
            assert study is not None
            proc = _local_autotune(study.owner) if study.status == "running" else None
            if proc is None:
                raise Conflict(
                    "the study is not running on this host (stop it where it runs: Ctrl-C)"
                )
            proc.send_signal(signal.SIGINT)  # that process only: it is not our child
        self.invalidate()
        return {"id": study_id, "stopping": True}

    def resume(self, study_id: str) -> dict[str, str]:
        """Run the launch's command again (a resumable study continues where it stopped)."""
        study, launch = self.resolve(study_id)
        if launch is None:
            raise Conflict(
                "only studies started from this console can be resumed here; run its "
                "command again: " + (study.command if study else "")
            )
        if launch.alive():
            raise Conflict("the study is still running")
        if study is not None and study.status not in ("stopped", "failed"):
            raise Conflict(f"the study is {study.status}: start it again with edits instead")
        new = self.launches.start(launch.argv[3:])
        self.invalidate()
        return {"id": new.id, "command": self.command(launch.argv[3:])}

    def launch_args(self, study_id: str) -> list[str]:
        """The overrides a study was started with (to edit and start again)."""
        _, launch = self.resolve(study_id)
        if launch is not None:
            return launch.argv[3:]
        study, _ = self.resolve(study_id)
        # The tag is the argv joined by spaces (not shell-quoted): split it back so.
        return study.command.split() if study and study.command else []


def _is_dir_arg(args: list[str], arg: str) -> bool:
    i = args.index(arg)
    return i > 0 and args[i - 1] in ("--config-dir", "-cd")


def _ended_long_ago(launch: Launch, keep_s: float = 3600.0) -> bool:
    import time

    return time.time() - launch.started > keep_s


def _local_autotune(owner: str) -> psutil.Process | None:
    """The live ``python -m autotune`` process ``owner`` names, if it runs on this host."""
    pid, _, host = (owner or "").partition("@")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return None
    try:
        proc = psutil.Process(int(pid))
        return proc if "autotune" in " ".join(proc.cmdline()) else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
