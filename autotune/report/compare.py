"""Two studies side by side (e.g. two SGLang versions via ``runtime.image_tag``).

    rows = compare_rows(summary_a, summary_b, context_a, context_b)
    print_compare(rows, names, Console())

``context`` holds what the summaries do not: the engine image and the command line,
read from the studies' best trials and sweep runs by the caller.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autotune.report.summary import KEY_METRICS, label


def _flags(best: dict[str, Any] | None) -> str:
    if best is None:
        return "-"
    return " ".join(f"{k}={v}" for k, v in best["flags"].items()) or "(engine defaults)"


def _delta(a: float | None, b: float | None, direction: str | None) -> str:
    if a is None or b is None or a == 0:
        return ""
    rel = (b - a) / abs(a) * 100
    if direction is None:
        return f"{rel:+.1f} %"
    better = rel > 0 if direction == "maximize" else rel < 0
    word = "better" if better and abs(rel) >= 0.05 else "worse" if abs(rel) >= 0.05 else "same"
    return f"{rel:+.1f} % ({word})"


def compare_rows(
    a: dict[str, Any], b: dict[str, Any], ctx_a: dict[str, str], ctx_b: dict[str, str]
) -> list[dict[str, str]]:
    """Rows of (what, A, B, change B vs A)."""

    def text(name: str, va: Any, vb: Any, change: str = "") -> dict[str, str]:
        return {"what": name, "a": str(va), "b": str(vb), "change": change}

    rows = [
        text("study", a["study"], b["study"]),
        text("sweep run", a["run_id"], b["run_id"]),
        text("target", a["target"], b["target"]),
        text("engine image", ctx_a.get("image", "-"), ctx_b.get("image", "-")),
        text("model", ctx_a.get("model", "-"), ctx_b.get("model", "-")),
        text("command", ctx_a.get("command", "-"), ctx_b.get("command", "-")),
        text(
            "trials ok / failed",
            f"{a['progress']['trials_done'] - a['progress']['trials_failed']} / {a['progress']['trials_failed']}",
            f"{b['progress']['trials_done'] - b['progress']['trials_failed']} / {b['progress']['trials_failed']}",
        ),
        text(
            "best trial",
            a["best"]["name"] if a["best"] else "-",
            b["best"]["name"] if b["best"] else "-",
        ),
        text("best flags", _flags(a["best"]), _flags(b["best"])),
    ]
    same_objective = a["objective"] == b["objective"]
    if a["best"] and b["best"] and same_objective:
        for i, (lb, d) in enumerate(
            zip(a["objective"]["labels"], a["objective"]["directions"], strict=True)
        ):
            va, vb = a["best"]["objective"][i], b["best"]["objective"][i]
            rows.append(text(f"objective: {lb}", f"{va:.4g}", f"{vb:.4g}", _delta(va, vb, d)))
    elif not same_objective:
        rows.append(
            text("objective", json.dumps(a["objective"]), json.dumps(b["objective"]), "differs")
        )
    for m, d in KEY_METRICS.items():
        va = a["best"].get(m) if a["best"] else None
        vb = b["best"].get(m) if b["best"] else None
        rows.append(
            text(
                f"best: {label(m)}",
                "-" if va is None else f"{va:.4g}",
                "-" if vb is None else f"{vb:.4g}",
                _delta(va, vb, d),
            )
        )

    def gain(s: dict[str, Any]) -> str:
        return "-" if s["gain"] is None else f"{s['gain']['change'] * 100:+.1f} %"

    rows.append(text("gain over own baseline", gain(a), gain(b)))
    sim = [s["study"] for s in (a, b) if s["simulated"]]
    if sim:
        rows.append(
            text("SIMULATED", "yes" if a["simulated"] else "no", "yes" if b["simulated"] else "no")
        )
    return rows


def print_compare(rows: list[dict[str, str]], console: Console, simulated: bool) -> None:
    if simulated:
        console.print(
            "[bold white on magenta] SIMULATED results in this comparison (see the last row) [/]"
        )
    table = Table(title="Study comparison: B against A", title_justify="left")
    for head in ("", "A", "B", "B vs A"):
        table.add_column(head)
    for r in rows:
        table.add_row(*(escape(r[k]) for k in ("what", "a", "b", "change")))
    console.print(table)


def compare_markdown(rows: list[dict[str, str]], simulated: bool) -> str:
    out = ["## autotune: study comparison (B against A)", ""]
    if simulated:
        out += ["> **SIMULATED results in this comparison** (see the last row).", ""]
    out += ["| | A | B | B vs A |", "|---|---|---|---|"]
    for r in rows:
        cells = [r[k].replace("|", "\\|") for k in ("what", "a", "b", "change")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
