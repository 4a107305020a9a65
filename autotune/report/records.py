"""A finished (or running) study as plain data, read back from MLflow.

Everything the report, the figures and the export need is on the sweep run (tags,
params) and its trial runs (tags, params, metrics); this module is the one place
that knows those names and turns them into :class:`StudyRecord` /
:class:`TrialRecord`, which the rest of the package uses without touching MLflow.

    client = MlflowClient("sqlite:///mlflow.db")
    study = load_study(client, find_sweep(client).info.run_id)
    [t.name for t in study.ok_trials()]          # ['trial-000-baseline', 'trial-001']
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotune import tracking
from autotune.objective import higher_is_better

log = logging.getLogger(__name__)

# Child-run params that describe the workload and target rather than engine flags
# (flags never contain a dot: workload.*, sim.* are recognised by it).
_NOT_FLAGS = frozenset({"model", "runtime", "deploy"})


class StudyNotFound(LookupError):
    """No sweep run matches; the message says where we looked and what to do."""


@dataclass
class TrialRecord:
    """One trial run: what it ran with and what it measured."""

    run_id: str
    name: str
    index: int
    status: str  # ok | failed | running
    failure: str | None
    baseline: bool
    feasible: bool | None  # None: not scored (failed) or unknown
    flags: dict[str, str]  # native engine flags as MLflow keeps them (strings)
    metrics: dict[str, float]
    values: list[float] | None  # objective value(s) as the sweeper saw them
    simulated: bool
    start_time: int = 0
    run_params: dict[str, str] = field(default_factory=dict)  # all child params

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.values is not None

    @property
    def flags_label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.flags.items())) or "(engine defaults)"

    def levels(self) -> list[int]:
        """Concurrency levels this trial measured (from its ``c<N>.*`` metrics)."""
        from autotune.objective import levels

        return levels(self.metrics)


@dataclass
class StudyRecord:
    """The sweep run and its trials, oldest first."""

    run_id: str
    name: str
    experiment_id: str
    experiment: str
    tracking_uri: str
    status: str
    simulated: bool
    sweep_dir: str | None
    metrics: list[str]  # objective metric per term
    directions: list[str]  # maximize | minimize per term
    slo: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    n_trials: int | None
    trials: list[TrialRecord] = field(default_factory=list)
    progress: dict[str, float] = field(default_factory=dict)  # parent metrics, latest values
    # Confirmation runs' objective values per configuration (the trial it repeats, or
    # "defaults"), in run order; failed runs left out (autotune/confirm).
    confirmations: dict[str, list[float]] = field(default_factory=dict)
    # Where the objective is read: one concurrency level, else across levels.
    objective_concurrency: int | None = None
    across_levels: str = "pooled"
    slo_concurrency: int | None = None

    def slo_labels(self) -> dict[str, str]:
        """``p99 TTFT at concurrency 32 (ms) ≤ 2000`` per SLO."""
        from autotune.report.summary import label

        level = self.slo_concurrency
        if level is None:
            level = self.objective_concurrency
        return {
            m: f"{label(f'c{level}.{m}') if level is not None else label(m)} "
            f"{'≥' if higher_is_better(m) else '≤'} {bound:g}"
            for m, bound in self.slo.items()
        }

    def objective_labels(self) -> list[str]:
        """``output throughput at concurrency 32 (tok/s)`` per objective term."""
        from autotune.report.summary import label

        if self.objective_concurrency is not None:
            return [label(f"c{self.objective_concurrency}.{m}") for m in self.metrics]
        if self.across_levels != "pooled":
            return [f"{label(m)}, {self.across_levels} of the levels" for m in self.metrics]
        return [label(m) for m in self.metrics]

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def ok_trials(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.ok]

    def feasible_trials(self) -> list[TrialRecord]:
        return [t for t in self.ok_trials() if t.feasible is not False]

    def baseline(self) -> TrialRecord | None:
        """The study's baseline trial (engine defaults), the newest if a resume re-ran it."""
        found = [t for t in self.trials if t.baseline]
        return found[-1] if found else None

    def describe_target(self) -> str:
        """``deploy=sim: h200_sxm, virtual clock`` and the like."""
        deploy = self.params.get("deploy", "?")
        if not self.simulated or not self.trials:
            return f"deploy={deploy}"
        gpu = self.trials[0].run_params.get("sim.gpu", "")
        clock = self.trials[0].run_params.get("sim.clock", "")
        extra = ", ".join(x for x in (gpu, f"{clock} clock" if clock else "") if x)
        return f"deploy={deploy}" + (f": {extra}" if extra else "")


def parse_objective(text: str) -> tuple[list[str], list[str]]:
    """The sweep run's ``objective`` param: metrics and directions.

    >>> parse_objective("maximize:output_throughput_tok_s,minimize:ttft_p99_ms")
    (['output_throughput_tok_s', 'ttft_p99_ms'], ['maximize', 'minimize'])
    """
    metrics, directions = [], []
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        direction, _, metric = term.partition(":")
        directions.append(direction)
        metrics.append(metric)
    return metrics or ["objective"], directions or ["maximize"]


def parse_slo(text: str) -> dict[str, float]:
    """The sweep run's ``slo`` param.

    >>> parse_slo("ttft_p99_ms<=2000.0")
    {'ttft_p99_ms': 2000.0}
    >>> parse_slo("none")
    {}
    """
    out = {}
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if "<=" in term:
            k, _, v = term.partition("<=")
            try:
                out[k] = float(v)
            except ValueError:
                log.debug("unreadable SLO term %r", term)
    return out


def trial_from_run(run: Any, n_terms: int) -> TrialRecord:
    """A :class:`TrialRecord` from an MLflow trial run."""
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    status = tags.get(tracking.STATUS, "")
    if status not in ("ok", "failed"):
        status = "running" if run.info.status == "RUNNING" else "failed"
    if n_terms > 1:
        keys = [f"objective_{i}" for i in range(n_terms)]
        values = [metrics[k] for k in keys] if all(k in metrics for k in keys) else None
    else:
        values = [metrics["objective"]] if "objective" in metrics else None
    feasible_tag = tags.get("autotune.feasible")
    feasible = None if feasible_tag is None else feasible_tag == "true"
    if feasible is None and "slo_feasible" in metrics:
        feasible = metrics["slo_feasible"] > 0
    try:
        index = int(tags.get("autotune.trial_index", ""))
    except ValueError:
        index = -1
    record = TrialRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id[:8],
        index=index,
        status=status,
        failure=tags.get(tracking.FAILURE) if status != "ok" else None,
        baseline=tags.get("autotune.baseline") == "true",
        feasible=feasible,
        flags={k: v for k, v in params.items() if "." not in k and k not in _NOT_FLAGS},
        metrics=dict(metrics),
        values=values if status == "ok" else None,
        simulated=tags.get(tracking.SIMULATED) == "true",
        start_time=run.info.start_time or 0,
        run_params=dict(params),
    )
    return record


def load_study(client: Any, run_id: str) -> StudyRecord:
    """Read a sweep run and all its trials from MLflow."""
    run = client.get_run(run_id)
    tags, params = run.data.tags, run.data.params
    if tags.get(tracking.ROLE) != "sweep":
        raise StudyNotFound(
            f"MLflow run {run_id} is not an autotune sweep run (no autotune.role=sweep)"
        )
    metrics, directions = parse_objective(params.get("objective", ""))
    exp = client.get_experiment(run.info.experiment_id)
    runs = tracking.trial_runs(client, run.info.experiment_id, run_id)
    trials = [trial_from_run(r, len(directions)) for r in runs]
    trials.sort(key=lambda t: (t.index if t.index >= 0 else 1 << 30, t.start_time))
    n_trials = tags.get("autotune.n_trials") or ""
    level, across, slo_level = _objective_view(client, params, trials)
    return StudyRecord(
        run_id=run_id,
        name=tags.get(tracking.STUDY) or run.info.run_name or run_id,
        experiment_id=run.info.experiment_id,
        experiment=exp.name if exp else "",
        tracking_uri=str(getattr(client, "tracking_uri", "") or ""),
        status=tags.get(tracking.STATUS, run.info.status.lower()),
        simulated=tags.get(tracking.SIMULATED) == "true",
        sweep_dir=tags.get("autotune.sweep_dir"),
        metrics=metrics,
        directions=directions,
        slo=parse_slo(params.get("slo", "")),
        params=dict(params),
        tags=dict(tags),
        n_trials=int(n_trials) if n_trials.isdigit() else None,
        trials=trials,
        progress=dict(run.data.metrics),
        objective_concurrency=level,
        across_levels=across,
        slo_concurrency=slo_level,
        confirmations=confirmation_values(client, run.info.experiment_id, run_id),
    )


_SLOT = re.compile(r"^confirm-(?P<key>.+)-r(?P<repeat>\d+)$")


def confirmation_values(client: Any, experiment_id: str, run_id: str) -> dict[str, list[float]]:
    """Objective values of the study's finished confirmation runs, per configuration."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tracking.PARENT}` = '{run_id}' and tags.`{tracking.ROLE}` = 'confirm'",
        max_results=5000,
    )
    found: dict[str, list[tuple[int, float]]] = {}
    for r in runs:
        m = _SLOT.match(r.data.tags.get("autotune.confirm_slot", ""))
        value = r.data.metrics.get("objective")
        if m and value is not None and r.data.tags.get(tracking.STATUS) == "ok":
            found.setdefault(m["key"], []).append((int(m["repeat"]), value))
    return {k: [v for _, v in sorted(vals)] for k, vals in found.items()}


def _objective_view(
    client: Any, params: dict[str, str], trials: list[TrialRecord]
) -> tuple[int | None, str, int | None]:
    """Concurrency level and level mode of the objective, and the SLOs' level.

    From the sweep run's params when it records them, else a trial's config.yaml.
    """

    def level(v: Any) -> int | None:
        return int(v) if v is not None and str(v).isdigit() else None

    if "objective.concurrency" in params:
        return (
            level(params["objective.concurrency"]),
            params.get("objective.across_levels", "pooled"),
            level(params.get("objective.slo_concurrency")),
        )
    for t in trials[:1]:
        try:
            objective = trial_config(client, t.run_id).get("objective") or {}
        except Exception as e:  # no artifact (an old or foreign run): assume pooled
            log.debug("no config.yaml on %s: %s", t.run_id, e)
            break
        return (
            level(objective.get("concurrency")),
            str(objective.get("across_levels") or "pooled"),
            level(objective.get("slo_concurrency")),
        )
    return None, "pooled", None


# Stands for a scrubbed secret in a trial's config (never written anywhere).
MASKED = "__autotune_masked__"


def trial_config(client: Any, run_id: str) -> dict[str, Any]:
    """A trial's resolved config (its ``config.yaml`` artifact).

    Secrets were scrubbed from the text after it was dumped, so a masked value may
    be a bare ``***`` (a YAML alias): it is read back as :data:`MASKED`.
    """
    import yaml

    from autotune.secrets import MASK

    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        path = client.download_artifacts(run_id, "config.yaml", tmp)
        return yaml.safe_load(Path(path).read_text().replace(MASK, MASKED))


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow download progress bar in the study's output (restored afterwards)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def find_sweep(client: Any, experiment: str | None = None, run: str | None = None) -> Any:
    """The sweep run named by ``run`` (a run id or a study name), else the newest one.

    Raises :class:`StudyNotFound` with a message that says what to do.
    """
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise StudyNotFound(f"no MLflow experiment named {experiment!r}")
        exp_ids = [exp.experiment_id]
    else:
        exp_ids = [e.experiment_id for e in client.search_experiments()]
    if run:
        try:
            found = client.get_run(run)
        except Exception:
            found = None
        if found is not None and found.data.tags.get(tracking.ROLE) == "sweep":
            return found
        by_name = (
            client.search_runs(
                exp_ids,
                filter_string=f"tags.`{tracking.ROLE}` = 'sweep' and tags.`{tracking.STUDY}` = '{run}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if exp_ids
            else []
        )
        if by_name:
            return by_name[0]
        raise StudyNotFound(f"no autotune study with run id or name {run!r}")
    found = (
        client.search_runs(
            exp_ids,
            filter_string=f"tags.`{tracking.ROLE}` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if exp_ids
        else []
    )
    if not found:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise StudyNotFound(f"no autotune study in {where}")
    return found[0]
