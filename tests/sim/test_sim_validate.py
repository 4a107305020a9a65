"""``python -m autotune.sim validate`` never crashes: every row is predicted or classified."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROWS = REPO / "tests" / "fixtures" / "silicon_sample_sglang_llama31_8b_fp8_h200.csv"


def _write_rows(path: Path, changes: list[dict[str, str]]) -> None:
    with open(ROWS, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        base = next(reader)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for change in changes:
            writer.writerow({**base, "batch_size": "8", **change})


def _validate(path: Path, *extra: str) -> tuple[int, dict, list[dict]]:
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.sim", "validate", "--rows", str(path), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    per_row = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    return proc.returncode, json.loads(lines[0]), per_row


def test_unknown_and_impossible_rows_are_classified(tmp_path):
    rows = tmp_path / "rows.csv"
    _write_rows(
        rows,
        [
            {},  # the calibration row itself (batch 8): predicted
            {"backend_version": "0.5.1.post1"},  # an older version: predicted
            {"model_path": "acme/NoSuchModel-7B"},
            {"system": "b200_sxm"},
            {"precision": "int4_awq"},
            {"backend_version": "0.3.2"},
            {"backend_version": "nightly-dev"},
            {"tp_size": "3"},
            {"pp_size": "2"},
            {"moe_ep_size": "2"},  # expert parallelism on a dense model: ignored, predicted
            # Qwen3-235B at tp 4 with ep 3: not a layout (3 does not divide 4)
            {"model_path": "Qwen/Qwen3-235B-A22B-FP8", "tp_size": "4", "moe_ep_size": "3"},
            # Llama-3.1-70B BF16 on one 80 GB H100: 131 GiB of weights cannot load.
            {
                "model_path": "meta-llama/Llama-3.1-70B-Instruct",
                "system": "h100_sxm",
                "precision": "",
                "tp_size": "1",
            },  # fmt: skip
            # Llama-3.1-70B FP8 on one H100 at SGLang 0.5.0's fraction: a ~3.5k-token KV
            # pool, so SGLang rejects every 8000-token prompt.
            {
                "model_path": "meta-llama/Llama-3.1-70B-Instruct",
                "system": "h100_sxm",
                "backend_version": "0.5.0",
                "tp_size": "1",
                "isl": "8000",
            },  # fmt: skip
            {"isl": ""},
            {"silicon_tpot_ms": "nan"},
            {"backend": "vllm"},
        ],
    )
    rc, out, per_row = _validate(rows, "--per-row")
    assert rc == 0
    assert (out["rows"], out["predicted"], out["failed"]) == (15, 3, 12)
    assert out["coverage"] == round(3 / 15, 4)
    assert out["failures"] == {
        "malformed_row": 2,
        "requests_rejected": 1,
        "startup_failure": 1,
        "unknown_dtype": 1,
        "unknown_gpu": 1,
        "unknown_model": 1,
        "unsupported_parallelism": 2,
        "unsupported_tp": 1,
        "unsupported_version": 2,
    }
    assert out["excluded"] == {"vllm/agg": 1}
    assert 0 <= out["tpot_mape"] < 1 and out["ttft_mape"] >= 0
    assert len(per_row) == 15
    rejected = [r for r in per_row if r.get("failure") == "requests_rejected"]
    assert rejected[0]["message"].startswith("a 8000-token prompt does not fit: KV pool")
    startup = [r for r in per_row if r.get("failure") == "startup_failure"]
    assert startup[0]["message"].startswith("Not enough memory")
    predicted = [r for r in per_row if "failure" not in r]
    assert [r["sglang_version"] for r in predicted] == ["0.5.6.post2", "0.5.1.post1", "0.5.6.post2"]


def test_nothing_predicted_still_prints_the_summary(tmp_path):
    rows = tmp_path / "rows.csv"
    _write_rows(rows, [{"model_path": "acme/NoSuchModel-7B"}])
    rc, out, _ = _validate(rows)
    assert rc == 1
    assert (out["predicted"], out["coverage"], out["tpot_mape"]) == (0, 0.0, None)


def test_a_file_that_is_not_silicon_sample_format_is_reported(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    rc, out, _ = _validate(bad)
    assert rc == 2 and out["error"] == "rows" and "missing" in out["message"]
    rc, out, _ = _validate(tmp_path / "absent.csv")
    assert rc == 2 and out["error"] == "rows"
