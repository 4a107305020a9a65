"""Mixture-of-experts profiles: expert parallelism, DP attention, MoE memory, calibration."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_runner import run_cli, runs

from autotune.sim.calibration import Calibration
from autotune.sim.perf import MOE_PREFILL_SCALE
from autotune.sim.predict import predict
from autotune.sim.settings import build_engine, resolve_settings
from autotune.sim.types import SimStartupError
from autotune.sim.validate import read_rows, validate

REPO = Path(__file__).resolve().parents[2]
QWEN_ROWS = REPO / "tests" / "fixtures" / "silicon_sample_sglang_qwen3_235b_fp8_h200.csv"
QWEN = dict(model="qwen3-235b-a22b", gpu="h200_sxm", dtype="fp8")
DSV3 = dict(model="deepseek-v3", gpu="h200_sxm", dtype="fp8")


def _point(flags: dict, tp: int = 8, **model) -> dict:
    return predict(**(model or QWEN), tp=tp, isl=1000, osl=200, concurrency=128,
                   num_requests=256, flags=flags)  # fmt: skip


def test_layouts_change_memory_and_speed():
    ep = resolve_settings({"tp-size": 8, "ep-size": 8}, **QWEN)
    dpa = resolve_settings(
        {"tp-size": 8, "ep-size": 8, "enable-dp-attention": True, "dp-size": 8}, **QWEN
    )
    # DP attention: each rank keeps only its own requests' KV (4 KV heads are not
    # split 8 ways under TP 8), so the pool and the request slots grow ~8x.
    assert dpa.max_total_num_tokens > 1.5 * ep.max_total_num_tokens
    assert dpa.max_running_requests == 8 * 4096 and ep.max_running_requests == 4096
    assert dpa.schedule_conservativeness == pytest.approx(0.3)
    assert (dpa.moe_layout, dpa.as_server_info()["enable_dp_attention"]) == ("ep8_dpa8", True)
    a, b = _point({"ep-size": 8}), _point({"ep-size": 8, "enable-dp-attention": True, "dp-size": 8})
    assert a["tpot_ms"] != pytest.approx(b["tpot_ms"], rel=0.02)
    # DeepSeek-V3 (MLA): every layout runs on 8 H200s, each at its own speed.
    speeds = {
        key: _point(flags, **DSV3)["output_throughput_tok_s"]
        for key, flags in {
            "tp": {},
            "ep": {"ep-size": 8},
            "ep+dpa": {"ep-size": 8, "enable-dp-attention": True, "dp-size": 8},
        }.items()
    }
    assert len({round(v) for v in speeds.values()}) == 3 and min(speeds.values()) > 0


def test_impossible_layouts_fail_like_sglang():
    # FP8 experts of 1536 columns split 8 ways are not whole 128-wide blocks.
    with pytest.raises(SimStartupError, match="weight_block_size=128"):
        build_engine({"tp-size": 8}, **QWEN)
    with pytest.raises(ValueError, match="must divide --tp-size=8"):
        build_engine({"tp-size": 8, "ep-size": 3}, **QWEN)
    with pytest.raises(ValueError, match="--dp-size=3 must divide"):
        build_engine(
            {"tp-size": 8, "ep-size": 8, "enable-dp-attention": True, "dp-size": 3}, **QWEN
        )
    # moe_tp 8 (dp attention without ep) hits the FP8 block size too; ep 4 x dp 2 loads.
    with pytest.raises(SimStartupError, match="weight_block_size=128"):
        build_engine({"tp-size": 8, "enable-dp-attention": True, "dp-size": 2}, **QWEN)
    s = resolve_settings(
        {"tp-size": 8, "ep-size": 4, "enable-dp-attention": True, "dp-size": 2}, **QWEN
    )
    assert (s.moe_layout, s.ep_size, s.dp_attention_size) == ("ep4_dpa2", 4, 2)
    with pytest.raises(ValueError, match="no simulated profile"):
        build_engine({"tp-size": 1}, **QWEN)  # 235 GB of FP8 weights: no single-GPU profile


def test_moe_flags_are_ignored_on_dense_models():
    s = resolve_settings(
        {"ep-size": 2, "enable-dp-attention": True, "dp-size": 2, "moe-a2a-backend": "deepep"},
        model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8",
    )  # fmt: skip
    assert s.ignored_flags == ["dp-size", "enable-dp-attention", "ep-size", "moe-a2a-backend"]
    assert (s.ep_size, s.dp_attention_size) == (1, 1)


def test_qwen3_235b_calibration_rows():
    rows = read_rows(QWEN_ROWS)
    assert len(rows) == 24 and {r.tp for r in rows} == {2, 4}
    result = validate(rows)
    assert result["coverage"] == 1.0
    # Issue 17's targets are 15 % / 40 %. Measured (docs/simulator.md): TPOT 10.5 %,
    # TTFT 21.6 % with the MoE prefill scale (seeds in the docs).
    assert result["tpot_mape"] <= 0.12
    assert result["ttft_mape"] <= 0.25


def test_the_moe_prefill_scale_applies_to_moe_prefill_only():
    moe = {"model": "qwen3-235b-a22b", "gpu": "h200_sxm", "dtype": "fp8"}
    dense = {"model": "llama-3.1-8b", "gpu": "h200_sxm", "dtype": "fp8"}
    flags = {"tp-size": 4}
    for profile, factor in ((moe, MOE_PREFILL_SCALE), (dense, 1.0)):
        stock = build_engine(flags, **profile).perf
        unit = build_engine(flags, **profile, calibration=Calibration(moe_prefill_scale=1.0)).perf
        host = stock.host.ms(1, 4) + stock._eager_gap_ms
        assert stock.extend_ms([(4000, 0)]) - host == pytest.approx(
            factor * (unit.extend_ms([(4000, 0)]) - host)
        )
        assert stock.decode_ms(8, 2000.0, graph_bs=8) == unit.decode_ms(8, 2000.0, graph_bs=8)


@pytest.mark.slow
def test_a_moe_study_searches_ep_and_dp_attention_on_the_virtual_clock(tmp_path):
    run_cli(
        tmp_path,
        "model=qwen3-235b-a22b-fp8",
        "search=grid",
        "search.baseline=false",
        "benchmark=quick",
        "params.mem=0.88",
        "params.tp-size=8",
        "params.dp-size=8",
        "params.ep-size=1,8",
        "params.enable-dp-attention=true,false",
        "deploy.clock=virtual",
        check=True,
    )
    _, children = runs(tmp_path)
    assert len(children) == 4
    ok = children[children["tags.autotune.status"] != "failed"]
    failed = children[children["tags.autotune.status"] == "failed"]
    # ep-size 1 at tp-size 8 cannot load the FP8 experts; ep-size 8 runs with and without DP attention.
    assert len(ok) == 2 and len(failed) == 2
    assert set(ok["params.ep-size"]) == {"8"} and set(failed["params.ep-size"]) == {"1"}
    assert set(ok["params.enable-dp-attention"]) == {"True", "False"}
