"""A preflight report on the terminal (a rich table) or as JSON."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from autotune.doctor.result import Report, Status

STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def table(report: Report) -> Table:
    t = Table(title=f"autotune doctor: deploy={report.target}", title_justify="left")
    t.add_column("check", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("verdict")
    t.add_column("fix")
    for c in report.checks:
        t.add_row(
            Text(c.name), Text(str(c.status), style=STYLE[c.status]), Text(c.verdict), Text(c.fix)
        )
    return t


def print_report(report: Report, console: Console) -> None:
    console.print(table(report))
    if report.ok:
        warned = sum(c.status is Status.WARN for c in report.checks)
        extra = f" ({warned} warning(s))" if warned else ""
        console.print(f"[green]Ready to tune{extra}[/] in {report.seconds:.1f} s.", highlight=False)
    else:
        console.print(
            f"[bold red]{len(report.blocking)} blocking problem(s)[/]: a study would stop before deploying.",
            highlight=False,
        )


def to_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"
