"""``python -m autotune.report``: the report of a study (default: the newest one).

    python -m autotune.report                                   # table, best trial, gain, figures
    python -m autotune.report --run <sweep run id or study name> --format md > report.md
    python -m autotune.report tracking.uri=sqlite:///$PWD/mlflow.db --format json
    python -m autotune.report --compare RUN_A RUN_B             # two studies side by side

The tracking store is ``--tracking-uri``, else a ``tracking.uri=...`` argument (as the
tuner takes it), else ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in this directory.
Exit status: 0 with a report, 1 when there is no study (or no store), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

log = logging.getLogger("autotune.report")

EXIT_NOT_FOUND = 1
# Hydra-style arguments the report understands, mapped to its options.
OVERRIDES = {"tracking.uri": "tracking_uri", "tracking.experiment": "experiment"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m autotune.report",
        description="Report of an autotune study: trials, best trial, gain over the baseline, figures.",
        epilog="Exit status: 0 report printed, 1 no study or no tracking store, 2 bad usage.",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="tuner-style settings: tracking.uri=..., tracking.experiment=...",
    )
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, ./mlflow.db)"
    )
    p.add_argument("--experiment", help="MLflow experiment to look in (default: all)")
    p.add_argument("--run", help="sweep run id or study name (default: the newest study)")
    p.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="two studies side by side"
    )
    p.add_argument("--format", choices=("table", "md", "json"), default="table")
    p.add_argument("--no-figures", action="store_true", help="do not draw or attach figures")
    p.add_argument(
        "--figures-dir",
        type=Path,
        help="where to save the PNGs (default: <sweep dir>/figures, else ./autotune-report/<study>/figures)",
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="(re)write the best-config export (best/) for the study first",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="change nothing in the tracking store (no export, figures saved locally only)",
    )
    p.add_argument(
        "--pick",
        metavar="RULE",
        help="multi-objective studies: max:<metric> or min:<metric> among the Pareto-optimal trials",
    )
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+")
        if not sep or key not in OVERRIDES:
            p.error(f"unknown argument {item!r}: use {', '.join(k + '=...' for k in OVERRIDES)}")
        if getattr(args, OVERRIDES[key]) is None:  # an explicit --option wins
            setattr(args, OVERRIDES[key], value)
    return args


def open_store(uri_arg: str | None) -> tuple[Any, str]:
    """A client for the store, without creating one that does not exist."""
    from mlflow.tracking import MlflowClient

    from autotune.tracking import resolve_uri

    uri = resolve_uri(uri_arg, os.getcwd())
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.is_file():
            raise FileNotFoundError(
                f"no tracking store at {path} (from {uri}). Run a study first "
                "(python -m autotune), or point to its store with tracking.uri=... / "
                "--tracking-uri / MLFLOW_TRACKING_URI."
            )
    return MlflowClient(tracking_uri=uri), uri


def _context(client: Any, study: Any, summary: dict[str, Any]) -> dict[str, str]:
    """Engine image, model and command line of a study (for --compare)."""
    from autotune.report.export import trial_config

    ctx = {
        "model": study.params.get("model", "-"),
        "command": study.tags.get("autotune.command", "-") or "-",
    }
    run_id = summary["best"]["run_id"] if summary["best"] else None
    run_id = run_id or next((t.run_id for t in study.trials), None)
    if run_id:
        try:
            cfg = trial_config(client, run_id)
            rt = cfg.get("runtime", {})
            ctx["image"] = f"{rt.get('name')} {rt.get('image')}:{rt.get('image_tag')}"
        except Exception as e:
            log.debug("no config.yaml for %s: %s", run_id, e)
    return ctx


def run(args: argparse.Namespace, out: Console) -> int:
    from autotune.report import (
        build_report,
        existing_exports,
        figures_dir_for,
        find_sweep,
        load_study,
    )
    from autotune.report.render import as_json, markdown, print_report

    client, uri = open_store(args.tracking_uri)
    if args.compare:
        return compare(client, args, out)
    sweep = find_sweep(client, args.experiment, args.run)
    study = load_study(client, sweep.info.run_id)
    # A study from before the export existed (or whose export failed) gets one now.
    missing = not existing_exports(client, study) and study.status != "running"
    if not args.read_only and (args.export or missing):
        from autotune.report.export import composer_for_sweep, describe, export_record

        composer, choices = composer_for_sweep(study.sweep_dir)
        target = figures_dir_for(study, args.figures_dir).parent
        exports = export_record(client, study, target, composer, choices, args.pick)
        if exports:
            Console(stderr=True).print(
                describe(exports), markup=False, highlight=False, soft_wrap=True
            )
    summary = build_report(
        client,
        study,
        figures_dir=args.figures_dir,
        figures=not args.no_figures,
        attach=not args.read_only,
        rule=args.pick,
    )
    if args.format == "json":
        out.file.write(as_json(summary))
    elif args.format == "md":
        out.file.write(markdown(summary))
    else:
        print_report(summary, out)
    return 0


def compare(client: Any, args: argparse.Namespace, out: Console) -> int:
    import json

    from autotune.report import find_sweep, load_study, summarize
    from autotune.report.compare import compare_markdown, compare_rows, print_compare

    studies, summaries, contexts = [], [], []
    for ref in args.compare:
        study = load_study(client, find_sweep(client, args.experiment, ref).info.run_id)
        s = summarize(study, args.pick)
        studies.append(study)
        summaries.append(s)
        contexts.append(_context(client, study, s))
    rows = compare_rows(summaries[0], summaries[1], contexts[0], contexts[1])
    simulated = any(s.simulated for s in studies)
    if args.format == "json":
        out.file.write(
            json.dumps({"a": summaries[0], "b": summaries[1], "rows": rows}, indent=2, default=str)
            + "\n"
        )
    elif args.format == "md":
        out.file.write(compare_markdown(rows, simulated))
    else:
        print_compare(rows, out, simulated)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    err = Console(stderr=True)
    out = Console()
    if not out.is_terminal:
        out.width = max(out.width, 160)  # files and CI logs: do not fold the table
    from autotune.report.records import StudyNotFound

    try:
        return run(args, out)
    except (StudyNotFound, FileNotFoundError) as e:
        err.print(f"[bold red]No study to report:[/] {e}", highlight=False)
        return EXIT_NOT_FOUND
    except Exception as e:
        from autotune.tracking import TrackingError

        if isinstance(e, TrackingError) or type(e).__module__.startswith(("mlflow", "sqlalchemy")):
            err.print(
                f"[bold red]Tracking store unavailable:[/] {type(e).__name__}: {e}", highlight=False
            )
            return EXIT_NOT_FOUND
        raise


if __name__ == "__main__":
    sys.exit(main())
