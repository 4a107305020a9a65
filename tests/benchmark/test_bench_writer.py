"""write_experiment -> parse_experiment round trips (the virtual clock's path)."""

from __future__ import annotations

import json

import pytest

from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.parse import parse_experiment
from autotune.benchmark.writer import RequestRecord, RunRecords, write_experiment

# Fields of genai-bench's per-run stats that the writer must reproduce.
STAT_FIELDS = (
    "ttft",
    "tpot",
    "e2e_latency",
    "output_latency",
    "output_inference_speed",
    "num_input_tokens",
    "num_output_tokens",
    "total_tokens",
    "input_throughput",
    "output_throughput",
)
LATENCY = {"ttft", "tpot", "e2e_latency", "output_latency"}


def _records_from_real_run(raw: dict) -> list[RequestRecord]:
    """Rebuild client-side timings from genai-bench's own per-request metrics."""
    scale = 0.001 if raw.get("_time_unit") == "ms" else 1.0
    out = []
    for i, rec in enumerate(raw["individual_request_metrics"]):
        start = float(i)  # any clock; each request only needs its own offsets
        if rec["error_code"] is not None:
            out.append(
                RequestRecord(
                    start, None, start + 0.02, 0, 0, ok=False, error_code=rec["error_code"]
                )
            )
            continue
        out.append(
            RequestRecord(
                start=start,
                first_token=start + rec["ttft"] * scale,
                end=start + rec["e2e_latency"] * scale,
                input_tokens=rec["num_input_tokens"],
                output_tokens=rec["num_output_tokens"],
            )
        )
    return out


@pytest.mark.parametrize("name", ["healthy_2level", "some_failures_ms"])
def test_round_trip_reproduces_real_genai_bench_output(fixture_dir, tmp_path, name):
    real = parse_experiment(fixture_dir(name))
    runs = []
    for run in real.runs:
        raw = json.loads(run.path.read_text())
        runs.append(
            RunRecords(
                run.scenario,
                run.concurrency,
                _records_from_real_run(raw),
                duration_s=raw["aggregated_metrics"]["run_duration"],
            )
        )
    written = write_experiment(tmp_path, runs, model_name="fake-model")
    assert len(written) == 2
    # Same file names as genai-bench (the duration part aside).
    assert [p.name.split("_time_")[0] for p in written] == [
        r.path.name.split("_time_")[0] for r in real.runs
    ]

    sim = parse_experiment(tmp_path)
    assert sim.expected == real.expected and not sim.partial
    assert sim.metrics() == pytest.approx(real.metrics(), rel=1e-6)

    # The written run JSONs carry genai-bench's own statistics, field by field.
    for ours, theirs in zip(written, real.runs, strict=True):
        a = json.loads(ours.read_text())["aggregated_metrics"]
        b = json.loads(theirs.path.read_text())["aggregated_metrics"]
        scale = 1000.0 if theirs.time_unit == "ms" else 1.0
        for field in STAT_FIELDS:
            for stat in ("min", "max", "mean", "p50", "p90", "p99", "sum"):
                mine = a["stats"][field][stat] * (scale if field in LATENCY else 1.0)
                assert mine == pytest.approx(b["stats"][field][stat], rel=1e-6), (field, stat)
        for key in (
            "num_requests",
            "num_completed_requests",
            "num_error_requests",
            "error_rate",
            "run_duration",
            "mean_output_throughput_tokens_per_s",
            "requests_per_second",
        ):
            assert a[key] == pytest.approx(b[key]), key
        assert {str(k): v for k, v in a["error_codes_frequency"].items()} == b[
            "error_codes_frequency"
        ]


def test_round_trip_exact_numbers(tmp_path):
    reqs = [
        RequestRecord(start=0.0, first_token=0.05, end=0.50, input_tokens=100, output_tokens=10),
        RequestRecord(start=0.5, first_token=0.60, end=1.50, input_tokens=100, output_tokens=11),
        RequestRecord(
            start=1.0, first_token=None, end=1.1, input_tokens=0, output_tokens=0, ok=False
        ),
    ]
    write_experiment(tmp_path, [RunRecords("D(100,10)", 2, reqs, duration_s=2.0)])
    result = parse_experiment(tmp_path)
    m = result.metrics()
    assert m["c2.ttft_mean_ms"] == pytest.approx(75.0)
    assert m["c2.e2e_p50_ms"] == pytest.approx(750.0)  # 500 and 1000 ms
    assert m["tpot_mean_ms"] == pytest.approx((450 / 9 + 900 / 10) / 2)
    assert m["output_throughput_tok_s"] == pytest.approx(21 / 2.0)
    assert m["input_throughput_tok_s"] == pytest.approx(200 / 2.0)
    assert m["total_throughput_tok_s"] == pytest.approx(221 / 2.0)
    assert m["requests_per_s"] == pytest.approx(1.0)
    assert m["error_rate"] == pytest.approx(1 / 3)
    assert (m["num_requests"], m["num_completed_requests"], m["num_error_requests"]) == (3, 2, 1)
    meta = json.loads((tmp_path / "experiment_metadata.json").read_text())
    assert meta["traffic_scenario"] == ["D(100,10)"] and meta["num_concurrency"] == [2]


def test_default_duration_is_first_start_to_last_end(tmp_path):
    reqs = [
        RequestRecord(10.0, 10.1, 11.0, 50, 20),
        RequestRecord(10.5, 10.6, 14.0, 50, 20),
    ]
    write_experiment(tmp_path, [RunRecords("D(50,20)", 2, reqs)])
    assert parse_experiment(tmp_path).runs[0].duration_s == pytest.approx(4.0)


def _healthy(n: int = 3) -> list[RequestRecord]:
    return [RequestRecord(i, i + 0.1, i + 1.0, 64, 32) for i in range(n)]


def _failed(n: int = 3) -> list[RequestRecord]:
    return [RequestRecord(i, None, i + 0.1, 64, 0, ok=False, error_code=503) for i in range(n)]


def test_an_all_failed_run_ends_the_benchmark_like_genai_bench(tmp_path):
    wl = Workload(["D(64,32)"], [1, 2, 4], 10, 1)
    runs = [
        RunRecords("D(64,32)", 1, _healthy(), 3.0),
        RunRecords("D(64,32)", 2, _failed(), 3.0),
        RunRecords("D(64,32)", 4, _healthy(), 3.0),
    ]
    written = write_experiment(tmp_path, runs, workload=wl)
    assert [p.name for p in written] == [
        "D64_32_text-to-text_num_concurrency_1_time_3s.json",
        "debug_for_run_D64_32_2.json",
    ]
    result = parse_experiment(tmp_path)
    assert result.partial and result.missing == [("D(64,32)", 4)]
    assert result.run("D(64,32)", 2).aborted
    m = result.metrics()
    assert m["c2.error_rate"] == 1.0 and m["c2.num_requests"] == 3
    assert m["error_rate"] == pytest.approx(0.5)
    meta = json.loads((tmp_path / "experiment_metadata.json").read_text())
    assert meta["max_time_per_run_s"] == 60 and meta["max_requests_per_run"] == 10


def test_without_genai_like_every_run_is_written(tmp_path):
    runs = [
        RunRecords("D(64,32)", 1, _failed(), 3.0),
        RunRecords("D(64,32)", 2, _healthy(), 3.0),
    ]
    written = write_experiment(tmp_path, runs, genai_like=False)
    assert len(written) == 2 and not any("debug" in p.name for p in written)
    result = parse_experiment(tmp_path)
    assert not result.partial
    assert result.metrics()["c1.error_rate"] == 1.0
    assert result.metrics()["c1.output_throughput_tok_s"] == 0.0


def test_single_token_requests_are_dropped_like_genai_bench_does(tmp_path):
    # Seen with real genai-bench on D(32,1): every record fails its validation
    # ("Dropping invalid metrics record"), the run writes no file, exit code 0.
    one = [RequestRecord(0, 0.1, 0.2, 64, 1), RequestRecord(1, 1.1, 1.2, 64, 1)]
    mixed = [*one, RequestRecord(2, 2.1, 2.5, 64, 5)]
    written = write_experiment(
        tmp_path, [RunRecords("D(64,1)", 1, one, 1.0), RunRecords("D(64,5)", 1, mixed, 3.0)]
    )
    assert [p.name for p in written] == ["D64_5_text-to-text_num_concurrency_1_time_3s.json"]
    result = parse_experiment(tmp_path)
    assert result.missing == [("D(64,1)", 1)]
    assert result.run("D(64,5)", 1).metrics["num_requests"] == 1


def test_without_genai_like_single_token_requests_count_without_tpot(tmp_path):
    reqs = [RequestRecord(0, 0.1, 0.2, 64, 1)]
    write_experiment(tmp_path, [RunRecords("D(64,1)", 1, reqs, 1.0)], genai_like=False)
    run = parse_experiment(tmp_path).runs[0]
    assert run.metrics["ttft_mean_ms"] == pytest.approx(100.0)
    assert "tpot_mean_ms" not in run.metrics
    assert run.metrics["output_throughput_tok_s"] == 1.0


def test_sub_millisecond_outputs_have_no_tpot_and_abort(tmp_path):
    # genai-bench drops TPOT below 1 ms of output time; with no TPOT at all it aborts.
    reqs = [RequestRecord(0, 0.1, 0.1005, 64, 5)]
    written = write_experiment(tmp_path, [RunRecords("N(64,1)/(5,1)", 1, reqs, 1.0)])
    assert written[0].name == "debug_for_run_N64_1_5_1_1.json"
    data = json.loads(written[0].read_text())
    assert data["aggregated_metrics"]["stats"]["ttft"]["mean"] == pytest.approx(0.1)
    assert data["aggregated_metrics"]["stats"]["tpot"]["mean"] is None
    run = parse_experiment(tmp_path).runs[0]
    assert run.aborted and run.metrics["ttft_mean_ms"] == pytest.approx(100.0)
    assert "tpot_mean_ms" not in run.metrics
    assert "output_throughput_tok_s" not in run.metrics  # no duration: unknown, not 0


def test_runs_without_requests_write_no_file(tmp_path):
    written = write_experiment(
        tmp_path, [RunRecords("D(64,32)", 1, []), RunRecords("D(64,32)", 2, _healthy())]
    )
    assert len(written) == 1
    result = parse_experiment(tmp_path)
    assert result.missing == [("D(64,32)", 1)]
