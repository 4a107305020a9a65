"""Terminal progress: one live line per trial, one summary line when it ends.

Uses rich's shared console, so log records rendered by rich's handler interleave
cleanly with the live line.
"""

from __future__ import annotations

import time

from rich import get_console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

# The shared console: rich.logging.RichHandler (conf/hydra/job_logging) prints to it too.
console = get_console()
if not console.is_terminal:
    # Logs and CI capture: rich would fold tables to 80 columns.
    console.width = max(console.width, 160)


class TrialProgress:
    """``trial 2/3  mem-fraction-static=0.8  ·  benchmarking c32``"""

    def __init__(self, index: int, total: int | None, flags: str, simulated: bool) -> None:
        self.label = f"trial {index + 1}/{total}" if total else f"trial {index + 1}"
        self.flags = flags
        self.tag = " [magenta](simulated)[/]" if simulated else ""
        self.t0 = time.monotonic()
        self._status: Status | None = None
        if console.is_terminal:
            self._status = console.status(self._text("deploying"))
            self._status.start()
        else:
            console.print(self._text("deploying"), highlight=False)

    def _text(self, phase: str) -> str:
        return f"[bold]{self.label}[/]{self.tag}  {escape(self.flags)}  ·  [cyan]{escape(phase)}[/]"

    def phase(self, phase: str) -> None:
        if self._status is not None:
            self._status.update(self._text(phase))
        elif phase.startswith(("benchmarking", "ready")):
            console.print(self._text(phase), highlight=False)

    def finish(self, score, failure: str | None, elapsed_s: float) -> None:
        if self._status is not None:
            self._status.stop()
        if failure:
            outcome = f"[red]failed: {escape(failure)}[/]"
        elif isinstance(score, list):
            outcome = "[green]objective " + ", ".join(f"{v:.4g}" for v in score) + "[/]"
        elif score is not None:
            outcome = f"[green]objective {score:.4g}[/]"
        else:
            outcome = "[yellow]no score[/]"
        console.print(
            f"[bold]{self.label}[/]{self.tag}  {escape(self.flags)}  ·  {outcome}  ({elapsed_s:.1f} s)",
            highlight=False,
        )


def print_summary(title: str, rows: list[dict], best: dict | None, simulated: bool) -> None:
    """The study's table of trials and its best trial."""
    table = Table(title=title + (" — SIMULATED results" if simulated else ""), title_justify="left")
    for col in (
        "trial",
        "status",
        "flags",
        "objective",
        "output tok/s",
        "TTFT p99 ms",
        "TPOT mean ms",
    ):
        table.add_column(col, justify="right" if col not in ("status", "flags") else "left")
    for r in rows:
        table.add_row(
            *[
                escape(str(r.get(k, "")))
                for k in ("trial", "status", "flags", "objective", "tput", "ttft", "tpot")
            ]
        )
    console.print(table)
    if best is None:
        console.print(
            "[red]No trial succeeded.[/] See the failure tags in MLflow and docs/troubleshooting.md."
        )
    else:
        console.print(
            f"[bold green]Best trial:[/] {escape(str(best['trial']))}  {escape(best['flags'])}  "
            f"objective={best['objective']}  (MLflow run {best['run_id']})",
            highlight=False,
        )
