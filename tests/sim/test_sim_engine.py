"""The simulated engine's public API: profiles, settings, scheduler behaviour, replay."""

from __future__ import annotations

import time

import pytest

from autotune.sim.perf import available_profiles
from autotune.sim.predict import length_sampler, predict
from autotune.sim.replay import replay_closed_loop
from autotune.sim.settings import build_engine, cuda_graph_batch_sizes, resolve_settings
from autotune.sim.types import SimRequest

M = dict(model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")


def drain(engine, now=0.0, limit=1_000_000):
    events = []
    for _ in range(limit):
        if not engine.has_work():
            return events, now
        out = engine.step(now)
        now += out.duration_s
        events.extend(out.events)
    raise AssertionError("engine did not drain")


# ---------------------------------------------------------------- profiles / settings
def test_available_profiles_cover_the_required_grid():
    profiles = set(available_profiles())
    for gpu in ("h100_sxm", "h200_sxm"):
        for dtype in ("bf16", "fp8"):
            for model in ("llama-3.1-8b", "llama-3.1-70b", "qwen3-8b", "qwen3-32b"):
                for tp in (1, 2, 4, 8):
                    assert (model, gpu, dtype, tp) in profiles
            for tp in (1, 2, 4):  # 28 attention heads: TP 8 is impossible in SGLang
                assert ("qwen2.5-7b", gpu, dtype, tp) in profiles


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(model="llama-9b", gpu="h200_sxm", dtype="fp8"), "llama-3.1-8b"),
        (dict(model="llama-3.1-8b", gpu="a100", dtype="fp8"), "h100_sxm, h200_sxm"),
        (dict(model="llama-3.1-8b", gpu="h200_sxm", dtype="int4"), "bf16, fp8"),
        (dict(model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8", tp=3), "[1, 2, 4, 8]"),
    ],
)
def test_unknown_profile_raises_value_error_naming_what_exists(kwargs, needle):
    tp = kwargs.pop("tp", 1)
    with pytest.raises(ValueError) as err:
        build_engine({"tp-size": tp}, **kwargs)
    assert needle in str(err.value)


def test_tp_not_dividing_heads_is_not_a_profile():
    with pytest.raises(ValueError, match="cannot shard 28 attention heads over 8 GPUs"):
        build_engine({"tp-size": 8}, model="qwen2.5-7b", gpu="h100_sxm", dtype="bf16")


def test_auto_defaults_match_sglang_formulas():
    s = resolve_settings({}, **M)
    assert s.mem_fraction_static == 0.907  # (mem - 13440 MB reserved) / mem on 141 GB
    assert (s.chunked_prefill_size, s.max_prefill_tokens, s.cuda_graph_max_bs) == (8192, 16384, 256)
    pool = s.max_total_num_tokens
    assert s.max_running_requests == min(pool // 2, min(max(int(pool / 131072 * 512), 2048), 4096))
    assert s.max_running_requests == 3775
    assert s.schedule_policy == "fcfs" and s.schedule_conservativeness == 1.0
    tp4 = resolve_settings({"tp-size": 4}, **M)
    assert tp4.cuda_graph_max_bs == 512
    h100 = resolve_settings({}, model="llama-3.1-8b", gpu="h100_sxm", dtype="bf16")
    # SGLang reads nvidia-smi's 81559 MiB, not the nominal 80 GiB
    assert h100.mem_fraction_static == 0.835
    assert cuda_graph_batch_sizes(40) == [1, 2, 4, 8, 12, 16, 24, 32, 40]


def test_ignored_flags_are_reported_and_modelled_flags_typed():
    s = resolve_settings(
        {
            "--mem-fraction-static": "0.8",
            "enable_mixed_chunk": "true",
            "page-size": 4,
            "enable-metrics": True,
            "schedule-policy": "LPM",
            "max-running-requests": "64",
        },
        **M,
    )
    assert s.ignored_flags == ["enable-metrics", "page-size"]
    info = s.as_server_info()
    assert info["ignored_flags"] == ["enable-metrics", "page-size"]
    assert info["mem_fraction_static"] == 0.8 and info["enable_mixed_chunk"] is True
    assert info["schedule_policy"] == "lpm" and info["max_running_requests"] == 64
    for key in ("max_total_num_tokens", "chunked_prefill_size", "cuda_graph_max_bs", "tp_size"):
        assert key in info
    assert info["simulated"] is True


def test_bad_flag_values_are_rejected():
    with pytest.raises(ValueError, match="schedule-policy"):
        resolve_settings({"schedule-policy": "sjf"}, **M)
    with pytest.raises(ValueError, match="mem-fraction-static"):
        resolve_settings({"mem-fraction-static": "lots"}, **M)


def test_max_total_tokens_only_lowers_the_pool():
    full = resolve_settings({}, **M).max_total_num_tokens
    assert resolve_settings({"max-total-tokens": 50_000}, **M).max_total_num_tokens == 50_000
    assert resolve_settings({"max-total-tokens": 10 * full}, **M).max_total_num_tokens == full


# ---------------------------------------------------------------- scheduler behaviour
def test_events_of_one_request():
    eng = build_engine({}, **M)
    eng.add(SimRequest(rid="a", input_len=300, output_len=100))
    events, now = drain(eng)
    kinds = [e.kind for e in events]
    assert kinds[0] == "first_token" and kinds[-1] == "finished"
    assert set(kinds[1:-1]) == {"tokens"}
    counts = [e.output_tokens for e in events]
    assert counts == sorted(counts) and counts[-1] == 100
    assert events[-1].time == pytest.approx(now)


def test_step_is_cheap_at_batch_256():
    eng = build_engine({}, **M)
    for i in range(256):
        eng.add(SimRequest(rid=f"r{i}", input_len=512, output_len=3000))
    now = 0.0
    while eng.stats().num_running_reqs < 256:
        now += eng.step(now).duration_s
    t0 = time.perf_counter()
    for _ in range(500):
        now += eng.step(now).duration_s
    per_step = (time.perf_counter() - t0) / 500
    assert per_step < 1e-3, per_step


def test_kv_pressure_retracts_and_everything_still_finishes():
    eng = build_engine({"max-total-tokens": 20_000}, **M)
    recs = replay_closed_loop(
        eng, concurrency=32, num_requests=64, sample_lengths=lambda rng: (1000, 1000)
    )
    assert all(r.ok for r in recs) and len(recs) == 64
    assert eng.stats().num_retracted_reqs_total > 0
    assert all(r.output_tokens == 1000 for r in recs)


def test_max_running_requests_caps_the_batch():
    eng = build_engine({"max-running-requests": 8}, **M)
    for i in range(32):
        eng.add(SimRequest(rid=f"r{i}", input_len=200, output_len=50))
    peak = 0
    now = 0.0
    while eng.has_work():
        now += eng.step(now).duration_s
        peak = max(peak, eng.stats().num_running_reqs)
    assert peak == 8


def test_prefix_cache_hits_with_lpm_and_none_without_radix():
    def prefixes(rng):
        return 900, f"system-prompt-{rng.randrange(4)}"

    hits = {}
    for flags in ({"schedule-policy": "lpm"}, {"disable-radix-cache": True}):
        eng = build_engine(flags, **M)
        recs = replay_closed_loop(
            eng,
            concurrency=16,
            num_requests=64,
            sample_lengths=lambda rng: (1000, 64),
            sample_prefix=prefixes,
        )
        hits[bool(flags.get("disable-radix-cache"))] = sum(r.cached_tokens for r in recs)
        assert all(r.ok for r in recs)
    assert hits[False] >= 900 * 40  # almost every request after the first four hits
    assert hits[True] == 0


def test_oversized_request_is_rejected_not_hung():
    eng = build_engine({}, model="qwen3-8b", gpu="h100_sxm", dtype="bf16")  # 40960 context
    eng.add(SimRequest(rid="big", input_len=40_000, output_len=2_000))
    events, _ = drain(eng)
    assert [e.kind for e in events] == ["aborted"]


def test_abort_frees_the_request():
    eng = build_engine({}, **M)
    eng.add(SimRequest(rid="a", input_len=500, output_len=1000))
    eng.step(0.0)
    assert eng.stats().num_running_reqs == 1
    eng.abort("a")
    assert eng.stats().num_used_tokens == 0
    events, _ = drain(eng)
    assert [e.kind for e in events] == ["aborted"]


# ---------------------------------------------------------------- replay / predict
def test_replay_is_deterministic_for_a_seed():
    def once(seed):
        eng = build_engine({}, **M, seed=seed)
        recs = replay_closed_loop(
            eng,
            concurrency=24,
            num_requests=96,
            sample_lengths=length_sampler(1024, 256, 0.3),
            seed=seed,
        )
        return [(r.rid, r.output_tokens, r.first_token_s, r.end_s) for r in recs]

    assert once(7) == once(7)
    assert once(7) != once(8)


def test_replay_records_follow_genai_bench_definitions():
    eng = build_engine({}, **M)
    recs = replay_closed_loop(
        eng, concurrency=4, num_requests=12, sample_lengths=lambda r: (256, 33)
    )
    for r in recs:
        assert r.ok and r.start_s <= r.first_token_s < r.end_s
        assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / 32)
    # closed loop: a user's next request starts when its previous one ends
    by_user = {}
    for r in recs:
        by_user.setdefault(r.user, []).append(r)
    for seq in by_user.values():
        for prev, nxt in zip(seq, seq[1:], strict=False):
            assert nxt.start_s == pytest.approx(prev.end_s)


def test_max_time_drops_requests_in_flight():
    eng = build_engine({}, **M)
    recs = replay_closed_loop(
        eng, concurrency=8, num_requests=1000, sample_lengths=lambda r: (512, 512), max_time_s=5.0
    )
    assert 0 < sum(r.ok for r in recs) < 1000
    assert all(r.end_s <= 5.0 for r in recs if r.ok)
    assert all(r.end_s is None for r in recs if not r.ok)


def test_predict_reports_throughput_consistent_with_latency():
    out = predict(**M, tp=1, isl=1024, osl=128, concurrency=8, num_requests=64)
    assert out["simulated"] is True and out["num_completed_requests"] == 64
    # 8 users, each producing 128 tokens per e2e latency
    expected = 8 * 128 / (out["e2e_latency_ms"] / 1000)
    assert out["output_throughput_tok_s"] == pytest.approx(expected, rel=0.15)
    assert out["ttft_ms_p50"] <= out["ttft_ms_p99"]


def test_users_spawn_like_genai_bench():
    eng = build_engine({}, **M)
    recs = replay_closed_loop(
        eng, concurrency=10, num_requests=20, sample_lengths=lambda r: (128, 8), spawn_rate=10
    )
    first = {}
    for r in recs:
        first.setdefault(r.user, r.start_s)
    assert [first[u] for u in range(10)] == pytest.approx([u / 10 for u in range(10)])
    eng = build_engine({}, **M)
    recs = replay_closed_loop(
        eng, concurrency=10, num_requests=20, sample_lengths=lambda r: (128, 8)
    )  # the default: all users at once, as genai-bench starts them
    assert sorted(r.start_s for r in recs)[:10] == [0.0] * 10


def test_output_is_clipped_so_one_request_fits_the_pool():
    eng = build_engine({"max-total-tokens": 5000, "disable-radix-cache": True}, **M)
    eng.add(SimRequest(rid="huge", input_len=2000, output_len=100_000))
    eng.add(SimRequest(rid="small", input_len=100, output_len=10))
    events, _ = drain(eng)
    final = {e.rid: (e.kind, e.output_tokens) for e in events if e.kind == "finished"}
    # SGLang: max_new_tokens <= max_req_len - input - 1, max_req_len = pool - 1
    assert final == {"huge": ("finished", 5000 - 1 - 2000 - 1), "small": ("finished", 10)}
