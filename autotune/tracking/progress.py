"""Terminal output: live progress and logs on stderr, results on stdout.

``console`` (stderr) carries the live line per trial and every log record (the
logging handler in conf/hydra/ is :func:`rich_handler`, bound to this console, so
the two interleave cleanly). ``results`` (stdout) carries what a study produces:
the table of trials and the best trial, so ``> results.txt`` keeps just those.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from autotune.trial.spec import TrialObserver, TrialResult, TrialSpec

console = Console(stderr=True)
results = Console()
for _c in (console, results):
    if not _c.is_terminal:
        # Logs and CI capture: rich would fold tables to 80 columns.
        _c.width = max(_c.width, 160)


def rich_handler(**kwargs: Any) -> RichHandler:
    """The logging handler of conf/hydra/*_logging: rich, on the progress console."""
    return RichHandler(console=console, **kwargs)


class TrialProgress(TrialObserver):
    """``trial 2/3  mem-fraction-static=0.8  ·  benchmarking c32``"""

    def __init__(
        self,
        index: int,
        total: int | None,
        params: dict[str, Any],
        simulated: bool,
        label: str | None = None,
    ) -> None:
        self.label = label or (f"trial {index + 1}/{total}" if total else f"trial {index + 1}")
        self.flags = " ".join(f"{k}={v}" for k, v in params.items()) or "(engine defaults)"
        self.tag = " [magenta](simulated)[/]" if simulated else ""
        self._status: Status | None = None

    def started(self, spec: TrialSpec, launcher: Any, rendered: dict[str, str]) -> None:
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

    def finished(self, spec: TrialSpec, result: TrialResult) -> None:
        score, elapsed_s = result.value, result.elapsed_s
        failure = result.failure.value if result.failure else None
        if self._status is not None:
            self._status.stop()
        if failure:
            outcome = f"[red]failed: {escape(failure)}[/]"
        elif result.pruned:
            outcome = f"[yellow]pruned after c{result.levels[-1]}[/]"
            if result.score is not None and not result.by_pruner:
                outcome += f" [yellow](infeasible, objective {result.score.values[0]:.4g})[/]"
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
    results.print(table)
    if best is None and any(r.get("ok") for r in rows):
        pass  # a multi-objective study: its result is the Pareto front, printed next
    elif best is None:
        results.print(
            "[red]No trial succeeded.[/] See the failure tags in MLflow and docs/troubleshooting.md."
        )
    else:
        results.print(
            f"[bold green]Best trial:[/] {escape(str(best['trial']))}  {escape(best['flags'])}  "
            f"objective={best['objective']}  (MLflow run {best['run_id']})",
            highlight=False,
        )


def print_pareto(objective, front: list[dict], simulated: bool) -> None:
    """The Pareto-optimal trials of a multi-objective study."""
    title = "Pareto front" + (" — SIMULATED results" if simulated else "")
    table = Table(title=title, title_justify="left")
    table.add_column("trial")
    table.add_column("flags")
    for d, m in zip(objective.directions, objective.metrics, strict=True):
        table.add_column(f"{m} ({d})", justify="right")
    for r in sorted(front, key=lambda r: r["values"][0]):
        table.add_row(r["trial"], escape(r["flags"]), *[f"{v:.4g}" for v in r["values"]])
    results.print(table)
