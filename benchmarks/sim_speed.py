"""How fast is the simulator? Two numbers that size what the tuner can afford.

1. One virtual-clock benchmark (``replay_closed_loop``): 2 concurrency levels x 200
   requests, isl 1024 / osl 256, Llama-3.1-8B FP8 on H200 (the budget: a 100-config
   sweep well under 60 s on 2 cores means well under 0.3 s per config).
2. One real-time ``engine.step(now)`` (what the HTTP server calls), unfused, at
   decode batches of 64 and 256 (the budget: well under 1 ms).

    .venv/bin/python benchmarks/sim_speed.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autotune.sim.replay import replay_closed_loop  # noqa: E402
from autotune.sim.settings import build_engine  # noqa: E402
from autotune.sim.types import SimRequest  # noqa: E402

MODEL, GPU, DTYPE = "llama-3.1-8b", "h200_sxm", "fp8"


def one_benchmark(concurrencies: tuple[int, ...] = (16, 64), requests: int = 200) -> float:
    """Seconds for one trial's virtual benchmark (build engine + replay per level)."""
    t0 = time.perf_counter()
    for c in concurrencies:
        engine = build_engine({}, model=MODEL, gpu=GPU, dtype=DTYPE)
        replay_closed_loop(
            engine, concurrency=c, num_requests=requests, sample_lengths=lambda rng: (1024, 256)
        )
    return time.perf_counter() - t0


def step_cost_us(batch: int, steps: int = 2000) -> float:
    """Mean wall time of one unfused step at a steady decode batch, as the server runs it."""
    engine = build_engine({}, model=MODEL, gpu=GPU, dtype=DTYPE)
    for i in range(batch):
        # Short enough that admission's KV reservation lets the whole batch in.
        engine.add(SimRequest(rid=f"r{i}", input_len=512, output_len=steps + 500))
    now = 0.0
    for _ in range(10 * batch):  # admit and prefill everyone first
        if engine.stats().num_running_reqs >= batch:
            break
        now += engine.step(now).duration_s
    else:
        raise RuntimeError(f"could not fill a decode batch of {batch}")
    t0 = time.perf_counter()
    for _ in range(steps):
        now += engine.step(now).duration_s
    return (time.perf_counter() - t0) / steps * 1e6


def main() -> int:
    one_benchmark()  # warm caches (profile JSON, interpolation memos)
    replay = [one_benchmark() for _ in range(5)]
    result = {
        "replay_2x200_isl1024_osl256_s_median": round(statistics.median(replay), 4),
        "replay_2x200_isl1024_osl256_s_max": round(max(replay), 4),
        "sweep_100_configs_s_estimate": round(100 * statistics.median(replay), 1),
        "step_us_batch64": round(step_cost_us(64), 1),
        "step_us_batch256": round(step_cost_us(256), 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
