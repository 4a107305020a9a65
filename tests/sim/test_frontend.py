"""SGLang's output path (autotune/sim/frontend.py) on the virtual clock."""

from __future__ import annotations

import pytest

from autotune.sim.frontend import STREAM_TOKEN_US, FrontEnd
from autotune.sim.predict import length_sampler
from autotune.sim.replay import replay_closed_loop
from autotune.sim.settings import build_engine


def test_fused_steps_are_delivered_like_single_steps() -> None:
    for token_us, step_s in ((46.0, 0.02), (46.0, 0.001), (500.0, 0.01)):
        single, fused = FrontEnd(token_us=token_us), FrontEnd(token_us=token_us)
        single.free_at = fused.free_at = 0.05
        t = 0.0
        for _ in range(7):
            seen = single.deliver(t, t + step_s, tokens=300)
            t += step_s
        assert fused.deliver(0.0, t, tokens=7 * 300, steps=7) == pytest.approx(seen)


def test_a_slow_output_path_caps_the_token_rate() -> None:
    fe = FrontEnd(token_us=100.0)  # 10k tokens/s at most
    t = seen = 0.0
    for _ in range(100):  # the engine offers 500 tokens every 10 ms: 50k tokens/s
        seen = fe.deliver(t, t + 0.01, tokens=500)
        t += 0.01
    assert seen == pytest.approx(100 * 500 * 100e-6 + 0.01)
    assert FrontEnd(token_us=0.0).deliver(0.0, 0.01, tokens=500) == 0.01


def _mean_ttft_ms(osl: int, flags: dict | None = None, token_us: float | None = None) -> float:
    engine = build_engine(
        {"tp-size": 8, **(flags or {})}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8"
    )
    if token_us is not None:
        engine.frontend.token_us = token_us
    records = replay_closed_loop(
        engine, concurrency=512, num_requests=1536, sample_lengths=length_sampler(1000, osl, 0.2)
    )
    ttfts = [r.ttft_s for r in records if r.ok]
    assert len(ttfts) == 1536
    return 1000.0 * sum(ttfts) / len(ttfts)


def test_at_high_output_rates_ttft_grows_with_the_output_length() -> None:
    """The calibration rows' signature at concurrency 512 (TP 8: 2.0, 3.2, 8.0 s of
    TTFT at osl 500, 1000, 2000): clients wait in the output path, not in the engine."""
    assert STREAM_TOKEN_US == 46.0  # the cited measurement, not a fit
    short, long_ = _mean_ttft_ms(300), _mean_ttft_ms(900)
    assert long_ > 1.4 * short
    # Without the output path the engine alone keeps TTFT flat in the output length.
    flat_short, flat_long = _mean_ttft_ms(300, token_us=0.0), _mean_ttft_ms(900, token_us=0.0)
    assert flat_long < 1.2 * flat_short
    assert long_ > 2.0 * flat_long
    # --stream-interval 4 streams a chunk per 4 tokens: a quarter of the work.
    assert _mean_ttft_ms(900, {"stream-interval": 4}) < 0.5 * long_


def test_stream_interval_is_a_modelled_flag_and_must_be_positive() -> None:
    engine = build_engine({"stream-interval": 8}, model="llama-3.1-8b", gpu="h200_sxm")
    assert engine.frontend.stream_interval == 8
    assert "stream-interval" not in engine.server_info()["ignored_flags"]
    with pytest.raises(ValueError, match="--stream-interval must be at least 1"):
        build_engine({"stream-interval": 0}, model="llama-3.1-8b", gpu="h200_sxm")
