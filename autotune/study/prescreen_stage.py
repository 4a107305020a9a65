"""The pre-screen inside a study: run it once before the first trial, record it on the
parent run, enqueue its best predictions, answer excluded proposals without deploying,
and stop following the enqueued predictions once the engine contradicts one.

Called by the Optuna sweeper (hydra_plugins/autotune_sweepers/sweepers.py); the
scoring and the plan are :mod:`autotune.study.prescreen`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from autotune.study.constraints import STARTUP_VIOLATION, penalty
from autotune.study.prescreen import (
    ARTIFACT,
    ENQUEUED_ATTR,
    EXCLUDED_ATTR,
    Plan,
    PrescreenError,
    run_prescreen,
)

log = logging.getLogger(__name__)

# Study user attribute: the plan's configurations were enqueued (not again on resume).
_ENQUEUED_STUDY_ATTR = "autotune_prescreen_enqueued"
# Trial user attribute of an enqueued configuration skipped without deploying it.
SKIPPED_ATTR = "autotune_prescreen_skipped"
_SHOWN = 15  # configurations listed per group in a dry run


def prepare(cfg: DictConfig, study: optuna.Study, params_conf: Sequence[str]) -> Plan | None:
    """The plan for ``study`` (None when ``search.prescreen=none``)."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    if cfg.search.get("prescreen", "none") == "none":
        return None
    space, fixed, _ = create_params_from_overrides(list(params_conf))
    for name in fixed:
        space.pop(name, None)
    directions = [d.name.lower() for d in study.directions]
    try:
        plan = run_prescreen(cfg, space, fixed, directions)
    except PrescreenError as e:
        raise SystemExit(f"Invalid study configuration: {e}") from None
    log.info("%s (%.1f s)", plan.summary(), plan.seconds)
    if cfg.dry_run:
        show(plan, directions)
    else:
        record(cfg, plan)
    if not study.user_attrs.get(_ENQUEUED_STUDY_ATTR):
        for key in plan.enqueue:
            study.enqueue_trial(plan.params(key), user_attrs={ENQUEUED_ATTR: True})
        study.set_user_attr(_ENQUEUED_STUDY_ATTR, len(plan.enqueue))
    return plan


def answer_excluded(plan: Plan | None, trial: optuna.Trial) -> bool:
    """Tell ``trial`` its predicted infeasibility if the plan excluded it (True)."""
    if plan is None or not plan.excluded:
        return False
    key = tuple(trial.params.get(name) for name in plan.space)
    reason = plan.excluded.get(key)
    if reason is None:
        return False
    prediction = plan.prediction(key)
    violation = STARTUP_VIOLATION if prediction.startup_failed else prediction.violation
    log.info("trial %d: excluded by the pre-screen (%s), asking again", trial.number, reason)
    trial.set_user_attr(EXCLUDED_ATTR, reason)
    trial.set_constraint("prescreen", violation)
    directions = [d.name.lower() for d in trial.study.directions]
    trial.study.tell(trial, values=penalty(directions, violation))
    return True


def answer_stale_enqueued(plan: Plan | None, trial: optuna.Trial) -> bool:
    """Skip an enqueued prediction (told FAIL, nothing deployed: True) once an earlier
    enqueued one measured infeasible where the simulator predicted it feasible.

    The enqueued configurations are the simulator's bets near the SLO bounds, where the
    optimum usually is; when the engine contradicts the first of them the simulator is
    wrong about that region (mis-calibrated memory, prefill or host cost), and every
    further bet would cost a deployment. FAIL, not PRUNED: the sampler learns nothing
    from a configuration it never measured. The sampler, with the exclusions and the
    measured constraints, takes over."""
    if plan is None or trial.user_attrs.get(ENQUEUED_ATTR) is not True:
        return False
    wrong = contradicted(plan, trial.study)
    if wrong is None:
        return False
    log.info(
        "trial %d: enqueued by the pre-screen, skipped: trial %d measured infeasible where "
        "the simulator predicted feasible; asking the sampler instead",
        trial.number,
        wrong,
    )
    trial.set_user_attr(SKIPPED_ATTR, f"trial {wrong} contradicted the pre-screen")
    trial.study.tell(trial, state=TrialState.FAIL)
    return True


def contradicted(plan: Plan, study: optuna.Study) -> int | None:
    """The first measured enqueued trial predicted feasible but infeasible on the
    engine (an SLO missed or a start-up failure), or None."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if t.user_attrs.get(ENQUEUED_ATTR) is not True or SKIPPED_ATTR in t.user_attrs:
            continue
        key = tuple(t.params.get(name) for name in plan.space)
        predicted = plan.by_key().get(key)
        if (
            predicted is not None
            and predicted.feasible
            and any(v > 0 for v in t.constraints.values())
        ):
            return t.number
    return None


def rows(plan: Plan) -> list[dict[str, Any]]:
    """The table artifact: one row per scored configuration, with the decision."""
    enqueued = set(plan.enqueue)
    out = []
    for p in plan.predictions:
        decision = (
            "enqueued" if p.key in enqueued else "excluded" if p.key in plan.excluded else "kept"
        )
        out.append(
            {
                **plan.params(p.key),
                "decision": decision,
                "reason": plan.excluded.get(p.key, ""),
                "predicted_value": p.values[0] if p.values else None,
                "predicted_raw": p.raw[0] if p.raw else None,
                "feasible": p.feasible,
                "violation": round(p.violation, 4),
                "failure": p.failure,
            }
        )
    return out


def record(cfg: DictConfig, plan: Plan) -> None:
    """The table artifact, summary metrics and the exclusion statement on the parent run."""
    from autotune.study.team import StudyInfo
    from autotune.tracking.runs import open_client

    try:
        info = StudyInfo.read(Path(cfg.hydra.sweep.dir))
    except (OSError, ValueError):
        log.warning("pre-screen: no study record in %s; not recorded", cfg.hydra.sweep.dir)
        return
    client = open_client(info.tracking_uri)
    reasons = plan.reasons()
    metrics = {
        "prescreen.scored": len(plan.predictions),
        "prescreen.excluded": len(plan.excluded),
        "prescreen.excluded_startup": reasons.get("start-up", 0),
        "prescreen.excluded_slo": reasons.get("slo", 0),
        "prescreen.excluded_no_score": reasons.get("no score", 0),
        "prescreen.enqueued": len(plan.enqueue),
        "prescreen.seconds": round(plan.seconds, 2),
    }
    for key, value in metrics.items():
        client.log_metric(info.parent_run_id, key, float(value))
    client.set_tag(info.parent_run_id, "autotune.prescreen", plan.summary())
    client.log_dict(info.parent_run_id, {"summary": plan.summary(), "rows": rows(plan)}, ARTIFACT)


def show(plan: Plan, directions: Sequence[str]) -> None:
    """A dry run's view: what the pre-screen kept (enqueued first) and dropped."""
    from rich.table import Table

    from autotune.tracking.progress import console

    table = Table(title=plan.summary(), show_lines=False)
    for name in plan.space:
        table.add_column(name.removeprefix("params."))
    table.add_column("predicted")
    table.add_column("decision")
    listed = rows(plan)
    kept = [r for r in listed if r["decision"] != "excluded"]
    kept.sort(key=lambda r: (r["decision"] != "enqueued", -(r["predicted_value"] or 0)))
    dropped = [r for r in listed if r["decision"] == "excluded"]
    for group in (kept[:_SHOWN], dropped[:_SHOWN]):
        for r in group:
            value = "-" if r["predicted_value"] is None else f"{r['predicted_value']:.4g}"
            decision = r["reason"] or r["decision"]
            table.add_row(*(str(r[n]) for n in plan.space), value, decision)
    console.print(table)
    console.print(
        f"kept {len(kept)} (first {min(len(kept), _SHOWN)} shown), dropped {len(dropped)} "
        f"(first {min(len(dropped), _SHOWN)} shown)",
        highlight=False,
    )


__all__ = [
    "answer_excluded",
    "answer_stale_enqueued",
    "contradicted",
    "prepare",
    "record",
    "rows",
    "show",
]
