"""What a study found, decided from its records: best trial, Pareto front, gain over baseline.

Pure functions of :class:`~autotune.report.records.StudyRecord`; no MLflow, no files.

    best = best_trial(study)                   # single objective; ties broken as below
    front = pareto_front(study.feasible_trials(), ["output_throughput_tok_s", "ttft_p99_ms"],
                         ["maximize", "minimize"])
    gain = objective_gain(study, best)         # None when the study has no usable baseline

Ties (equal objective, common on the simulator when a flag does not matter at the
load tested) go to the lower p99 TTFT, then the lower mean TPOT, then the most recent
trial (the freshest measurement).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from autotune.objective import pareto_front as objective_front
from autotune.report.records import StudyRecord, TrialRecord

THROUGHPUT, TTFT_P99, TPOT_MEAN, E2E_P99 = (
    "output_throughput_tok_s",
    "ttft_p99_ms",
    "tpot_mean_ms",
    "e2e_p99_ms",
)
PER_GPU, GOODPUT, COST = "output_throughput_tok_s_per_gpu", "goodput_req_s", "cost_usd_per_mtok"
# What the deployment and the service level make of those (autotune/benchmark/derived.py);
# a report shows them where they say something (see serving_metrics).
SERVING_METRICS = {PER_GPU: "maximize", GOODPUT: "maximize", COST: "minimize"}
# Metrics every report shows, with the direction that counts as better.
KEY_METRICS = {
    THROUGHPUT: "maximize",
    TTFT_P99: "minimize",
    TPOT_MEAN: "minimize",
    E2E_P99: "minimize",
}

# objective=capacity: max concurrency under SLO and the throughput there.
CAPACITY_METRICS = ("capacity_concurrency", "capacity_output_throughput_tok_s")


# Name suffix -> unit, the first match wins (so "_tok_s_per_gpu" before "_s").
_UNITS = (
    ("_ms", "ms"),
    ("_tok_s_per_gpu", "tok/s"),
    ("_usd_per_mtok", "USD per 1M output tokens"),
    ("goodput_req_s", "req/s"),
    ("_tok_s", "tok/s"),
    ("requests_per_s", "req/s"),
    ("_s", "s"),
    ("rate", "fraction"),
)


def unit(metric: str) -> str:
    """The unit of a metric, from its name.

    >>> unit("c32.ttft_p99_ms"), unit("output_throughput_tok_s"), unit("error_rate")
    ('ms', 'tok/s', 'fraction')
    """
    for suffix, name in _UNITS:
        if metric.endswith(suffix):
            return name
    return ""


def label(metric: str) -> str:
    """A human label with unit: ``ttft_p99_ms`` → ``p99 TTFT (ms)``.

    >>> label("output_throughput_tok_s")
    'output throughput (tok/s)'
    >>> label("c32.ttft_p99_ms")
    'p99 TTFT at concurrency 32 (ms)'
    """
    level = ""
    name = metric
    if metric.startswith("c") and "." in metric and metric[1 : metric.index(".")].isdigit():
        level = f" at concurrency {metric[1 : metric.index('.')]}"
        name = metric[metric.index(".") + 1 :]
    words = {
        THROUGHPUT: "output throughput",
        "input_throughput_tok_s": "input throughput",
        "total_throughput_tok_s": "total throughput",
        "requests_per_s": "request throughput",
        "error_rate": "error rate",
        "capacity_concurrency": "max concurrency under SLO",
        "capacity_concurrency_per_gpu": "max concurrency under SLO per GPU",
        "capacity_output_throughput_tok_s": "output throughput at capacity",
        "capacity_requests_per_s": "request throughput at capacity",
        PER_GPU: "output throughput per GPU",
        GOODPUT: "goodput",
        COST: "cost",
        "goodput_fraction": "goodput fraction",
    }
    if name in words:
        text = words[name]
    else:
        parts = name.rsplit("_", 2)
        if len(parts) == 3 and parts[2] in ("ms", "s"):
            text = f"{parts[1]} {parts[0].upper()}"
        else:
            text = name.replace("_", " ")
    u = unit(name)
    return f"{text}{level}" + (f" ({u})" if u else "")


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def _rank_key(t: TrialRecord, direction: str) -> tuple:
    value = t.values[0] if t.values else math.nan
    primary = -value if direction == "maximize" else value
    m = t.metrics
    return (primary, m.get(TTFT_P99, math.inf), m.get(TPOT_MEAN, math.inf), -t.index)


def best_trial(study: StudyRecord) -> TrialRecord | None:
    """The single-objective best trial (None if no trial succeeded or multi-objective)."""
    if study.multi_objective:
        return None
    ok = [t for t in study.ok_trials() if t.values and math.isfinite(t.values[0])]
    if not ok:
        return None
    return min(ok, key=lambda t: _rank_key(t, study.directions[0]))


def tied_with(study: StudyRecord, best: TrialRecord | None) -> list[TrialRecord]:
    """Other successful trials whose objective equals the best one's exactly."""
    if best is None or not best.values:
        return []
    return [t for t in study.ok_trials() if t.run_id != best.run_id and t.values == best.values]


def pareto_front(
    trials: list[TrialRecord], metrics: list[str] | None, directions: list[str]
) -> list[TrialRecord]:
    """Non-dominated trials on ``metrics`` (None: their objective values), sorted on the first.

    Trials with equal results are all kept, as in the study's own ``pareto_front.json``
    (:func:`autotune.objective.pareto_front` decides for both).
    """

    def point(t: TrialRecord) -> list[float] | None:
        vals = t.values if metrics is None else [t.metrics.get(m) for m in metrics]
        if vals is None or any(v is None or not math.isfinite(v) for v in vals):
            return None
        return list(vals)

    pts = [(t, p) for t in trials if (p := point(t)) is not None]
    keep = objective_front([p for _, p in pts], directions)
    return [pts[i][0] for i in sorted(keep, key=lambda i: (pts[i][1][0], pts[i][0].index))]


def study_front(study: StudyRecord) -> list[TrialRecord]:
    """The study's Pareto-optimal trials on its objectives (multi-objective studies)."""
    pool = study.feasible_trials() or study.ok_trials()
    return pareto_front(pool, None, study.directions)


def parse_rule(rule: str) -> tuple[str, str]:
    """``max:output_throughput_tok_s`` → (maximize, metric).

    >>> parse_rule("min:ttft_p99_ms")
    ('minimize', 'ttft_p99_ms')
    """
    how, _, metric = rule.partition(":")
    direction = {"max": "maximize", "maximize": "maximize", "min": "minimize"}.get(how)
    direction = direction or ("minimize" if how == "minimize" else None)
    if direction is None or not metric:
        raise ValueError(f"export pick rule {rule!r}: use max:<metric> or min:<metric>")
    return direction, metric


def chosen_trial(study: StudyRecord, rule: str | None = None) -> TrialRecord | None:
    """The trial a study recommends.

    Single objective: :func:`best_trial`. Multi-objective: among the Pareto-optimal
    trials that meet the SLOs, the best by ``rule`` (``max:<metric>`` /
    ``min:<metric>``), by default the best on the first objective.
    """
    if not study.multi_objective:
        # The confirmation stage's choice (autotune/confirm) when there was one.
        confirmed = study.tags.get("autotune.confirmed_run_id")
        pick = next((t for t in study.ok_trials() if t.run_id == confirmed), None)
        return pick or best_trial(study)
    front = study_front(study)
    if not front:
        return None
    if rule is None:
        direction = study.directions[0]
        score = {t.run_id: t.values[0] for t in front if t.values}
    else:
        direction, metric = parse_rule(rule)
        score = {t.run_id: t.metrics[metric] for t in front if metric in t.metrics}
        if not score:
            return None
    scored = [t for t in front if t.run_id in score]
    return min(
        scored,
        key=lambda t: (-score[t.run_id] if direction == "maximize" else score[t.run_id], -t.index),
    )


@dataclass
class Gain:
    """A metric of the best trial against the baseline; ``change`` > 0 means better."""

    metric: str
    direction: str
    baseline: float
    best: float

    @property
    def change(self) -> float:
        if self.baseline == 0:
            return 0.0 if self.best == 0 else math.inf
        rel = (self.best - self.baseline) / abs(self.baseline)
        return rel if self.direction == "maximize" else -rel

    def describe(self) -> str:
        """``output throughput (tok/s): 1482 → 1665 (+12.3 % better)``"""
        u = unit(self.metric)
        pct = self.change * 100
        word = "better" if pct > 0.05 else "worse" if pct < -0.05 else "same"
        return (
            f"{label(self.metric)}: {self.baseline:.4g} → {self.best:.4g}"
            f"{' ' + u if u and u != 'fraction' else ''} ({abs(pct):.1f} % {word})"
        )


def gains(best: TrialRecord, baseline: TrialRecord, metrics: dict[str, str]) -> list[Gain]:
    """Gains on ``metrics`` (name → direction) that both trials measured."""
    return [
        Gain(m, d, baseline.metrics[m], best.metrics[m])
        for m, d in metrics.items()
        if m in best.metrics and m in baseline.metrics
    ]


def baseline_note(study: StudyRecord) -> str | None:
    """Why there is no gain over the baseline, or None when there is one to compute."""
    base = study.baseline()
    if base is None:
        return (
            "This study has no baseline trial (the engine's default flags), so there is "
            "no gain to report; search.baseline=true runs one first."
        )
    if not base.ok:
        return f"The baseline trial {base.name} failed ({base.failure or 'no score'}): no gain to report."
    if base.feasible is False:
        return f"The baseline trial {base.name} missed the SLOs; gains below compare raw metrics."
    return None


def objective_gain(study: StudyRecord, best: TrialRecord | None) -> Gain | None:
    """The best trial's objective against the baseline's (single objective, both feasible)."""
    base = study.baseline()
    if (
        best is None
        or base is None
        or not base.ok
        or study.multi_objective
        or base.feasible is False
        or best.feasible is False
    ):
        return None
    return Gain(study.metrics[0], study.directions[0], base.values[0], best.values[0])


def slo_state(t: TrialRecord, study: StudyRecord) -> str:
    """``pass`` | ``FAIL`` | ``-`` (no SLOs, or the trial was not scored)."""
    if not study.slo or not t.ok or t.feasible is None:
        return "-"
    return "pass" if t.feasible else "FAIL"


def trial_dict(t: TrialRecord, study: StudyRecord) -> dict[str, Any]:
    return {
        "name": t.name,
        "run_id": t.run_id,
        "index": t.index,
        "status": t.status,
        "failure": t.failure,
        "baseline": t.baseline,
        "slo": slo_state(t, study),
        "flags": dict(sorted(t.flags.items())),
        "objective": t.values,
        **{m: t.metrics.get(m) for m in (*KEY_METRICS, "error_rate", *SERVING_METRICS)},
        **{m: t.metrics[m] for m in CAPACITY_METRICS if m in t.metrics},
    }


def serving_metrics(study: StudyRecord) -> list[str]:
    """The serving metrics worth a report column: those the objective or an SLO names,
    and per-GPU throughput once some trial used more than one GPU."""
    named = set(study.metrics) | set(study.slo or {})
    out = [m for m in SERVING_METRICS if m in named]
    several_gpus = any(
        (g := t.metrics.get(PER_GPU)) is not None
        and (v := t.metrics.get(THROUGHPUT)) is not None
        and not math.isclose(g, v)
        for t in study.trials
    )
    if several_gpus and PER_GPU not in out:
        out.insert(0, PER_GPU)
    return out


def summarize(study: StudyRecord, rule: str | None = None) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    best = chosen_trial(study, rule)
    base = study.baseline()
    obj_gain = objective_gain(study, best)
    other_gains = gains(best, base, KEY_METRICS) if best and base and base.ok else []
    n_failed = sum(1 for t in study.trials if t.status == "failed")
    return {
        "study": study.name,
        "run_id": study.run_id,
        "experiment": study.experiment,
        "status": study.status,
        "simulated": study.simulated,
        "target": study.describe_target(),
        "sweep_dir": study.sweep_dir,
        "objective": {
            "metrics": study.metrics,
            "directions": study.directions,
            "labels": study.objective_labels(),
            "concurrency": study.objective_concurrency,
            "across_levels": study.across_levels,
            "slo": study.slo,
            "slo_labels": study.slo_labels(),
        },
        "progress": {
            "trials_done": len([t for t in study.trials if t.status != "running"]),
            "trials_failed": n_failed,
            "trials_total": study.n_trials,
        },
        "trials": [trial_dict(t, study) for t in study.trials],
        "serving_metrics": serving_metrics(study),
        "best": None
        if best is None
        else {
            **trial_dict(best, study),
            "tied_with": [t.name for t in tied_with(study, best)],
        },
        "baseline": None if base is None else trial_dict(base, study),
        "gain": None if obj_gain is None else {**asdict(obj_gain), "change": obj_gain.change},
        "gains": [{**asdict(g), "change": g.change} for g in other_gains],
        "baseline_note": baseline_note(study),
        "pareto": [t.name for t in study_front(study)] if study.multi_objective else [],
        "confirmation": confirmation(study),
    }


def confirmed_summaries(study: StudyRecord) -> dict[str, Any]:
    """Mean, sd and 95 % interval of each configuration's confirmation runs."""
    from autotune.confirm.stats import summarize as summarize_runs

    return {k: summarize_runs(v) for k, v in study.confirmations.items() if v}


def confirmation(study: StudyRecord) -> dict[str, Any] | None:
    """The confirmation stage's verdict and per-configuration numbers (None: none ran)."""
    summaries = confirmed_summaries(study)
    if not summaries:
        return None

    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "verdict": study.tags.get("autotune.verdict"),
        "line": study.tags.get("autotune.verdict_line"),
        "configs": [
            {
                "key": k,
                "n": v.n,
                "mean": v.mean,
                "sd": num(v.sd),
                "ci": [num(v.ci_low), num(v.ci_high)],
            }
            for k, v in sorted(summaries.items(), key=lambda kv: (kv[0] != "defaults", kv[0]))
        ],
    }
