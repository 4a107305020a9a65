"""Randomised workloads and flags: the scheduler's bookkeeping must always hold.

The KV pool is never over-committed, every request ends exactly once, the engine
never stalls with work left, and an idle engine holds nothing but cached prefixes.
"""

from __future__ import annotations

import random

import pytest

from autotune.sim.settings import build_engine
from autotune.sim.types import SimRequest


def random_flags(rng: random.Random) -> dict:
    flags: dict = {}
    if rng.random() < 0.6:
        flags["max-total-tokens"] = rng.choice([3000, 8000, 20000])
    if rng.random() < 0.3:
        flags["chunked-prefill-size"] = rng.choice([256, 1024, -1])
    if rng.random() < 0.3:
        flags["enable-mixed-chunk"] = True
    if rng.random() < 0.3:
        flags["disable-radix-cache"] = True
    if rng.random() < 0.4:
        flags["schedule-policy"] = rng.choice(["lpm", "random", "lof", "dfs-weight"])
    if rng.random() < 0.3:
        flags["max-running-requests"] = rng.choice([1, 4, 16])
    if rng.random() < 0.3:
        flags["schedule-conservativeness"] = rng.choice([0.3, 2.0])
    return flags


@pytest.mark.parametrize("seed", range(12))
def test_bookkeeping_holds_under_random_load(seed):
    rng = random.Random(seed)
    eng = build_engine(random_flags(rng), model="qwen3-8b", gpu="h100_sxm", dtype="fp8", seed=seed)
    n = rng.randint(5, 30)
    arrivals = sorted((rng.uniform(0, 1), i) for i in range(n))
    ended: dict[str, str] = {}
    now = 0.0
    for _ in range(100_000):
        while arrivals and arrivals[0][0] <= now:
            t, i = arrivals.pop(0)
            plen = rng.choice([0, 0, 400])
            eng.add(
                SimRequest(
                    rid=f"r{i}",
                    input_len=rng.randint(1, 2500),
                    output_len=rng.randint(1, 300),
                    arrival=t,
                    prefix_len=plen,
                    prefix_key=f"k{rng.randrange(3)}" if plen else None,
                )
            )
            if rng.random() < 0.05:
                eng.abort(f"r{i}")
        if not eng.has_work():
            if not arrivals:
                break
            now = arrivals[0][0]
            continue
        out = eng.step(now, rng.choice([1, 1, 1000]))
        now += out.duration_s
        st = eng.stats()
        assert 0 <= st.num_used_tokens <= st.max_total_num_tokens
        assert out.duration_s >= 0
        assert not (out.kind == "idle" and not out.events and eng.has_work()), "stalled"
        for ev in out.events:
            if ev.kind in ("finished", "aborted"):
                assert ev.rid not in ended
                ended[ev.rid] = ev.kind
    assert len(ended) == n
    st = eng.stats()
    assert st.num_running_reqs == st.num_queue_reqs == 0
    # Only evictable prefixes remain, and SGLang does not count those as used.
    assert eng._cache.locked == 0 and st.num_used_tokens == 0
