"""A trial as MLflow sees it: a child run of the study's sweep run, fed by the trial's events.

:class:`TrialRecorder` is a :class:`~autotune.trial.spec.TrialObserver`: the trial
executor tells it what happens, it writes the run (params, the resolved config, the
rendered launch files, live phase tags, metrics, score, failure, engine log and
genai-bench folder) and, for search trials, the study's live curves on the parent.
When MLflow is down the outbox keeps everything for later (autotune.tracking.outbox).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from autotune import tracking
from autotune.deploy import Launcher
from autotune.owner import owner_id
from autotune.secrets import scrub, scrub_data, secret_values
from autotune.study.team import StudyInfo
from autotune.tracking import outbox
from autotune.trial.spec import TrialObserver, TrialResult, TrialSpec

log = logging.getLogger(__name__)
# libyaml's dumper when PyYAML has it (~10x faster than the pure-Python one).
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class TrialRecorder(TrialObserver):
    """Records one trial of ``study`` in MLflow (the sweep run is its parent)."""

    def __init__(self, study: StudyInfo, sweep_dir: Path, experiment: str) -> None:
        self.study = study
        self.sweep_dir = sweep_dir
        self.experiment = experiment
        self.run: outbox.SafeRun | None = None
        self._leased_at: float | None = None
        self._secrets: list[str] = []

    # -- events ------------------------------------------------------------------------
    def started(self, spec: TrialSpec, launcher: Launcher, rendered: dict[str, str]) -> None:
        cfg = spec.cfg
        self._secrets = secret_values(extra=[cfg.benchmark.api_key])
        outbox.bound_http_retries()
        self.box = outbox.Outbox(self.sweep_dir, self.study.tracking_uri)
        self.client = _client(self.study.tracking_uri, self.experiment)
        self.box.replay(self.client)
        self.run = outbox.SafeRun.create(
            self.client,
            self.box,
            self.study.experiment_id,
            spec.name,
            self._tags(spec, launcher),
            deferred=launcher.instant,
        )
        self.run.params(_params(spec, launcher))
        # Scrub the values, not the YAML text: a bare *** would not parse back.
        resolved = scrub_data(OmegaConf.to_container(cfg, resolve=True), self._secrets)
        # Dump the plain data: re-wrapping it in OmegaConf cost more than a virtual trial.
        self.run.text(
            yaml.dump(resolved, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True),
            "config.yaml",
        )
        for fname, text in rendered.items():
            self.run.text(scrub(text, self._secrets), f"launch/{fname}")

    def phase(self, name: str) -> None:
        self._run.tag(**{tracking.PHASE: name})

    def gpus(self, gpus: list[int]) -> None:
        self._leased_at = time.time()
        self._run.tag(**{"autotune.gpus": ",".join(map(str, gpus))})

    def server_info(self, info: dict[str, Any]) -> None:
        self._run.dict(info, "server_info.json")

    def metrics(self, metrics: dict[str, float]) -> None:
        self._run.metrics(metrics)

    def series(self, series: dict[str, list[tuple[float, float]]]) -> None:
        """MLflow metric histories: step = whole seconds since the benchmark started."""
        by_step: dict[int, dict[str, float]] = {}
        for name, points in series.items():
            for t, value in points:
                by_step.setdefault(round(t), {})[name] = value
        for step in sorted(by_step):
            self._run.metrics(by_step[step], step=step)

    def finished(self, spec: TrialSpec, result: TrialResult) -> None:
        if self.run is None:  # started() failed before the run existed: nothing to close
            return
        run = self.run
        if self._leased_at is not None:  # when the GPUs were held (epoch seconds)
            run.tag(**{"autotune.gpu_lease": f"{self._leased_at:.3f}-{time.time():.3f}"})
        if result.partial:
            run.tag(**{"autotune.partial": "true"})
        if result.pruned:
            # Stopped before its last level (early abort, a pruner): partial metrics kept.
            run.tag(**{"autotune.pruned": "true", "autotune.pruned_reason": result.pruned[:500]})
        if result.levels:
            run.tag(**{"autotune.levels_run": ",".join(map(str, result.levels))})
        if result.ok and result.score is not None:
            self._score(result)
        elif result.failure is not None:
            self._failure(spec, result)
        elif result.status == "pruned":
            # An Optuna pruner stopped it: its partial metrics stay, it ranks nowhere.
            run.tag(**{tracking.STATUS: "pruned", tracking.FAILURE: "pruned"})
        self._artifacts(spec, result)
        run.end(
            {"ok": "FINISHED", "pruned": "FINISHED", "interrupted": "KILLED"}.get(
                result.status, "FAILED"
            )
        )
        if spec.role == "trial":
            # A pruned trial's partial objective is no result for the best-so-far curve.
            value = None if result.status == "pruned" else result.value
            update_study_curves(self.client, self.box, self.study, spec.index, value)

    # -- parts ---------------------------------------------------------------------------
    @property
    def _run(self) -> outbox.SafeRun:
        assert self.run is not None, "started() comes first"
        return self.run

    def _tags(self, spec: TrialSpec, launcher: Launcher) -> dict[str, Any]:
        return {
            tracking.ROLE: spec.role,
            **spec.tags,
            tracking.PARENT: self.study.parent_run_id,
            tracking.STUDY: self.study.name,
            tracking.STATUS: "running",
            tracking.PHASE: "deploying",
            tracking.SIMULATED: str(launcher.simulated).lower(),
            "autotune.trial_index": spec.index,
            "autotune.baseline": str(spec.baseline).lower(),
            "autotune.deploy": spec.cfg.deploy.name,
            "autotune.runtime": spec.cfg.runtime.name,
            "autotune.host": os.uname().nodename,
            tracking.OWNER: owner_id(),
        }

    def _score(self, result: TrialResult) -> None:
        scored = result.score
        assert scored is not None
        values = scored.values
        out = {"objective": values[0], "slo_feasible": 1.0 if scored.feasible else 0.0}
        if len(values) > 1:
            out.update({f"objective_{i}": v for i, v in enumerate(values)})
        out.update({f"slo_slack.{k}": v for k, v in scored.slack.items()})
        self._run.metrics(out)
        self._run.tag(**{"autotune.feasible": str(scored.feasible).lower(), tracking.STATUS: "ok"})

    def _failure(self, spec: TrialSpec, result: TrialResult) -> None:
        assert result.failure is not None
        tags = {tracking.STATUS: "failed", tracking.FAILURE: result.failure.value}
        if result.status != "interrupted":
            # The failure class at a glance in the runs list and on the run page.
            tags["mlflow.runName"] = f"{spec.name} [{result.failure.value}]"
            tags["mlflow.note.content"] = result.message[:4000]
        self._run.tag(**tags)
        if result.message:
            self._run.text(result.message, "failure.txt")

    def _artifacts(self, spec: TrialSpec, result: TrialResult) -> None:
        """Engine log and genai-bench folder (the executor scrubbed them of secrets)."""
        try:
            endpoint = result.endpoint
            if endpoint is not None and endpoint.log_path.exists():
                self._run.artifact(endpoint.log_path, "logs")
            bench = spec.workdir / "genai-bench"
            if bench.exists():
                self._run.artifact(bench, "genai-bench")
        except Exception:
            log.exception("could not upload the trial's artifacts")


def _params(spec: TrialSpec, launcher: Launcher) -> dict[str, Any]:
    cfg = spec.cfg
    out: dict[str, Any] = {
        **spec.params,
        "model": cfg.model.name,
        "runtime": cfg.runtime.name,
        "deploy": cfg.deploy.name,
        "workload.scenarios": ",".join(cfg.benchmark.scenarios),
        "workload.concurrency": ",".join(str(c) for c in cfg.benchmark.concurrency),
        "workload.max_requests_per_run": cfg.benchmark.max_requests_per_run,
    }
    if launcher.simulated:
        out.update({"sim.gpu": cfg.deploy.get("gpu"), "sim.clock": cfg.deploy.get("clock")})
    return out


def _client(uri: str, experiment: str) -> Any:
    """The tracking client; one that connects later when the store is down right now."""
    try:
        client, _ = tracking.connect(uri, experiment)
    except tracking.TrackingError as e:
        from mlflow.tracking import MlflowClient

        log.warning("%s", e)
        client = MlflowClient(tracking_uri=uri)
    return client


def update_study_curves(
    client: Any, box: outbox.Outbox, study: StudyInfo, index: int, score: Any
) -> None:
    """Live study curves on the sweep run, with step = trial index.

    ``trial_objective`` / ``trial_ok`` record each trial as it ends (from any worker);
    ``best_objective``, ``trials_done`` and ``trials_failed`` are derived from their
    history, which is one small query however long the study is.
    """
    parent = outbox.SafeRun(client, box, study.parent_run_id, "sweep")
    single = len(study.directions) == 1
    own = {"trial_ok": 0.0 if score is None else 1.0}
    if single and score is not None:
        own["trial_objective"] = float(score)
    parent.metrics(own, step=index)  # kept in the outbox if MLflow is down
    if parent.online:  # else the next trial that reaches MLflow derives the curves
        try:
            oks = client.get_metric_history(study.parent_run_id, "trial_ok")
            out = {"trials_done": len(oks), "trials_failed": sum(1 for m in oks if m.value == 0)}
            if single:
                values = [
                    m.value
                    for m in client.get_metric_history(study.parent_run_id, "trial_objective")
                ]
                if values:
                    pick = max if study.directions[0] == "maximize" else min
                    out["best_objective"] = pick(values)
            parent.metrics(out, step=index)
        except Exception as e:
            log.warning("could not update the sweep run's curves: %s", e)
    parent.close()
