"""The parser, on real genai-bench 0.0.5 output (tests/fixtures/genai_bench)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.parse import METRIC_NAMES, parse_experiment, parse_run_file

LATENCY_KEYS = {"ttft": "ttft", "tpot": "tpot", "e2e": "e2e_latency"}


def _raw(path):
    return json.loads(path.read_text())


def _ok_values(records, field, scale):
    return [r[field] * scale for r in records if r["error_code"] is None and r[field] is not None]


def test_metric_names_are_the_agreed_ones():
    assert set(METRIC_NAMES) == {
        "output_throughput_tok_s",
        "input_throughput_tok_s",
        "total_throughput_tok_s",
        "requests_per_s",
        *(f"{m}_{s}_ms" for m in ("ttft", "tpot", "e2e") for s in ("mean", "p50", "p90", "p99")),
        "error_rate",
        "num_requests",
        "num_completed_requests",
        "num_error_requests",
    }


def test_healthy_runs_are_keyed_by_content(fixture_dir):
    result = parse_experiment(fixture_dir("healthy_2level"))
    assert [(r.scenario, r.concurrency) for r in result.runs] == [("D(64,32)", 1), ("D(64,32)", 4)]
    assert result.expected == [("D(64,32)", 1), ("D(64,32)", 4)]
    assert not result.partial and result.missing == []
    assert not any(r.aborted for r in result.runs)
    m = result.metrics()
    assert {k for k in m if "." not in k} == set(METRIC_NAMES)
    assert {k for k in m if k.startswith("c1.")} == {f"c1.{n}" for n in METRIC_NAMES}
    assert {k for k in m if k.startswith("c4.")} == {f"c4.{n}" for n in METRIC_NAMES}
    assert len(m) == 3 * len(METRIC_NAMES)
    assert (m["c1.num_requests"], m["c4.num_requests"], m["num_requests"]) == (18, 20, 38)
    assert m["error_rate"] == m["c1.error_rate"] == 0.0
    assert all(v > 0 for k, v in m.items() if "throughput" in k or k.endswith("_ms"))


def test_per_run_metrics_equal_genai_bench_own_numbers_in_ms(fixture_dir):
    # genai-bench's stats are in seconds here; ours must be the same numbers x1000.
    for run in parse_experiment(fixture_dir("healthy_2level")).runs:
        agg = _raw(run.path)["aggregated_metrics"]
        assert run.time_unit == "s"
        for ours, theirs in LATENCY_KEYS.items():
            for stat in ("mean", "p50", "p90", "p99"):
                expected = agg["stats"][theirs][stat] * 1000
                assert run.metrics[f"{ours}_{stat}_ms"] == pytest.approx(expected, rel=1e-9)
        assert run.metrics["output_throughput_tok_s"] == pytest.approx(
            agg["mean_output_throughput_tokens_per_s"], rel=1e-9
        )
        assert run.metrics["input_throughput_tok_s"] == pytest.approx(
            agg["mean_input_throughput_tokens_per_s"], rel=1e-9
        )
        assert run.metrics["total_throughput_tok_s"] == pytest.approx(
            agg["mean_total_tokens_throughput_tokens_per_s"], rel=1e-9
        )
        assert run.metrics["requests_per_s"] == pytest.approx(agg["requests_per_second"], rel=1e-9)
        assert run.duration_s == agg["run_duration"]
        assert 15 < run.metrics["ttft_mean_ms"] < 1000  # the server waits ~20 ms: really ms


def test_pooled_metrics_pool_requests_and_durations(fixture_dir):
    result = parse_experiment(fixture_dir("healthy_2level"))
    raws = [_raw(r.path) for r in result.runs]
    records = [rec for raw in raws for rec in raw["individual_request_metrics"]]
    duration = sum(raw["aggregated_metrics"]["run_duration"] for raw in raws)
    out_tokens = sum(rec["num_output_tokens"] for rec in records)
    in_tokens = sum(rec["num_input_tokens"] for rec in records)
    m = result.metrics()
    assert m["output_throughput_tok_s"] == pytest.approx(out_tokens / duration)
    assert m["input_throughput_tok_s"] == pytest.approx(in_tokens / duration)
    assert m["total_throughput_tok_s"] == pytest.approx((in_tokens + out_tokens) / duration)
    assert m["requests_per_s"] == pytest.approx(38 / duration)
    for ours, theirs in LATENCY_KEYS.items():
        values = _ok_values(records, theirs, 1000)
        assert m[f"{ours}_mean_ms"] == pytest.approx(np.mean(values))
        assert m[f"{ours}_p99_ms"] == pytest.approx(np.percentile(values, 99))
    # Pooled p99 lies between the two levels' p99 values.
    assert min(m["c1.ttft_p99_ms"], m["c4.ttft_p99_ms"]) <= m["ttft_p99_ms"]
    assert m["ttft_p99_ms"] <= max(m["c1.ttft_p99_ms"], m["c4.ttft_p99_ms"])


def test_error_rate_is_recomputed_and_ms_files_are_not_scaled(fixture_dir):
    result = parse_experiment(fixture_dir("some_failures_ms"))
    c1, c4 = result.runs
    for run in result.runs:
        raw = _raw(run.path)
        assert raw["_time_unit"] == "ms"
        assert raw["aggregated_metrics"]["error_rate"] == 0  # genai-bench's bug
        assert run.metrics["ttft_p50_ms"] == pytest.approx(
            raw["aggregated_metrics"]["stats"]["ttft"]["p50"]
        )
    assert (c1.metrics["num_requests"], c1.metrics["num_error_requests"]) == (14, 2)
    assert (c4.metrics["num_requests"], c4.metrics["num_error_requests"]) == (26, 6)
    assert c1.metrics["error_rate"] == pytest.approx(2 / 14)
    assert c4.metrics["error_rate"] == pytest.approx(6 / 26)
    m = result.metrics()
    assert m["error_rate"] == pytest.approx(8 / 40)
    assert m["num_completed_requests"] == 32
    assert 15 < m["ttft_mean_ms"] < 1000
    # run_duration stays in seconds even in ms files.
    assert 1 < c1.duration_s < 10
    # Failed requests contribute no latency: values pool over the 32 successes only.
    records = [rec for r in result.runs for rec in r.requests]
    assert len(records) == 40
    assert m["e2e_mean_ms"] == pytest.approx(np.mean(_ok_values(records, "e2e_latency", 1)))


def test_a_level_where_everything_failed(fixture_dir):
    result = parse_experiment(fixture_dir("level_all_failed"))
    assert result.expected == [
        ("D(64,32)", 1),
        ("D(64,32)", 2),
        ("D(64,16)", 1),
        ("D(64,16)", 2),
    ]
    assert result.partial
    assert result.missing == [("D(64,16)", 2)]  # genai-bench aborted before it
    failed = result.run("D(64,16)", 1)
    assert failed is not None and failed.aborted
    assert failed.path.name == "debug_for_run_D64_16_1.json"
    assert failed.metrics["error_rate"] == 1.0
    assert failed.metrics["num_requests"] == failed.metrics["num_error_requests"] == 36
    assert failed.metrics["output_throughput_tok_s"] == 0.0
    assert not any(k.endswith("_ms") for k in failed.metrics)

    m = result.metrics()
    # Several scenarios: per-run keys carry the scenario slug.
    assert m["D_64_16.c1.error_rate"] == 1.0
    assert m["D_64_32.c2.error_rate"] == 0.0
    assert not any(k.startswith("c1.") for k in m)
    assert m["num_requests"] == 12 + 10 + 36
    assert m["error_rate"] == pytest.approx(36 / 58)
    # Throughput is still computed from the runs that have a duration.
    ok_runs = [r for r in result.runs if not r.aborted]
    duration = sum(r.duration_s for r in ok_runs)
    tokens = sum(rec["num_output_tokens"] for r in ok_runs for rec in r.requests)
    assert m["output_throughput_tok_s"] == pytest.approx(tokens / duration)


def test_expected_runs_can_come_from_the_workload(fixture_dir):
    wl = Workload(["D(64,32)"], [1, 4, 16], 12, 1)
    result = parse_experiment(fixture_dir("healthy_2level"), expected=wl.runs())
    assert result.missing == [("D(64,32)", 16)] and result.partial


def test_missing_individual_metrics_fall_back_to_run_stats(fixture_dir, tmp_path):
    src = fixture_dir("healthy_2level")
    for path in src.glob("*.json"):
        data = _raw(path)
        data.pop("individual_request_metrics", None)
        data.pop("_time_unit", None)  # older files: seconds
        (tmp_path / path.name).write_text(json.dumps(data))
    full = parse_experiment(src)
    lean = parse_experiment(tmp_path)
    for a, b in zip(full.runs, lean.runs, strict=True):
        assert b.requests == []
        assert b.metrics == pytest.approx(a.metrics, rel=1e-9)
    m, f = lean.metrics(), full.metrics()
    assert m["num_requests"] == 38 and m["error_rate"] == 0
    assert m["output_throughput_tok_s"] == pytest.approx(f["output_throughput_tok_s"])
    # Means are request-weighted; percentiles are the max over runs (an upper bound).
    c1, c4 = lean.runs
    weighted = (c1.metrics["ttft_mean_ms"] * 18 + c4.metrics["ttft_mean_ms"] * 20) / 38
    assert m["ttft_mean_ms"] == pytest.approx(weighted)
    assert m["ttft_p99_ms"] == max(c1.metrics["ttft_p99_ms"], c4.metrics["ttft_p99_ms"])
    assert m["ttft_p99_ms"] >= f["ttft_p99_ms"]


def test_junk_is_skipped_not_raised(fixture_dir, tmp_path):
    for path in fixture_dir("healthy_2level").glob("*.json"):
        shutil.copy(path, tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "noconc.json").write_text('{"aggregated_metrics": {"scenario": "D(1,2)"}}')
    result = parse_experiment(tmp_path)
    assert len(result.runs) == 2 and not result.partial
    assert parse_run_file(tmp_path / "other.json") is None


def test_empty_or_absent_folder(tmp_path):
    result = parse_experiment(tmp_path / "nothing")
    assert result.runs == [] and result.metrics() == {} and not result.partial
