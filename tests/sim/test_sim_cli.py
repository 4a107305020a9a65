"""``python -m autotune.sim predict|validate`` and the accuracy against measured rows."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from autotune.sim.__main__ import main, parse_engine_flags
from autotune.sim.validate import read_rows, validate

REPO = Path(__file__).resolve().parents[2]
ROWS = REPO / "tests" / "fixtures" / "silicon_sample_sglang_llama31_8b_fp8_h200.csv"
PREDICT = [
    "predict",
    "--model",
    "llama-3.1-8b",
    "--gpu",
    "h200_sxm",
    "--tp",
    "2",
    "--dtype",
    "fp8",
    "--isl",
    "1024",
    "--osl",
    "128",
    "--concurrency",
    "16",
    "--num-requests",
    "48",
    "--json",
]


def test_engine_flags_parse_like_a_command_line():
    flags = parse_engine_flags(
        ["--mem-fraction-static=0.8", "--enable-mixed-chunk", "--schedule-policy", "lpm"]
    )
    assert flags == {
        "mem-fraction-static": "0.8",
        "enable-mixed-chunk": True,
        "schedule-policy": "lpm",
    }


def test_predict_prints_one_json_object(capsys):
    rc = main([*PREDICT, "--mem-fraction-static=0.8", "--schedule-policy=lpm", "--enable-metrics"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    data = json.loads(out[0])
    for key in ("ttft_ms", "tpot_ms", "output_throughput_tok_s", "ttft_ms_p99", "tpot_ms_p50"):
        assert isinstance(data[key], float) and data[key] > 0
    assert data["simulated"] is True
    assert data["tp_size"] == 2 and data["server_info"]["mem_fraction_static"] == 0.8
    assert data["ignored_flags"] == ["enable-metrics"]


def test_predict_startup_failure_is_reported_as_json(capsys):
    rc = main([*PREDICT, "--mem-fraction-static=0.02"])  # 2.8 GiB < 4.3 GiB of weights
    data = json.loads(capsys.readouterr().out)
    assert rc == 3 and data["error"] == "startup"
    assert data["message"].startswith(
        "Not enough memory. Please try to increase --mem-fraction-static."
    )


def test_predict_unknown_profile_is_reported_as_json(capsys):
    rc = main([*PREDICT[:2], "gpt-5", *PREDICT[3:]])
    data = json.loads(capsys.readouterr().out)
    assert rc == 2 and "llama-3.1-8b" in data["message"]


def test_validate_cli_output_shape(tmp_path):
    small = tmp_path / "rows.csv"
    with open(ROWS, newline="") as src, open(small, "w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        for _, row in zip(range(3), reader, strict=False):
            writer.writerow(row)
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.sim", "validate", "--rows", str(small)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["rows"] == 3
    assert 0 <= data["tpot_mape"] < 1 and 0 <= data["ttft_mape"] < 5


def test_fixture_rows_are_the_46_measured_sglang_rows():
    rows = read_rows(ROWS)
    assert len(rows) == 46
    assert {(r.model, r.gpu, r.dtype) for r in rows} == {("llama-3.1-8b", "h200_sxm", "fp8")}
    assert {r.tp for r in rows} == {1, 2, 4, 8}


def test_accuracy_on_the_measured_rows():
    result = validate(read_rows(ROWS))
    assert result["rows"] == 46
    # Issue 17's targets. Measured (docs/simulator.md, validate's workload of 4
    # requests per user, +-15 %): TPOT 6.17 %, TTFT 28.3 % (seeds 0-4: 6.09-6.17 %,
    # 28.2-28.7 %).
    assert result["tpot_mape"] <= 0.08
    assert result["ttft_mape"] <= 0.30
