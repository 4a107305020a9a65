"""Results people can act on: the study report, its figures, the best-config export.

    python -m autotune.report                       # the newest study: table, best, gain, figures
    python -m autotune.report --run <id> --format md
    python -m autotune.report --compare RUN_A RUN_B

At the end of every study the sweep driver calls :func:`publish_study`, which
exports the best configuration (:mod:`autotune.report.export`) and draws the figures
(:mod:`autotune.report.figures`), on the sweep run and next to the sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from autotune.report.records import StudyNotFound, StudyRecord, TrialRecord, find_sweep, load_study
from autotune.report.summary import best_trial, chosen_trial, summarize

log = logging.getLogger(__name__)

__all__ = [
    "StudyNotFound",
    "StudyRecord",
    "TrialRecord",
    "best_trial",
    "build_report",
    "chosen_trial",
    "find_sweep",
    "load_study",
    "publish_study",
    "summarize",
]

REPORT_FILE = "report.md"
# The run's description in the MLflow UI (rendered as Markdown on the run page).
NOTE_TAG = "mlflow.note.content"


# MLflow cuts longer tag values itself, mid-line and with a warning on the terminal.
NOTE_MAX = 8000


def note_text(report: str, limit: int = NOTE_MAX) -> str:
    """The report as a run description: whole lines, cut to fit, pointing to the file.

    >>> note_text("a\\nbb\\nccc", limit=60)
    'a\\nbb\\nccc'
    >>> cut = note_text("line one\\nline two\\n" * 40, limit=100)
    >>> print(cut)
    line one
    line two
    line one
    <BLANKLINE>
    *(cut here: the whole report is report.md in this run's artifacts)*
    >>> len(cut) <= 100
    True
    """
    if len(report) <= limit:
        return report
    tail = f"\n\n*(cut here: the whole report is {REPORT_FILE} in this run's artifacts)*"
    head = report[: limit - len(tail)]
    return head[: head.rfind("\n")] + tail if "\n" in head else head + tail


def existing_exports(client: Any, study: StudyRecord) -> list[dict[str, Any]]:
    """The best-config exports already on the sweep run (``best/``), as report data."""
    from autotune.report.export import EXPORT_DIR, PARAMS_FILE

    try:
        arts = client.list_artifacts(study.run_id, EXPORT_DIR)
    except Exception:
        return []
    files = [Path(a.path).name for a in arts if not a.is_dir]
    if not files:
        return []
    local = Path(study.sweep_dir) / EXPORT_DIR if study.sweep_dir else None
    directory = str(local) if local is not None and local.is_dir() else f"<download {EXPORT_DIR}/>"
    return [
        {
            "directory": directory,
            "artifact_path": EXPORT_DIR,
            "files": files,
            "reproduce": f"python -m autotune --config-dir {directory} --config-name "
            f"{Path(PARAMS_FILE).stem}",
        }
    ]


def figures_dir_for(study: StudyRecord, fallback: Path | None = None) -> Path:
    """``<sweep dir>/figures`` when the sweep directory is on this machine, else ``fallback``."""
    if study.sweep_dir and Path(study.sweep_dir).is_dir():
        return Path(study.sweep_dir) / "figures"
    return fallback or Path.cwd() / "autotune-report" / study.name / "figures"


def draw_figures(client: Any, study: StudyRecord, out_dir: Path, attach: bool = True) -> list[Path]:
    """Save the study's figures as PNGs and attach them to the sweep run under ``figures/``."""
    from autotune.report.figures import log_figures, save_figures, study_figures

    paths = save_figures(study_figures(study), out_dir)
    if attach:
        log_figures(client, study.run_id, paths)
    return paths


def build_report(
    client: Any,
    study: StudyRecord,
    figures_dir: Path | None = None,
    figures: bool = True,
    attach: bool = True,
    rule: str | None = None,
) -> dict[str, Any]:
    """The report's data; draws (and attaches) the figures on the way."""
    summary = summarize(study, rule)
    summary["exports"] = existing_exports(client, study)
    summary["figures"] = []
    if figures:
        try:
            paths = draw_figures(client, study, figures_dir or figures_dir_for(study), attach)
            summary["figures"] = [str(p) for p in paths]
        except Exception as e:  # figures are a bonus: the table must still print
            log.warning("could not draw the figures: %s: %s", type(e).__name__, e)
    if attach:
        from autotune.report.render import markdown

        try:  # the report on the sweep run's page in the MLflow UI
            text = markdown(summary, images=False)
            client.set_tag(study.run_id, NOTE_TAG, note_text(text))
            client.log_text(study.run_id, text, REPORT_FILE)
        except Exception as e:
            log.warning("could not attach the report to run %s: %s", study.run_id, e)
    return summary


def publish_study(
    cfg: Any, info: Any, client: Any, sweep_dir: Path | None, record: StudyRecord | None = None
) -> dict[str, Any] | None:
    """End of a study: export the best configuration, draw the figures, attach both.

    Called once by the sweep driver after the study table is printed
    (:func:`autotune.study.summary.summarize_study`, which passes the study it read as
    ``record``). Never raises: a study's results stay recorded whatever goes wrong
    here; problems are logged.

        publish_study(cfg, info, client, sweep_dir, record=study)
    """
    from autotune.report.export import describe, export_study
    from autotune.tracking.progress import results

    exports, study = [], record
    try:  # one read of the study for both: it is the slow part of a long study's end
        study = study or load_study(client, info.parent_run_id)
        exports = export_study(cfg, info, client, info.parent_run_id, sweep_dir, record=study)
    except Exception:
        log.exception("could not export the best configuration")
    try:
        study = study or load_study(client, info.parent_run_id)
        out = Path(sweep_dir) / "figures" if sweep_dir is not None else None
        summary = build_report(client, study, figures_dir=out)
    except Exception:
        log.exception("could not draw the study's figures")
        summary = None
    if exports:
        sim = " [magenta](SIMULATED: confirm on a real engine)[/]" if info.simulated else ""
        results.print(f"[bold]Best configuration exported[/]{sim}:", highlight=False)
        results.print(describe(exports), highlight=False, markup=False)
    if summary and summary["figures"]:
        results.print(
            "Figures: " + ", ".join(summary["figures"]) + "; report: python -m autotune.report",
            highlight=False,
            markup=False,
        )
    return summary
