"""An unmeasured warm-up before a real-time benchmark (``benchmark.warmup_requests``).

A fresh engine's first requests are slower (clocks ramping up, kernels and memory
set up on first use); measured, they charge a configuration for its cold start.
genai-bench's own ``--warmup-ratio`` cannot be used: it drops the warm-up requests
from the metrics but not from the run's duration, so the reported throughput
falls (halved in ../shared/notes/genai-bench.md). Trimming the first requests
from its ``individual_request_metrics`` would leave the same wrong duration in
the aggregated numbers. So the warm-up is a separate closed loop run here before
genai-bench starts, whose results are thrown away: ``users`` clients (the highest
concurrency level, so every batch slot the benchmark will use has run once) send
``requests`` chat completions shaped like the first scenario.

    done = warm_up(endpoint.base_url, "model", requests=32, users=32, scenario="D(1024,256)")
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from autotune.benchmark.dataset import DATASET_SCENARIO
from autotune.benchmark.scenarios import sample_lengths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmupResult:
    sent: int
    ok: int
    seconds: float


def warm_up(
    base_url: str,
    model_name: str,
    *,
    requests: int,
    users: int,
    scenario: str,
    api_key: str | None = None,
    timeout_s: float = 600.0,
) -> WarmupResult:
    """Send ``requests`` completions from ``users`` closed-loop clients; keep no metrics."""
    if requests <= 0:
        return WarmupResult(0, 0, 0.0)
    # Dataset mode has no lengths to copy: a mid-sized chat request warms up as well.
    draw = sample_lengths(scenario) if scenario != DATASET_SCENARIO else lambda rng: (256, 128)
    rng = random.Random(f"autotune-warmup/{scenario}")
    shapes = [draw(rng) for _ in range(requests)]
    lock = threading.Lock()
    left, ok = list(shapes), [0]
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.monotonic()

    def user() -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s) as client:
            while time.monotonic() < deadline:
                with lock:
                    if not left:
                        return
                    isl, osl = left.pop()
                try:
                    r = client.post(
                        "/v1/chat/completions",
                        # The warm-up never outlives its deadline (a hung engine).
                        timeout=max(0.1, deadline - time.monotonic()),
                        json={
                            "model": model_name,
                            # About one token per word: a prompt of the scenario's length.
                            "messages": [{"role": "user", "content": "hello " * max(isl, 1)}],
                            "max_tokens": max(osl, 1),
                            "stream": False,
                        },
                    )
                    good = r.status_code == 200
                except httpx.HTTPError:
                    good = False
                with lock:
                    ok[0] += good

    with ThreadPoolExecutor(max_workers=max(1, min(users, requests))) as pool:
        for _ in range(max(1, min(users, requests))):
            pool.submit(user)
    result = WarmupResult(requests - len(left), ok[0], time.monotonic() - started)
    log.info(
        "warm-up: %d of %d requests ok in %.1f s (not measured)",
        result.ok,
        result.sent,
        result.seconds,
    )
    return result
