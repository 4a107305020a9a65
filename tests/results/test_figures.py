"""Figures: labelled axes with units, one point per trial, the SIMULATED banner, PNGs."""

from __future__ import annotations

import pytest
from results_helpers import make_record, trial

from autotune.report.figures import (
    concurrency_figure,
    history_figure,
    pareto_figure,
    save_figures,
    study_figures,
)


def by_gid(ax, gid):
    return [c for c in ax.collections if c.get_gid() == gid]


def n_points(ax, gid):
    return sum(len(c.get_offsets()) for c in by_gid(ax, gid))


def banner_texts(fig):
    return [t.get_text() for t in fig.texts if t.get_gid() == "simulated-banner"]


def test_history_points_are_trials(record):
    fig = history_figure(record)
    (ax,) = fig.axes
    assert "(tok/s)" in ax.get_ylabel()
    assert "trial" in ax.get_xlabel()
    assert "Optimisation history" in fig.get_suptitle()
    # 3 ranked trials (baseline, 1, 3), 1 that missed its SLO, 1 failed: 5 trials.
    assert n_points(ax, "trials-ok") == 3
    assert n_points(ax, "trials-infeasible") == 1
    assert n_points(ax, "trials-failed") == 1
    # Best so far: 1000, 1200, 1200 (trial 2 failed), 1500.
    (line,) = [ln for ln in ax.lines if ln.get_label() == "best so far"]
    assert list(line.get_ydata()) == [1000.0, 1200.0, 1500.0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("baseline" in t for t in labels) and any("trial-003" in t for t in labels)


def test_pareto_axes_and_points(record):
    fig = pareto_figure(record)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("p99 TTFT (ms)")
    assert ax.get_ylabel().startswith("output throughput (tok/s)")
    assert n_points(ax, "trials-ok") == 3
    assert n_points(ax, "trials-infeasible") == 1
    # Front of feasible trials: baseline (700 ms), trial-001 (650 ms, 1200), trial-003.
    (front,) = [ln for ln in ax.lines if ln.get_label().startswith("Pareto front")]
    assert sorted(front.get_ydata()) == [1200.0, 1500.0]


def test_pareto_multi_objective_axes():
    study = make_record(
        [trial(0, 1000, 500, values=[1000, 500]), trial(1, 1200, 800, values=[1200, 800])],
        metrics=["output_throughput_tok_s", "ttft_p99_ms"],
        directions=["maximize", "minimize"],
    )
    ax = pareto_figure(study).axes[0]
    assert "p99 TTFT (ms)" in ax.get_xlabel() and "minimize" in ax.get_xlabel()
    assert n_points(ax, "trials-ok") == 2


def test_concurrency_lines(record):
    fig = concurrency_figure(record, n=2)
    tput, ttft = fig.axes
    assert tput.get_xlabel().startswith("concurrency")
    assert tput.get_ylabel() == "output throughput (tok/s)"
    assert ttft.get_ylabel() == "p99 TTFT (ms)"
    # top 2 (trial-003, trial-001) + the baseline, each over levels 8 and 32
    names = [ln.get_gid() for ln in tput.lines]
    assert names == ["trial-trial-003", "trial-trial-001", "trial-trial-000-baseline"]
    assert all(list(ln.get_xdata()) == [8, 32] for ln in tput.lines)


def test_simulated_banner_only_when_simulated(record):
    for fig in study_figures(record).values():
        assert banner_texts(fig) == ["SIMULATED"]
        assert "SIMULATED" in fig.get_suptitle()
    real = make_record(record.trials, simulated=False)
    for fig in study_figures(real).values():
        assert banner_texts(fig) == []


def test_failed_only_study_still_draws():
    study = make_record([trial(0, failure="oom"), trial(1, failure="startup_timeout")])
    figs = study_figures(study)
    assert set(figs) == {"history.png", "pareto.png"}  # nothing per level to show
    assert n_points(figs["history.png"].axes[0], "trials-failed") == 2


def test_save_pngs(record, tmp_path):
    paths = save_figures(study_figures(record), tmp_path / "figures")
    assert [p.name for p in paths] == ["history.png", "pareto.png", "concurrency.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 10_000


def test_history_shows_confirmed_means_with_intervals_and_no_offset_axis(record):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from autotune.report.render import markdown
    from autotune.report.summary import summarize

    record.confirmations = {
        "defaults": [1000.0, 1010.0, 990.0],
        "trial-003": [1500.0, 1490.0, 1510.0],
    }
    record.tags["autotune.verdict"] = "better"
    record.tags["autotune.verdict_line"] = "trial-003 beats the engine defaults by +50.0 %"
    fig = history_figure(record)
    (ax,) = fig.axes
    FigureCanvasAgg(fig).draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""  # no "+1e3" above the axis
    (band,) = [p for p in ax.patches if p.get_gid() == "noise-band"]
    ys = (band.get_y(), band.get_y() + band.get_height())
    # t(0.975, 2) * sd 10 / sqrt(3) = 24.84 around the defaults' mean of 1000.
    assert ys[0] == pytest.approx(1000 - 24.84, abs=0.01) and ys[-1] == pytest.approx(
        1024.84, abs=0.01
    )
    (bar,) = [ln for ln in ax.lines if ln.get_gid() == "confirmed-trial-003"]
    assert list(bar.get_ydata()) == [1500.0]
    report = markdown(summarize(record), images=False)
    assert "Confirmed (better): trial-003 beats the engine defaults by +50.0 %" in report
    assert "trial-003: mean 1500 (95 % CI 1475 … 1525, 3 runs)" in report


def test_tiny_differences_do_not_fill_the_axes():
    rec = make_record([trial(0, 1349.5, 700.0, baseline=True), trial(1, 1350.0, 700.0)])
    (ax,) = history_figure(rec).axes
    low, high = ax.get_ylim()
    assert high - low >= 0.019 * 1350  # the 0.04 % difference stays a 0.04 % difference
