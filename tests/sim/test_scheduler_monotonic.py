"""Sanity properties of the simulated SGLang engine: more load, memory, TP or chunk
size must move the numbers the way they move on a real server."""

from __future__ import annotations

import pytest

from autotune.sim.predict import predict
from autotune.sim.settings import resolve_settings
from autotune.sim.types import SimStartupError

BASE = dict(model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8", tp=1, isl=1024, osl=256)


def run(**kw):
    args = {**BASE, "concurrency": 1, "num_requests": 8, **kw}
    return predict(**args)


def test_tpot_rises_with_concurrency():
    tpots = [run(concurrency=c, num_requests=4 * c)["tpot_ms"] for c in (1, 4, 16, 64, 256)]
    assert all(a < b for a, b in zip(tpots, tpots[1:], strict=False)), tpots
    # Batching amortises weights: 256 users are far from 256x slower per token.
    assert tpots[-1] < 10 * tpots[0]


@pytest.mark.parametrize(
    "model,gpu,dtype,tp",
    [
        ("llama-3.1-8b", "h100_sxm", "bf16", 1),
        ("llama-3.1-8b", "h200_sxm", "fp8", 2),
        ("llama-3.1-70b", "h200_sxm", "bf16", 4),
        ("qwen3-32b", "h100_sxm", "fp8", 2),
    ],
)
def test_higher_mem_fraction_never_gives_fewer_kv_tokens(model, gpu, dtype, tp):
    tokens = []
    for pct in range(60, 96):
        s = resolve_settings(
            {"mem-fraction-static": pct / 100, "tp-size": tp}, model=model, gpu=gpu, dtype=dtype
        )
        tokens.append(s.max_total_num_tokens)
    # Each extra percent of a 80-141 GB GPU is ~1 GB: strictly more tokens every time.
    assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False)), tokens


def test_kv_fp8_doubles_capacity():
    bf16 = resolve_settings({}, model="llama-3.1-8b", gpu="h100_sxm", dtype="bf16")
    fp8 = resolve_settings({"kv-cache-dtype": "fp8_e4m3"}, model="llama-3.1-8b", gpu="h100_sxm")
    assert fp8.max_total_num_tokens == pytest.approx(2 * bf16.max_total_num_tokens, abs=2)


@pytest.mark.parametrize(
    "model,gpu,dtype,tps",
    [
        ("llama-3.1-8b", "h200_sxm", "fp8", (1, 2, 4, 8)),
        ("llama-3.1-70b", "h200_sxm", "bf16", (2, 4, 8)),
        ("qwen3-32b", "h100_sxm", "bf16", (2, 4, 8)),
    ],
)
def test_more_tp_lowers_latency_at_low_load(model, gpu, dtype, tps):
    e2e = [run(model=model, gpu=gpu, dtype=dtype, tp=tp)["e2e_latency_ms"] for tp in tps]
    assert all(a > b for a, b in zip(e2e, e2e[1:], strict=False)), e2e


def test_smaller_chunk_raises_ttft_for_long_prompts():
    ttft = [
        run(isl=16000, osl=16, flags={"chunked-prefill-size": chunk})["ttft_ms"]
        for chunk in (512, 2048, 8192)
    ]
    assert ttft[0] > ttft[1] > ttft[2], ttft


def test_too_small_fraction_fails_like_sglang():
    with pytest.raises(SimStartupError) as err:
        resolve_settings({"mem-fraction-static": 0.1}, model="llama-3.1-8b", gpu="h100_sxm")
    assert str(err.value).startswith(
        "Not enough memory. Please try to increase --mem-fraction-static. Current value:"
    )
    assert "0.1" in str(err.value)


def test_weights_that_do_not_fit_fail_at_default_fraction():
    # 70B in BF16 is ~141 GB of weights: one H200 cannot hold them.
    with pytest.raises(SimStartupError, match="Not enough memory"):
        resolve_settings({}, model="llama-3.1-70b", gpu="h200_sxm", dtype="bf16")


def test_too_large_fraction_fails_graph_capture():
    with pytest.raises(SimStartupError, match="Capture cuda graph failed"):
        resolve_settings({"mem-fraction-static": 0.995}, model="llama-3.1-8b", gpu="h100_sxm")
    with pytest.raises(SimStartupError, match="CUDA out of memory"):
        resolve_settings(
            {"mem-fraction-static": 0.995, "disable-cuda-graph": True},
            model="llama-3.1-8b",
            gpu="h100_sxm",
        )


def test_cuda_graphs_matter_below_and_above_max_bs():
    at_c16 = run(concurrency=16, num_requests=64)["tpot_ms"]
    eager_above = run(concurrency=16, num_requests=64, flags={"cuda-graph-max-bs": 8})["tpot_ms"]
    assert eager_above > at_c16
    solo = run()["tpot_ms"]
    no_graph = run(flags={"disable-cuda-graph": True})["tpot_ms"]
    assert no_graph > 1.1 * solo


def test_mixed_chunk_trades_tpot_for_ttft():
    plain = run(concurrency=64, num_requests=256)
    mixed = run(concurrency=64, num_requests=256, flags={"enable-mixed-chunk": True})
    assert mixed["ttft_ms"] < plain["ttft_ms"]
    assert mixed["tpot_ms"] > plain["tpot_ms"]
