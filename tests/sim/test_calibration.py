"""deploy.calibration.*: each key changes the simulated engine as documented, and the
stock calibration changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from autotune.launchers.sim import SimConfig, SimLauncher

from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.parse import parse_experiment
from autotune.benchmark.virtual import run_virtual
from autotune.sim.calibration import Calibration, parse_items
from autotune.sim.perf import HOST_SEQ_US, HOST_STEP_MS
from autotune.sim.server_args import build_parser
from autotune.sim.settings import build_engine

MODEL = {"model": "llama-3.1-8b", "gpu": "h100_sxm", "dtype": "bf16"}


def engine(cal: Calibration | None = None, **flags):
    return build_engine(flags, **MODEL, calibration=cal)


def test_stock_calibration_is_the_simulator_as_it_was():
    stock, explicit = engine(), engine(Calibration())
    assert stock.settings == explicit.settings
    assert stock.perf.decode_ms(64, 1500.0, graph_bs=64) == explicit.perf.decode_ms(
        64, 1500.0, graph_bs=64
    )
    assert Calibration().changed() == {} and Calibration().as_args() == []


def test_memory_keys_shrink_the_kv_pool():
    pool = engine(**{"mem-fraction-static": 0.8}).settings.max_total_num_tokens
    kv = engine(Calibration(kv_bytes_scale=2.0), **{"mem-fraction-static": 0.8})
    assert kv.settings.max_total_num_tokens == pytest.approx(pool / 2, rel=1e-3)
    ctx = engine(Calibration(context_gib=5.0), **{"mem-fraction-static": 0.8})
    # 4 GiB more taken before the runner starts: 80 % of it comes out of the pool.
    per_token = engine().settings.kv_bytes_per_token
    lost = pool - ctx.settings.max_total_num_tokens
    assert lost == pytest.approx(0.8 * 4 * 2**30 / per_token, rel=0.01)


def test_activation_and_headroom_keys_decide_start_up_failures():
    from autotune.sim.types import SimStartupError

    flags = {"mem-fraction-static": 0.9, "chunked-prefill-size": 16384}
    engine(**flags)  # starts with the stock memory model
    with pytest.raises(SimStartupError, match="out of memory"):
        engine(Calibration(activation_scale=8.0), **flags)
    with pytest.raises(SimStartupError, match="out of memory"):
        engine(Calibration(min_headroom_gib=9.0), **flags)


def test_cost_keys_scale_step_times():
    stock = engine()
    fast = engine(Calibration(kernel_scale=0.5, host_step_ms=0.0, host_seq_us=0.0))
    dec = stock.perf.decode_ms(64, 1500.0, graph_bs=64)
    host = HOST_STEP_MS + HOST_SEQ_US * 64 / 1000
    assert fast.perf.decode_ms(64, 1500.0, graph_bs=64) == pytest.approx((dec - host) / 2)
    pre = engine(Calibration(prefill_scale=2.0))
    assert pre.perf.decode_ms(64, 1500.0, graph_bs=64) == dec  # decode untouched
    ext = stock.perf.extend_ms([(4096, 0)])
    fixed = stock.perf._eager_gap_ms + HOST_STEP_MS + HOST_SEQ_US / 1000  # not kernels
    assert pre.perf.extend_ms([(4096, 0)]) == pytest.approx(2 * (ext - fixed) + fixed)
    slow_decode = engine(Calibration(decode_scale=1.5))
    assert slow_decode.perf.decode_ms(64, 1500.0, graph_bs=64) > dec
    assert slow_decode.perf.extend_ms([(4096, 0)]) == ext


def test_admission_keys_set_the_new_token_ratio():
    e = engine(Calibration(init_new_token_ratio=0.5, min_new_token_ratio_factor=0.5))
    assert e.init_ratio == 0.5 and e.min_ratio == 0.25
    assert engine().init_ratio == 0.7


def test_unknown_or_negative_keys_are_refused():
    with pytest.raises(ValueError, match="deploy.calibration.kv_scale: unknown key"):
        Calibration.from_mapping({"kv_scale": 2})
    with pytest.raises(ValueError, match="must be >= 0"):
        Calibration.from_mapping({"kernel_scale": -1})
    assert parse_items(["kernel_scale=0.9"]) == Calibration(kernel_scale=0.9)


def test_the_sim_target_passes_calibration_to_both_clocks(tmp_path: Path):
    from omegaconf import OmegaConf

    cal = Calibration(prefill_scale=3.0)
    realtime = SimLauncher(SimConfig(calibration=cal))
    assert realtime.calibration.as_args() == ["--sim-calibration", "prefill_scale=3.0"]
    args = build_parser().parse_args(["--model", "m", *cal.as_args()])
    assert parse_items(args.sim_calibration) == cal

    workload = Workload(
        scenarios=["D(2048,64)"], concurrency=[8], max_requests_per_run=16,
        max_time_per_run_min=1, task="text-to-text", api_backend="sglang", warmup_requests=0,
    )  # fmt: skip
    sim = {"model": "llama-3.1-8b", "gpu": "h100_sxm", "dtype": "bf16", "flags": {}}

    def ttft(calibration: dict) -> float:
        out = tmp_path / str(len(calibration))
        run_virtual({**sim, "calibration": calibration}, workload, out)
        return parse_experiment(out).metrics()["ttft_mean_ms"]

    assert ttft(cal.changed()) > 2 * ttft({})
    # The structured config states the defaults (the stock constants) once.
    assert OmegaConf.structured(SimConfig).calibration.kernel_scale == 1.0
