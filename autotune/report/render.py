"""The study report as a terminal table, Markdown (for a pull request) or JSON.

All three render the same data: the dict :func:`autotune.report.summary.summarize`
returns (plus ``exports`` and ``figures`` the caller adds).

    print_report(summary, Console())
    text = markdown(summary)
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autotune.report.summary import label

COLUMNS = (
    ("trial", "trial"),
    ("status", "status"),
    ("SLO", "slo"),
    ("flags", "flags"),
    ("objective", "objective"),
    ("output tok/s", "output_throughput_tok_s"),
    ("TTFT p99 ms", "ttft_p99_ms"),
    ("TPOT mean ms", "tpot_mean_ms"),
    ("E2E p99 ms", "e2e_p99_ms"),
    ("errors", "error_rate"),
)
# objective=capacity (autotune.benchmark.capacity): shown when a trial has them.
CAPACITY_COLUMNS = (
    ("max concurrency under SLO", "capacity_concurrency"),
    ("output tok/s there", "capacity_output_throughput_tok_s"),
)


# Shown when the summary lists them in "serving_metrics" (before the error rate).
SERVING_COLUMNS = {
    "output_throughput_tok_s_per_gpu": ("tok/s per GPU", ".1f"),
    "goodput_req_s": ("goodput req/s", ".2f"),
    "cost_usd_per_mtok": ("USD / 1M tok", ".3f"),
}


def columns(s: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The table's (heading, key) pairs for this study."""
    extra = tuple((SERVING_COLUMNS[m][0], m) for m in s.get("serving_metrics", []))
    # objective=capacity's columns when the study measured it.
    if any(t.get("capacity_concurrency") is not None for t in s["trials"]):
        extra += CAPACITY_COLUMNS
    return (*COLUMNS[:-1], *extra, COLUMNS[-1])


def _num(v: Any, digits: str = ".1f") -> str:
    return "" if v is None else format(v, digits)


def _flags(flags: dict[str, str], sep: str = " ") -> str:
    return sep.join(f"{k}={v}" for k, v in flags.items()) or "(engine defaults)"


def row(t: dict[str, Any], best: str | None, flag_sep: str = " ") -> dict[str, str]:
    """One table row, as text."""
    name = t["name"] + (" ★" if t["name"] == best else "")
    status = "ok" if t["status"] == "ok" else f"{t['status']}: {t['failure'] or '?'}"
    if t["slo"] == "FAIL":
        objective = "missed SLO"  # the sweeper's penalty value means nothing to a reader
    else:
        objective = ", ".join(f"{v:.4g}" for v in t["objective"]) if t["objective"] else ""
    return {
        "trial": name,
        "status": status,
        "slo": t["slo"],
        "flags": _flags(t["flags"], flag_sep),
        "objective": objective,
        "output_throughput_tok_s": _num(t["output_throughput_tok_s"]),
        "ttft_p99_ms": _num(t["ttft_p99_ms"]),
        "tpot_mean_ms": _num(t["tpot_mean_ms"], ".2f"),
        "e2e_p99_ms": _num(t["e2e_p99_ms"]),
        "error_rate": _num(t["error_rate"], ".1%"),
        "capacity_concurrency": _num(t.get("capacity_concurrency"), ".0f"),
        "capacity_output_throughput_tok_s": _num(t.get("capacity_output_throughput_tok_s")),
        **{m: _num(t.get(m), digits) for m, (_, digits) in SERVING_COLUMNS.items()},
    }


def banner(s: dict[str, Any]) -> str | None:
    if not s["simulated"]:
        return None
    return (
        f"SIMULATED results: measured on the simulated SGLang engine ({s['target']}), "
        "not on hardware. Confirm the best configuration on a real engine."
    )


def objective_line(s: dict[str, Any]) -> str:
    o = s["objective"]
    terms = ", ".join(f"{d} {lb}" for lb, d in zip(o["labels"], o["directions"], strict=True))
    slo = ", ".join(o["slo_labels"].values()) or "none"
    return f"Objective: {terms}; SLOs: {slo}"


def progress_line(s: dict[str, Any]) -> str:
    p = s["progress"]
    total = p["trials_total"] if p["trials_total"] is not None else "?"
    return f"Trials: {p['trials_done']} done, {p['trials_failed']} failed, of {total} planned ({s['status']})"


def confirmation_lines(s: dict[str, Any]) -> list[str]:
    """The verdict and each confirmed configuration's mean with its interval."""
    c = s.get("confirmation")
    if not c:
        return []
    lines = [f"Confirmed ({c['verdict']}): {c['line']}" if c["line"] else "Confirmation runs:"]
    for row in c["configs"]:
        low, high = row["ci"]
        ci = f"95 % CI {low:.4g} … {high:.4g}" if low is not None else "one run: no interval"
        lines.append(f"  {row['key']}: mean {row['mean']:.4g} ({ci}, {row['n']} runs)")
    return lines


def best_lines(s: dict[str, Any]) -> list[str]:
    """Best trial, ties, gain over the baseline: plain sentences."""
    best = s["best"]
    if best is None:
        return [
            "No trial succeeded: see the failure classes above and in MLflow (autotune.failure)."
        ]
    o = s["objective"]
    values = ", ".join(
        f"{lb} {v:.4g}" for lb, v in zip(o["labels"], best["objective"] or [], strict=False)
    )
    kind = "Chosen trial (Pareto-optimal)" if s["pareto"] else "Best trial"
    lines = [
        f"{kind}: {best['name']}  {_flags(best['flags'])}  —  {values}  (run {best['run_id']})"
    ]
    if best["tied_with"]:
        lines.append(
            f"  {len(best['tied_with'])} other trial(s) tie on the objective "
            f"({', '.join(best['tied_with'])}): at this workload those flag values made no "
            "measurable difference; ties go to the lower p99 TTFT, then the most recent trial."
        )
    if s["pareto"]:
        lines.append(f"  Pareto-optimal trials: {', '.join(s['pareto'])}")
    if s["baseline_note"]:
        lines.append(s["baseline_note"])
    base = s["baseline"]
    if s["gain"] is not None and base is not None:
        g = s["gain"]
        lines.append(
            f"Gain over the baseline {base['name']} (engine defaults): "
            f"{g['change'] * 100:+.1f} % on the objective ({o['labels'][0]} "
            f"{g['baseline']:.4g} → {g['best']:.4g})"
        )
    lines += confirmation_lines(s)
    if s["gains"] and base is not None:
        if s["gain"] is None:
            lines.append(f"Against the baseline {base['name']} (engine defaults):")
        if o["concurrency"] is not None:
            lines.append("  all concurrency levels pooled:")
        for g in s["gains"]:
            pct = g["change"] * 100
            word = "better" if pct > 0.05 else "worse" if pct < -0.05 else "same"
            lines.append(
                f"  {label(g['metric'])}: {g['baseline']:.4g} → {g['best']:.4g} ({abs(pct):.1f} % {word})"
            )
    return lines


def artifact_lines(s: dict[str, Any]) -> list[str]:
    lines = []
    for e in s.get("exports", []):
        lines.append(f"Best configuration: {e['directory']}  [{', '.join(e['files'])}]")
        lines.append(f"  on the sweep run under {e['artifact_path']}/; reproduce: {e['reproduce']}")
    if s.get("figures"):
        lines.append("Figures: " + ", ".join(s["figures"]) + "  (and figures/ on the sweep run)")
    return lines


def print_report(s: dict[str, Any], console: Console) -> None:
    """The terminal report: banner, table of trials, best trial and gain."""
    if (b := banner(s)) is not None:
        console.print(f"[bold white on magenta] {escape(b)} [/]")
    console.print(
        f"[bold]Study {escape(s['study'])}[/]  (MLflow run {s['run_id']}, experiment "
        f"{escape(s['experiment'])})",
        highlight=False,
    )
    console.print(escape(objective_line(s)), highlight=False)
    console.print(escape(progress_line(s)), highlight=False)
    title = "Trials" + (" — SIMULATED" if s["simulated"] else "")
    table = Table(title=title, title_justify="left")
    widest = max((len(f"{k}={v}") for t in s["trials"] for k, v in t["flags"].items()), default=17)
    cols = columns(s)
    for head, key in cols:
        table.add_column(
            head,
            justify="left" if key in ("status", "flags", "slo") else "right",
            min_width=widest if key == "flags" else None,
            overflow="fold",
        )
    best = s["best"]["name"] if s["best"] else None
    for t in s["trials"]:
        r = row(t, best, flag_sep="\n")  # one flag per line: long flag sets stay readable
        style = "red" if t["status"] != "ok" else "bold green" if t["name"] == best else None
        table.add_row(*(escape(r[k]) for _, k in cols), style=style)
    console.print(table)
    for line in best_lines(s):
        console.print(escape(line), highlight=False)
    for line in artifact_lines(s):
        console.print(escape(line), highlight=False)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(s: dict[str, Any], images: bool = True) -> str:
    """The report as Markdown (a pull request, docs; ``images=False``: the MLflow run page)."""
    out = [f"## autotune study `{s['study']}`", ""]
    if (b := banner(s)) is not None:
        out += [f"> **{b}**", ""]
    out += [
        f"MLflow run `{s['run_id']}` (experiment `{s['experiment']}`), {s['target']}.",
        "",
        objective_line(s) + ".  ",
        progress_line(s) + ".",
        "",
    ]
    best = s["best"]["name"] if s["best"] else None
    cols = columns(s)
    out.append("| " + " | ".join(h for h, _ in cols) + " |")
    out.append(
        "|"
        + "|".join("---" if k in ("status", "flags", "slo", "trial") else "---:" for _, k in cols)
        + "|"
    )
    for t in s["trials"]:
        r = row(t, best)
        cells = [_md_cell(r[k]) for _, k in cols]
        cells[3] = f"`{cells[3]}`"
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out += [
        f"{line}  " if not line.startswith("  ") else f"- {line.strip()}" for line in best_lines(s)
    ]
    out.append("")
    for e in s.get("exports", []):
        out += [
            f"Best configuration `{e['directory']}` ({', '.join(f'`{f}`' for f in e['files'])}), "
            f"on the sweep run under `{e['artifact_path']}/`. Reproduce:",
            "",
            f"    {e['reproduce']}",
            "",
        ]
    for f in s.get("figures", []) if images else []:
        out.append(f"![{f.rsplit('/', 1)[-1]}]({f})")
    if s.get("figures") and not images:
        out.append("Figures: `figures/` in this run's artifacts.")
    return "\n".join(out).rstrip() + "\n"


def as_json(s: dict[str, Any]) -> str:
    return json.dumps(s, indent=2, default=str) + "\n"
