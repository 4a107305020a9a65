"""One simulated benchmark point: closed-loop load at a fixed concurrency, summarised
the way genai-bench reports it.

    >>> out = predict(model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8", tp=1,
    ...               isl=1024, osl=128, concurrency=8, num_requests=16)
    >>> out["simulated"], out["num_completed_requests"]
    (True, 16)
"""

from __future__ import annotations

import math
import random
from typing import Any

from autotune.sim.replay import RequestRecord, replay_closed_loop
from autotune.sim.settings import build_engine


def _pct(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarize(records: list[RequestRecord]) -> dict[str, Any]:
    """genai-bench-style metrics (ms, tokens/s) over the completed requests.

    TTFT is send -> first token; TPOT = (e2e - ttft) / (output_tokens - 1); the
    throughput is all output tokens over the run's span (first send -> last end).
    """
    ok = [r for r in records if r.ok]
    ttft = [r.ttft_s * 1000.0 for r in ok if r.ttft_s is not None]
    tpot = [r.tpot_s * 1000.0 for r in ok if r.tpot_s is not None]
    e2e = [r.e2e_s * 1000.0 for r in ok if r.e2e_s is not None]
    out: dict[str, Any] = {"simulated": True}
    for name, vals in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2e_latency_ms", e2e)):
        out[name] = _mean(vals)
        out[f"{name}_p50"] = _pct(vals, 50)
        out[f"{name}_p90"] = _pct(vals, 90)
        out[f"{name}_p99"] = _pct(vals, 99)
    if ok:
        start = min(r.start_s for r in records)
        end = max(r.end_s for r in ok if r.end_s is not None)
        span = max(end - start, 1e-9)
        out_tokens = sum(r.output_tokens for r in ok)
        in_tokens = sum(r.input_tokens for r in ok)
        out["output_throughput_tok_s"] = out_tokens / span
        out["input_throughput_tok_s"] = in_tokens / span
        out["requests_per_s"] = len(ok) / span
        out["run_duration_s"] = span
        out["cache_hit_rate"] = sum(r.cached_tokens for r in ok) / in_tokens if in_tokens else 0.0
    else:
        out["output_throughput_tok_s"] = 0.0
        out["input_throughput_tok_s"] = 0.0
        out["requests_per_s"] = 0.0
        out["run_duration_s"] = 0.0
        out["cache_hit_rate"] = 0.0
    out["num_requests"] = len(records)
    out["num_completed_requests"] = len(ok)
    out["num_error_requests"] = len(records) - len(ok)
    return out


def length_sampler(isl: int, osl: int, osl_spread: float = 0.0):
    """(isl, osl) per request; ``osl_spread`` > 0 draws osl uniformly in osl*(1 +- spread)."""
    if osl_spread <= 0:
        return lambda rng: (isl, osl)

    def sample(rng: random.Random) -> tuple[int, int]:
        return isl, max(1, round(osl * rng.uniform(1.0 - osl_spread, 1.0 + osl_spread)))

    return sample


def predict(
    *,
    model: str,
    gpu: str,
    dtype: str,
    tp: int,
    isl: int,
    osl: int,
    concurrency: int,
    flags: dict[str, Any] | None = None,
    seed: int = 0,
    num_requests: int | None = None,
    osl_spread: float = 0.0,
    sglang_version: str | None = None,
) -> dict[str, Any]:
    """Simulate ``num_requests`` (default 4 x concurrency, at least 32) closed-loop requests
    on SGLang ``sglang_version``'s defaults (default: ``DEFAULT_SGLANG_VERSION``)."""
    all_flags = dict(flags or {})
    all_flags["tp-size"] = tp
    engine = build_engine(
        all_flags, model=model, gpu=gpu, dtype=dtype, seed=seed, sglang_version=sglang_version
    )
    n = num_requests if num_requests is not None else max(4 * concurrency, 32)
    records = replay_closed_loop(
        engine,
        concurrency=concurrency,
        num_requests=n,
        sample_lengths=length_sampler(isl, osl, osl_spread),
        seed=seed,
    )
    out = summarize(records)
    info = engine.server_info()
    out.update(
        {
            "model": model,
            "gpu": gpu,
            "dtype": dtype,
            "tp_size": tp,
            "isl": isl,
            "osl": osl,
            "concurrency": concurrency,
            "seed": seed,
            "sglang_version": engine.settings.sglang_version,
            "num_retracted_reqs": engine.stats().num_retracted_reqs_total,
            "server_info": info,
            "ignored_flags": info["ignored_flags"],
        }
    )
    return out
