"""The verdict rule, the winner's choice, the line a person reads, the run order."""

from __future__ import annotations

import math

import pytest

from autotune.confirm.plan import interleaved_order, top_distinct
from autotune.confirm.stage import Candidate, RunResult, run_confirmation, run_label
from autotune.confirm.verdict import DEFAULTS, Measured, decide


def m(key, values, feasible=None):
    return Measured(key, list(values), list(feasible or [True] * len(values)))


def test_clear_gain_is_better_with_its_interval_in_the_line():
    v = decide(
        [m("trial-017", [112.0, 112.5, 111.8]), m("trial-003", [104.0, 103.0, 105.0])],
        m(DEFAULTS, [100.0, 99.5, 100.4]),
        maximize=True,
    )
    assert v.verdict == "better" and v.winner == "trial-017" and v.runner_up == "trial-003"
    assert v.line.startswith("trial-017 beats the engine defaults by +12.")
    assert "95 % CI +" in v.line and "3 runs each" in v.line and "runner-up trial-003" in v.line
    metrics = v.metrics()
    assert metrics["confirm.repeats"] == 3
    assert metrics["confirm.gain_ci_low_pct"] > 0
    assert metrics["confirm.gain_ci_low_pct"] < metrics["confirm.gain_pct"]
    assert metrics["confirm.gain_pct"] < metrics["confirm.gain_ci_high_pct"]
    assert 0 < metrics["confirm.noise_cv_pct"] < 1


def test_noise_sized_difference_is_indistinguishable_keep_defaults():
    v = decide(
        [m("trial-002", [1350.0, 1338.0, 1361.0])],
        m(DEFAULTS, [1349.0, 1355.0, 1340.0]),
        maximize=True,
    )
    assert v.verdict == "indistinguishable" and v.keep_defaults
    assert v.line.startswith("No configuration is measurably better than the engine defaults")
    assert v.line.endswith("keep the defaults.")
    assert v.gain.low < 0 < v.gain.high


def test_worse_and_minimize_direction():
    v = decide([m("trial-001", [120.0, 121.0, 119.0])], m(DEFAULTS, [100.0, 101.0, 99.0]), False)
    assert v.verdict == "worse" and v.gain.high < 0 and v.keep_defaults


def test_no_baseline_when_defaults_failed():
    v = decide([m("trial-001", [10.0, 11.0, 12.0])], m(DEFAULTS, [None, None, 5.0]), True)
    assert v.verdict == "no_baseline" and v.winner == "trial-001"
    assert "confirm.gain_pct" not in v.metrics()


def test_best_mean_wins_not_the_luckiest_run():
    lucky = m("trial-lucky", [130.0, 100.0, 100.0])  # one great run, mean 110
    steady = m("trial-steady", [115.0, 114.0, 116.0])  # mean 115
    v = decide([lucky, steady], m(DEFAULTS, [100.0, 100.5, 99.5]), True)
    assert v.winner == "trial-steady"


def test_slo_every_run_decides_and_is_stated():
    misses = m("trial-fast", [130.0, 131.0, 129.0], [True, False, True])
    meets = m("trial-safe", [115.0, 114.0, 116.0])
    v = decide([misses, meets], m(DEFAULTS, [100.0, 100.5, 99.5]), True, has_slo=True)
    assert v.winner == "trial-safe" and "meets the SLOs in all 3 confirmation runs" in v.line
    v = decide([misses], m(DEFAULTS, [100.0, 100.5, 99.5]), True, has_slo=True)
    assert "misses the SLOs in 1 of 3 confirmation runs" in v.line


def test_top_distinct_skips_repeats_and_the_defaults():
    trials = [
        ("t1", 5.0, "a"),
        ("t2", 9.0, "b"),
        ("t3", 9.0, "b"),
        ("t4", 7.0, "c"),
        ("t5", 8.0, ""),
    ]
    got = top_distinct(
        trials, 2, value=lambda t: t[1], flags=lambda t: t[2], maximize=True, exclude=""
    )
    assert [t[0] for t in got] == ["t2", "t4"]
    got = top_distinct(trials, 3, value=lambda t: t[1], flags=lambda t: t[2], maximize=False)
    assert [t[0] for t in got] == ["t1", "t4", "t5"]


def test_interleaved_order_rounds_are_permutations_seeded():
    keys = ["defaults", "trial-001", "trial-002", "trial-003"]
    order = interleaved_order(keys, 3, seed=5)
    assert len(order) == 12
    for r in range(3):
        round_ = order[4 * r : 4 * r + 4]
        assert sorted(k for k, _ in round_) == sorted(keys)
        assert {rep for _, rep in round_} == {r}
    assert interleaved_order(keys, 3, seed=5) == order
    orders = {tuple(interleaved_order(keys, 3, seed=s)) for s in range(10)}
    assert len(orders) > 5  # the seed changes the order
    firsts = {interleaved_order(keys, 1, seed=s)[0][0] for s in range(40)}
    assert firsts == set(keys)  # no configuration always runs first


def test_stage_runs_each_config_r_times_and_resumes_without_redoing():
    cands = [
        Candidate("trial-001", {"mem": 0.8}, "run1"),
        Candidate("trial-002", {"mem": 0.7}, "run2"),
    ]
    defaults = Candidate(DEFAULTS, {}, "run0")
    calls: list[str] = []

    def run_one(params, label):
        calls.append(label)
        return RunResult(value=100.0 + 10 * params.get("mem", 0), feasible=True, run_id=label)

    measured = run_confirmation(cands, defaults, run_one, repeats=3, seed=1)
    assert sorted(calls) == sorted(
        run_label(k, r) for k in ("trial-001", "trial-002", DEFAULTS) for r in range(3)
    )
    assert measured["trial-001"].values == [108.0] * 3
    # Resume after 4 runs: only the other 5 run, in the same order as before.
    done = {lb: RunResult(1.0, True, lb) for lb in calls[:4]}
    first = list(calls)
    calls.clear()
    measured = run_confirmation(cands, defaults, run_one, repeats=3, seed=1, done=done)
    assert calls == first[4:]
    assert sum(v == 1.0 for mm in measured.values() for v in mm.values) == 4


def test_failed_run_counts_as_a_miss_not_a_number():
    cands = [Candidate("trial-001", {"mem": 0.8})]

    def run_one(params, label):
        return RunResult(None if label.endswith("r2") and params else 100.0)

    measured = run_confirmation(cands, Candidate(DEFAULTS), run_one, repeats=3, seed=0)
    assert measured["trial-001"].scored == [100.0, 100.0]
    assert measured["trial-001"].feasible == [True, False, True]
    assert not math.isnan(measured[DEFAULTS].summary().mean)
    assert pytest.approx(measured[DEFAULTS].summary().mean) == 100.0
