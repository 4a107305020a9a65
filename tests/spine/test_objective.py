import pytest

from autotune.objective import Objective, read_metric

METRICS = {
    "output_throughput_tok_s": 1500.0,
    "ttft_p99_ms": 800.0,
    "c8.output_throughput_tok_s": 1000.0,
    "c8.ttft_p99_ms": 300.0,
    "c32.output_throughput_tok_s": 2000.0,
    "c32.ttft_p99_ms": 1300.0,
}


def obj(**kw):
    base = dict(metrics=["output_throughput_tok_s"], directions=["maximize"])
    base.update(kw)
    return Objective(**base)


def test_pooled_value_is_the_unprefixed_metric():
    assert obj().score(METRICS).value == 1500.0


def test_read_at_one_concurrency_level():
    assert obj(concurrency=32).score(METRICS).value == 2000.0


@pytest.mark.parametrize("how, expected", [("mean", 1500.0), ("min", 1000.0), ("max", 2000.0)])
def test_across_levels(how, expected):
    assert read_metric(METRICS, "output_throughput_tok_s", None, how) == expected


def test_scenario_prefixed_level_keys_are_read_too():
    m = {"D_10_10.c4.ttft_p99_ms": 10.0, "N_1_1_2_2.c4.ttft_p99_ms": 30.0}
    assert read_metric(m, "ttft_p99_ms", 4, "pooled") == 20.0


def test_minimize_latency():
    o = obj(metrics=["ttft_p99_ms"], directions=["minimize"])
    assert o.score(METRICS).value == 800.0
    assert o.better(700.0, 800.0) and not o.better(900.0, 800.0)


def test_slo_met_keeps_value_and_reports_relative_slack():
    s = obj(concurrency=8, slo={"ttft_p99_ms": 500.0}).score(METRICS)
    assert s.feasible and s.value == 1000.0
    assert s.slack["ttft_p99_ms"] == pytest.approx(0.4)


def test_infeasible_ranks_below_every_feasible_and_grades_the_miss():
    strict = obj(concurrency=32, slo={"ttft_p99_ms": 1000.0}).score(METRICS)
    stricter = obj(concurrency=32, slo={"ttft_p99_ms": 500.0}).score(METRICS)
    assert not strict.feasible and strict.value == pytest.approx(-0.3)
    assert stricter.value == pytest.approx(-1.6)
    assert stricter.value < strict.value < 0 <= obj().score({"output_throughput_tok_s": 0.0}).value


def test_infeasible_minimize_is_worse_than_any_plausible_latency():
    o = Objective(["ttft_p99_ms"], ["minimize"], slo={"error_rate": 0.01})
    s = o.score({"ttft_p99_ms": 50.0, "error_rate": 0.5})
    assert not s.feasible and s.value > 1e6


def test_throughput_slo_is_a_lower_bound():
    s = obj(slo={"output_throughput_tok_s": 2000.0}).score(METRICS)
    assert not s.feasible and s.slack["output_throughput_tok_s"] == pytest.approx(-0.25)


def test_missing_metric_means_no_score():
    assert obj().score({"ttft_p99_ms": 1.0}) is None


def test_multi_objective_returns_a_list():
    o = Objective(["output_throughput_tok_s", "ttft_p99_ms"], ["maximize", "minimize"])
    assert o.score(METRICS).value == [1500.0, 800.0]
