"""Study figures: optimisation history, Pareto front, latency/throughput vs concurrency.

Each builder takes a :class:`~autotune.report.records.StudyRecord` and returns a
Matplotlib ``Figure`` made without pyplot (no global state, no display needed, the
Agg canvas). Every figure carries a title, axis labels with units and a legend, and a
"SIMULATED" banner when the study ran on the simulated engine, so that a PNG read
out of context (the MLflow UI, a pull request) says what it shows.

    figs = study_figures(study)            # {"history.png": Figure, "pareto.png": ..., ...}
    paths = save_figures(figs, sweep_dir / "figures")
    log_figures(client, study.run_id, paths)   # artifacts figures/*.png on the sweep run
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from autotune.report.records import StudyRecord, TrialRecord
from autotune.report.summary import (
    THROUGHPUT,
    TTFT_P99,
    best_trial,
    chosen_trial,
    confirmed_summaries,
    label,
    pareto_front,
    serving_metrics,
    study_front,
)

log = logging.getLogger(__name__)

FIGURES_DIR = "figures"
BANNER = "SIMULATED"
# Colours that stay distinct for colour-blind readers (Okabe-Ito).
OK, INFEASIBLE, FAILED, BEST, BASE, LINE = (
    "#0072B2",
    "#E69F00",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#000000",
)


def _new_figure(study: StudyRecord, title: str, ncols: int = 1) -> tuple[Figure, list[Any]]:
    width = 8.5 if ncols == 1 else max(12.0, 5.0 * ncols)
    fig = Figure(figsize=(width, 5.2), dpi=110, layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        # Never an offset axis (+1.35e3): it makes run-to-run noise look like a win.
        ax.ticklabel_format(useOffset=False, style="plain")
    suffix = " — SIMULATED engine" if study.simulated else ""
    fig.suptitle(f"{title}{suffix}\nstudy {study.name}", fontsize=11)
    if study.simulated:
        banner = fig.text(
            0.995,
            0.995,
            BANNER,
            ha="right",
            va="top",
            fontsize=12,
            fontweight="bold",
            color="white",
            bbox={"boxstyle": "round", "facecolor": "#7B2D8E", "edgecolor": "none"},
        )
        banner.set_gid("simulated-banner")
    return fig, axes


def _x(t: TrialRecord, i: int) -> int:
    return t.index if t.index >= 0 else i


def _strip(ax: Any, xs: list[int], marker: str, color: str, name: str, gid: str) -> None:
    """Trials without a plottable value, as markers along the bottom of the axes."""
    if not xs:
        return
    sc = ax.scatter(
        xs,
        [0.03] * len(xs),
        marker=marker,
        s=60,
        color=color,
        transform=ax.get_xaxis_transform(),
        label=name,
        zorder=3,
        clip_on=False,
    )
    sc.set_gid(gid)


def history_figure(study: StudyRecord) -> Figure:
    """Objective per trial and the best value so far, one panel per objective."""
    n = len(study.directions)
    fig, axes = _new_figure(study, "Optimisation history", ncols=min(n, 2))
    chosen = chosen_trial(study)
    base = study.baseline()
    for k, ax in enumerate(axes):
        direction = study.directions[k]
        feasible = [(i, t) for i, t in enumerate(study.trials) if t.ok and t.feasible is not False]
        xs = [_x(t, i) for i, t in feasible]
        ys = [t.values[k] for _, t in feasible]
        sc = ax.scatter(xs, ys, color=OK, s=40, label=f"trial, n={len(xs)}", zorder=3)
        sc.set_gid("trials-ok")
        # Best so far over the trials that met the SLOs (the ones that can win).
        best_x, best_y, current = [], [], None
        for x, y in sorted(zip(xs, ys, strict=True)):
            if current is None or (y > current if direction == "maximize" else y < current):
                current = y
            best_x.append(x)
            best_y.append(current)
        if best_x:
            ax.step(best_x, best_y, where="post", color=LINE, lw=1.5, label="best so far")
        if base is not None and base.ok and base.feasible is not False:
            ax.scatter(
                [_x(base, study.trials.index(base))],
                [base.values[k]],
                s=160,
                facecolors="none",
                edgecolors=BASE,
                linewidths=2,
                label="baseline (engine defaults)",
                zorder=4,
            )
        if chosen is not None and chosen.feasible is not False:
            ax.scatter(
                [_x(chosen, study.trials.index(chosen))],
                [chosen.values[k]],
                marker="*",
                s=260,
                color=BEST,
                label=f"chosen: {chosen.name}",
                zorder=5,
            )
        infeasible = [_x(t, i) for i, t in enumerate(study.trials) if t.ok and t.feasible is False]
        _strip(
            ax,
            infeasible,
            "v",
            INFEASIBLE,
            f"missed SLO (not ranked), n={len(infeasible)}",
            "trials-infeasible",
        )
        failed = [(i, t) for i, t in enumerate(study.trials) if not t.ok]
        _strip(
            ax,
            [_x(t, i) for i, t in failed],
            "x",
            FAILED,
            f"failed, n={len(failed)}",
            "trials-failed",
        )
        for i, t in failed:
            ax.annotate(
                t.failure or t.status,
                (_x(t, i), 0.06),
                xycoords=ax.get_xaxis_transform(),
                rotation=90,
                fontsize=7,
                color=FAILED,
                ha="center",
                va="bottom",
            )
        if n == 1:
            _confirmed(ax, study, max(xs, default=0) + 1)
        ax.set_xlabel("trial index (order run); confirmed means to the right")
        ax.set_ylabel(f"{study.objective_labels()[k]} — {direction}")
        what = study.objective_labels()[k].split(" (")[0]
        ax.set_title(f"objective {k + 1}: {direction} {what}" if n > 1 else f"{direction} {what}")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8, loc="best")
    return fig


def _confirmed(ax: Any, study: StudyRecord, x0: int) -> None:
    """Confirmation means with their 95 % intervals, and the defaults' noise band.

    Without confirmation runs the single values keep at least a +-1 % span, so that a
    difference far below any engine's run-to-run noise does not fill the axes.
    """
    summaries = confirmed_summaries(study)
    if summaries:
        ax.axvline(x0 - 0.5, color=LINE, lw=0.8, ls=":")
    base = summaries.get("defaults")
    if base is not None and math.isfinite(base.ci_low):
        band = ax.axhspan(
            base.ci_low,
            base.ci_high,
            color=BASE,
            alpha=0.15,
            label=f"engine defaults: 95 % CI of the mean ({base.n} runs)",
        )
        band.set_gid("noise-band")
    for j, (key, sm) in enumerate(sorted(summaries.items(), key=lambda kv: kv[0] != "defaults")):
        half = sm.mean - sm.ci_low if math.isfinite(sm.ci_low) else 0.0
        bars = ax.errorbar(
            [x0 + j],
            [sm.mean],
            yerr=[[half], [half]],
            fmt="D",
            color=BASE if key == "defaults" else BEST,
            capsize=5,
            label="confirmed mean ± 95 % CI" if j == 0 else None,
            zorder=6,
        )
        bars.lines[0].set_gid(f"confirmed-{key}")
        ax.annotate(key, (x0 + j, sm.mean), xytext=(6, 0), textcoords="offset points", fontsize=7)
    low, high = ax.get_ylim()
    mid = (low + high) / 2.0
    if mid > 0 and (high - low) < 0.02 * mid:
        ax.set_ylim(mid * 0.99, mid * 1.01)


def _metric_point(t: TrialRecord, x_metric: str, y_metric: str) -> tuple[float, float] | None:
    x, y = t.metrics.get(x_metric), t.metrics.get(y_metric)
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return x, y


def objectives_are_pooled(study: StudyRecord) -> bool:
    """Do the objective values equal the trials' pooled metrics of the same name?"""
    feasible = [t for t in study.feasible_trials() if t.values]
    return bool(feasible) and all(
        t.metrics.get(m) == v
        for t in feasible
        for m, v in zip(study.metrics, t.values, strict=True)
    )


def _pareto_axes(study: StudyRecord) -> tuple[Any, ...]:
    """What the trade-off figure plots: y and x metrics, their directions, the title,
    a trial's point, and the Pareto-optimal trials."""
    if study.multi_objective:
        y_metric, x_metric = study.metrics[0], study.metrics[1]
        y_dir, x_dir = study.directions[0], study.directions[1]
        title = "Pareto front of the study's objectives"
        pooled = objectives_are_pooled(study)

        def point(t: TrialRecord) -> tuple[float, float] | None:
            if not t.ok:
                return None
            if pooled:  # every trial, SLO missed or not, at its measured values
                return _metric_point(t, x_metric, y_metric)
            # Objectives read at one concurrency level: only feasible trials carry
            # them (an infeasible trial's values are the sweeper's penalties).
            return (t.values[1], t.values[0]) if t.feasible is not False else None

        front = study_front(study)
    else:
        y_metric, x_metric, y_dir, x_dir = THROUGHPUT, TTFT_P99, "maximize", "minimize"
        title = "Throughput vs p99 TTFT (Pareto front)"

        def point(t: TrialRecord) -> tuple[float, float] | None:
            return _metric_point(t, x_metric, y_metric) if t.ok else None

        front = pareto_front(
            [t for t in study.ok_trials() if t.feasible is not False],
            [y_metric, x_metric],
            [y_dir, x_dir],
        )
    return y_metric, x_metric, y_dir, x_dir, title, point, front


def _scatter_trials(ax: Any, study: StudyRecord, pts: dict[str, tuple[float, float]]) -> None:
    ok = [t for t in study.trials if t.run_id in pts and t.feasible is not False]
    bad = [t for t in study.trials if t.run_id in pts and t.feasible is False]
    sc = ax.scatter(
        [pts[t.run_id][0] for t in ok],
        [pts[t.run_id][1] for t in ok],
        color=OK,
        s=40,
        label=f"trial{' (meets SLOs)' if study.slo else ''}, n={len(ok)}",
        zorder=3,
    )
    sc.set_gid("trials-ok")
    if bad:
        sc = ax.scatter(
            [pts[t.run_id][0] for t in bad],
            [pts[t.run_id][1] for t in bad],
            facecolors="none",
            edgecolors=INFEASIBLE,
            s=40,
            label=f"missed SLO, n={len(bad)}",
            zorder=3,
        )
        sc.set_gid("trials-infeasible")


def _draw_front(ax: Any, pts: dict[str, tuple[float, float]], front: list[TrialRecord]) -> None:
    # Trials with identical results hide each other: say how many share a point.
    shared: dict[tuple[float, float], int] = {}
    for p in pts.values():
        shared[p] = shared.get(p, 0) + 1
    for p, count in shared.items():
        if count > 1:
            ax.annotate(
                f"×{count}", p, textcoords="offset points", xytext=(6, -12), fontsize=8, color=OK
            )
    if front:
        fx = [pts[t.run_id][0] for t in front]
        fy = [pts[t.run_id][1] for t in front]
        order = sorted(range(len(fx)), key=lambda i: fx[i])
        ax.plot(
            [fx[i] for i in order],
            [fy[i] for i in order],
            color=BEST,
            lw=1.5,
            marker="o",
            mfc="none",
            ms=10,
            label=f"Pareto front ({len(front)} trial{'s' if len(front) != 1 else ''})",
            zorder=4,
        )
        for t in front:
            ax.annotate(
                t.name,
                pts[t.run_id],
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=7,
            )


def _mark_base_and_chosen(ax: Any, study: StudyRecord, pts: dict[str, tuple[float, float]]) -> None:
    base = study.baseline()
    if base is not None and base.run_id in pts:
        ax.scatter(
            [pts[base.run_id][0]],
            [pts[base.run_id][1]],
            s=160,
            facecolors="none",
            edgecolors=BASE,
            linewidths=2,
            label="baseline (engine defaults)",
            zorder=5,
        )
    chosen = chosen_trial(study) if study.multi_objective else best_trial(study)
    if chosen is not None and chosen.run_id in pts:
        ax.scatter(
            [pts[chosen.run_id][0]],
            [pts[chosen.run_id][1]],
            marker="*",
            s=260,
            color=BEST,
            label=f"chosen: {chosen.name}",
            zorder=6,
        )


def pareto_figure(study: StudyRecord) -> Figure:
    """Trade-off between the study's objectives, or throughput vs p99 TTFT."""
    y_metric, x_metric, y_dir, x_dir, title, point, front = _pareto_axes(study)
    fig, (ax,) = _new_figure(study, title)
    pts = {t.run_id: p for t in study.trials if (p := point(t)) is not None}
    _scatter_trials(ax, study, pts)
    _draw_front(ax, pts, [t for t in front if t.run_id in pts])
    _mark_base_and_chosen(ax, study, pts)
    n_failed = sum(1 for t in study.trials if not t.ok)
    n_hidden = sum(1 for t in study.trials if t.ok and t.run_id not in pts)
    if n_failed or n_hidden:
        ax.text(
            0.01,
            0.01,
            "not shown: "
            + ", ".join(
                x
                for x in (
                    f"{n_failed} failed trial(s)" if n_failed else "",
                    f"{n_hidden} trial(s) without these metrics" if n_hidden else "",
                )
                if x
            ),
            transform=ax.transAxes,
            fontsize=8,
            color=FAILED,
        )
    better = (
        f"better: {'↑' if y_dir == 'maximize' else '↓'} and {'→' if x_dir == 'maximize' else '←'}"
    )
    ax.set_xlabel(f"{label(x_metric)} — {x_dir}")
    ax.set_ylabel(f"{label(y_metric)} — {y_dir}")
    ax.set_title(better, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def top_trials(study: StudyRecord, n: int = 3) -> list[TrialRecord]:
    """The ``n`` best feasible trials (the chosen one first)."""
    chosen = chosen_trial(study)
    pool = [t for t in study.feasible_trials() if t.values]
    d = study.directions[0]
    pool.sort(key=lambda t: (-t.values[0] if d == "maximize" else t.values[0], -t.index))
    out = [chosen] if chosen is not None else []
    out += [t for t in pool if chosen is None or t.run_id != chosen.run_id]
    return out[:n]


def concurrency_figure(study: StudyRecord, n: int = 3) -> Figure | None:
    """Throughput and p99 TTFT per concurrency level for the top trials (and the baseline),
    with the per-GPU, goodput or cost metric where the study optimizes or bounds it."""
    trials = top_trials(study, n)
    base = study.baseline()
    if base is not None and base.ok and all(t.run_id != base.run_id for t in trials):
        trials.append(base)
    trials = [t for t in trials if t.levels()]
    if not trials:
        return None
    panels = (THROUGHPUT, TTFT_P99, *serving_metrics(study)[:2])
    fig, axes = _new_figure(
        study, f"Throughput and latency vs concurrency (top {n})", ncols=len(panels)
    )
    for ax, metric in zip(axes, panels, strict=True):
        for j, t in enumerate(trials):
            lv = [c for c in t.levels() if f"c{c}.{metric}" in t.metrics]
            flags = t.flags_label
            flags = flags if len(flags) <= 48 else flags[:45] + "..."
            tag = " (baseline)" if t.baseline else " (chosen)" if j == 0 and not t.baseline else ""
            line = ax.plot(
                lv,
                [t.metrics[f"c{c}.{metric}"] for c in lv],
                marker="o",
                ls="--" if t.baseline else "-",
                label=f"{t.name}{tag}: {flags}",
            )[0]
            line.set_gid(f"trial-{t.name}")
        ax.set_xscale("log", base=2)
        levels = sorted({c for t in trials for c in t.levels()})
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrency (simultaneous requests)")
        ax.set_ylabel(label(metric))
        ax.set_title(label(metric).split(" (")[0], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def study_figures(study: StudyRecord) -> dict[str, Figure]:
    """All figures of a study, by file name (a figure with nothing to show is left out)."""
    figs: dict[str, Figure] = {
        "history.png": history_figure(study),
        "pareto.png": pareto_figure(study),
    }
    if (conc := concurrency_figure(study)) is not None:
        figs["concurrency.png"] = conc
    return figs


def save_figures(figs: dict[str, Figure], out_dir: Path) -> list[Path]:
    """Write the figures as PNGs into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        path = out_dir / name
        fig.savefig(path)
        paths.append(path)
    return paths


def log_figures(client: Any, run_id: str, paths: list[Path]) -> None:
    """Attach PNGs to a run under ``figures/`` (overwrites earlier versions)."""
    for path in paths:
        client.log_artifact(run_id, str(path), FIGURES_DIR)
