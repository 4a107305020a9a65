"""The end of a study: what it found, on the terminal and on the sweep run.

One rule picks the best trial for the terminal, the export and the report:
:func:`autotune.report.summary.chosen_trial`, applied to the study as recorded in
MLflow (:func:`autotune.report.records.load_study`), which is read once here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from autotune.objective import Objective
from autotune.report.records import StudyRecord, TrialRecord, load_study
from autotune.report.summary import chosen_trial, study_front
from autotune.study.team import StudyInfo
from autotune.tracking.progress import print_pareto, print_summary

log = logging.getLogger(__name__)


def summarize_study(
    cfg: DictConfig, info: StudyInfo, parent: Any, sweep_dir: Path | None
) -> StudyRecord:
    """Table and best trial (or Pareto front) on the terminal, summary on the sweep run,
    then the export of the chosen configuration and the figures."""
    client = parent.client
    study = load_study(client, info.parent_run_id)
    objective = Objective.from_config(cfg.objective)
    best = chosen_trial(study, OmegaConf.select(cfg, "export.pick", default=None))
    rows = [_row(t, study) for t in study.trials]
    if best is not None and best.feasible is False:
        log.warning("no trial met the SLOs %s; the closest is shown", dict(cfg.objective.slo))
    front = study_front(study) if study.multi_objective else []
    if front:
        parent.dict(
            {
                "objectives": [
                    f"{d}:{m}" for d, m in zip(objective.directions, objective.metrics, strict=True)
                ],
                "pareto_front": [
                    {
                        "trial": t.name,
                        "run_id": t.run_id,
                        "flags": t.flags_label,
                        "values": t.values,
                    }
                    for t in front
                ],
            },
            "pareto_front.json",
        )
        parent.metric("pareto_size", len(front))
    n_ok = sum(1 for t in study.trials if t.ok)
    summary = {"trials_total": len(rows), "trials_ok": n_ok, "trials_failed": len(rows) - n_ok}
    parent.metrics(summary)
    best_row = _row(best, study) if best is not None else None
    parent.dict(
        {"study": info.name, **summary, "trials": rows, "best": best_row}, "study_summary.json"
    )
    if best is not None and best.values:
        parent.metric("best_objective_final", best.values[0])
        parent.tag(**{"autotune.best_run_id": best.run_id, "autotune.best_trial": best.name})
    print_summary(f"Study {info.name}", rows, best_row, info.simulated)
    if front:
        print_pareto(objective, [_row(t, study) for t in front], info.simulated)
    # The best configurations and the defaults re-run, the verdict with its interval;
    # the export then takes the confirmed choice (the study is read again for it).
    from autotune.confirm.study import confirm_and_report
    from autotune.report import publish_study

    confirm_and_report(cfg, info, client, sweep_dir)
    publish_study(cfg, info, client, sweep_dir)
    return study


def _fmt(metrics: dict[str, float], name: str, spec: str) -> str:
    return format(metrics[name], spec) if name in metrics else ""


def _row(t: TrialRecord, study: StudyRecord) -> dict[str, Any]:
    """One trial as the terminal table and study_summary.json show it."""
    status = "ok" if t.ok else f"failed: {t.failure or t.status}"
    values = t.values or []
    objective = ", ".join(f"{v:.4g}" for v in values if v is not None)
    return {
        "trial": t.name,
        "status": status,
        "flags": t.flags_label if t.flags else "(defaults)",
        "objective": objective,
        "tput": _fmt(t.metrics, "output_throughput_tok_s", ".1f"),
        "ttft": _fmt(t.metrics, "ttft_p99_ms", ".1f"),
        "tpot": _fmt(t.metrics, "tpot_mean_ms", ".2f"),
        "run_id": t.run_id,
        "value": values[0] if values else None,
        "values": values,
        "ok": t.ok,
        "feasible": t.ok and t.feasible is not False,
    }
