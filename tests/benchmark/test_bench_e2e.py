"""Real genai-bench 0.0.5 against the fake OpenAI server on 127.0.0.1 (slow: ~30 s each)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from autotune.benchmark.genai_bench import Workload, run_genai_bench
from autotune.benchmark.parse import parse_experiment

TOKENIZER = Path(__file__).resolve().parents[2] / "autotune" / "sim" / "tokenizer"
KEY = "sk-e2e-do-not-store-7f3a"


def _leftovers(folder) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(folder) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _key_anywhere(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]


@pytest.mark.slow
def test_genai_bench_end_to_end(fake_server, tmp_path):
    url = fake_server()
    wl = Workload(["D(32,16)"], [1, 2], max_requests_per_run=6, max_time_per_run_min=1)
    seen: list[str] = []
    run = run_genai_bench(
        url,
        "fake-model",
        TOKENIZER,
        wl,
        tmp_path / "bench",
        timeout_s=240,
        api_key=KEY,
        on_progress=seen.append,
    )
    assert run.ok, run.log_tail()
    assert seen == ["benchmarking c1", "benchmarking c2"]
    assert len(run.run_files) == 2 and run.missing_runs == []
    assert _key_anywhere(run.folder) == []
    assert KEY not in " ".join(run.command)
    # genai-bench's xlsx/PNG reports are skipped (reports=False), its JSON is kept.
    assert (run.folder / "experiment_metadata.json").is_file()
    assert [p.name for p in run.folder.iterdir() if p.suffix in (".xlsx", ".png")] == []

    result = parse_experiment(run.folder)
    m = result.metrics()
    assert not result.partial
    assert m["error_rate"] == 0.0
    assert m["num_completed_requests"] >= 12  # max_requests_per_run is checked once a second
    for name in ("output_throughput_tok_s", "requests_per_s", "ttft_p99_ms", "tpot_mean_ms"):
        assert m[name] > 0 and m[f"c1.{name}"] > 0 and m[f"c2.{name}"] > 0
    assert 15 < m["ttft_p50_ms"] < 2000  # the server waits 20 ms before the first token


@pytest.mark.slow
def test_hanging_server_is_killed_at_the_wall_clock_limit(fake_server, tmp_path):
    # D(32,16) is served; every D(32,8) request hangs forever after its headers.
    url = fake_server("--hang-max-tokens", "8")
    wl = Workload(["D(32,16)", "D(32,8)"], [1], max_requests_per_run=4, max_time_per_run_min=1)
    limit, grace = 25.0, 5.0
    started = time.monotonic()
    run = run_genai_bench(
        url,
        "fake-model",
        TOKENIZER,
        wl,
        tmp_path / "bench",
        timeout_s=limit,
        grace_s=grace,
        api_key=KEY,
    )
    elapsed = time.monotonic() - started
    assert limit <= elapsed < limit + grace + 5
    assert run.timed_out and run.partial and not run.ok, run.log_tail()
    assert run.missing_runs == [("D(32,8)", 1)]
    assert _leftovers(run.folder) == []
    assert _key_anywhere(run.folder) == []

    result = parse_experiment(run.folder)
    assert result.partial and result.missing == [("D(32,8)", 1)]
    assert result.metrics()["D_32_16.c1.output_throughput_tok_s"] > 0
