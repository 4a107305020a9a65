"""Decisions of the report: best trial, ties, Pareto front, pick rule, gain over the baseline."""

from __future__ import annotations

import pytest
from results_helpers import make_record, trial

from autotune.report.records import parse_objective, parse_slo
from autotune.report.summary import (
    baseline_note,
    best_trial,
    chosen_trial,
    label,
    objective_gain,
    pareto_front,
    parse_rule,
    summarize,
    tied_with,
    unit,
)


def test_best_is_the_highest_feasible_objective(record):
    # trial-004 has the highest throughput but missed its SLO (penalty value).
    assert best_trial(record).name == "trial-003"


def test_best_minimize():
    study = make_record(
        [trial(0, 1000, 700, values=[700.0]), trial(1, 900, 500, values=[500.0])],
        metrics=["ttft_p99_ms"],
        directions=["minimize"],
    )
    assert best_trial(study).name == "trial-001"


def test_ties_go_to_lower_ttft_then_most_recent():
    study = make_record([trial(0, 1000, 700), trial(1, 1000, 600), trial(2, 1000, 600)])
    best = best_trial(study)
    assert best.name == "trial-002"
    assert [t.name for t in tied_with(study, best)] == ["trial-000", "trial-001"]


def test_no_success_no_best():
    study = make_record([trial(0, failure="oom"), trial(1, failure="crash")])
    assert best_trial(study) is None
    assert summarize(study)["best"] is None


def test_front():
    trials = [trial(0, 1000, 500), trial(1, 1200, 800), trial(2, 900, 900), trial(3, 1100, 600)]
    front = pareto_front(
        trials, ["output_throughput_tok_s", "ttft_p99_ms"], ["maximize", "minimize"]
    )
    assert [t.name for t in front] == ["trial-000", "trial-003", "trial-001"]
    # Equal results are all Pareto-optimal.
    twins = [trial(0, 1000, 500), trial(1, 1000, 500)]
    assert len(pareto_front(twins, ["output_throughput_tok_s"], ["maximize"])) == 2


def multi_study():
    directions = ["maximize", "minimize"]
    metrics = ["output_throughput_tok_s", "ttft_p99_ms"]
    ts = [
        trial(0, 1000, 500, values=[1000, 500], baseline=True),
        trial(1, 1200, 800, values=[1200, 800]),
        trial(2, 900, 900, values=[900, 900]),
        trial(3, 1100, 600, values=[1100, 600]),
    ]
    return make_record(ts, metrics=metrics, directions=directions)


def test_multi_objective_pick_rules():
    study = multi_study()
    assert best_trial(study) is None  # no single best: a front
    assert chosen_trial(study).name == "trial-001"  # best on the first objective
    assert chosen_trial(study, "min:ttft_p99_ms").name == "trial-000-baseline"
    s = summarize(study)
    assert s["pareto"] == ["trial-000-baseline", "trial-003", "trial-001"]
    assert s["gain"] is None and s["gains"]  # no single objective gain, metric gains


def test_bad_rule():
    with pytest.raises(ValueError, match="max:<metric>"):
        parse_rule("highest")


def test_gain_over_baseline(record):
    gain = objective_gain(record, best_trial(record))
    assert gain.baseline == 1000.0 and gain.best == 1500.0
    assert gain.change == pytest.approx(0.5)
    s = summarize(record)
    ttft = next(g for g in s["gains"] if g["metric"] == "ttft_p99_ms")
    assert ttft["change"] == pytest.approx(-(900 - 700) / 700)  # minimize: worse is negative


def test_baseline_notes(record):
    assert baseline_note(record) is None
    no_base = make_record([trial(1, 1000, 500)])
    assert "no baseline" in baseline_note(no_base)
    assert summarize(no_base)["gain"] is None
    failed = make_record([trial(0, failure="oom", baseline=True), trial(1, 1000, 500)])
    assert "failed (oom)" in baseline_note(failed)


def test_slo_column(record):
    s = summarize(record)
    assert [t["slo"] for t in s["trials"]] == ["pass", "pass", "-", "pass", "FAIL"]
    assert all(t["slo"] == "-" for t in summarize(make_record([trial(1, 1, 1)]))["trials"])


def test_units_and_labels():
    assert unit("tpot_mean_ms") == "ms"
    assert label("tpot_mean_ms") == "mean TPOT (ms)"
    assert label("c8.output_throughput_tok_s") == "output throughput at concurrency 8 (tok/s)"


def test_parent_params_parse():
    assert parse_objective("minimize:ttft_p99_ms") == (["ttft_p99_ms"], ["minimize"])
    assert parse_slo("ttft_p99_ms<=500.0,error_rate<=0.01") == {
        "ttft_p99_ms": 500.0,
        "error_rate": 0.01,
    }


def test_labels_say_where_the_objective_is_read():
    study = make_record([trial(1, 1, 1)], slo={"ttft_p99_ms": 2000.0})
    assert study.objective_labels() == ["output throughput (tok/s)"]
    study.objective_concurrency = 32
    assert study.objective_labels() == ["output throughput at concurrency 32 (tok/s)"]
    assert study.slo_labels() == {"ttft_p99_ms": "p99 TTFT at concurrency 32 (ms) ≤ 2000"}
    study.slo_concurrency = 8
    assert study.slo_labels()["ttft_p99_ms"].startswith("p99 TTFT at concurrency 8")
