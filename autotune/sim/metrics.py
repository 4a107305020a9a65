"""Prometheus ``sglang:*`` metrics of the simulated server (``--enable-metrics``).

Names, kinds and labels follow SGLang 0.5.x (``metrics/collector.py``): scheduler
gauges carry ``model_name``, ``engine_type``, ``tp_rank`` and ``pp_rank``; request
counters and latency histograms carry ``model_name``. Gauges are read from the
engine's ``stats()`` when ``/metrics`` is scraped, so the hot path only pays for
counters and histogram observations.

    m = SimMetrics("llama")
    m.on_request_finished(prompt_tokens=512, output_tokens=128, cached_tokens=0,
                          ttft_s=0.05, e2e_s=1.3)
    body = m.render(engine.stats())      # bytes, text/plain; version=0.0.4
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

from autotune.sim.types import EngineStats

CONTENT_TYPE = CONTENT_TYPE_LATEST

# SGLang's default bucket bounds (0.5.x collector.py).
TTFT_BUCKETS = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0,
    200.0, 400.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060,
    0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0,
    200.0, 400.0, 600.0, 1200.0, 1800.0, 2400.0,
)  # fmt: skip

_SCHED_LABELS = ("model_name", "engine_type", "tp_rank", "pp_rank")


class SimMetrics:
    """One registry per server; cheap to update from the request path."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        sched = (model_name, "unified", "0", "0")

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"sglang:{name}", doc, _SCHED_LABELS, registry=reg).labels(*sched)

        def counter(name: str, doc: str) -> Counter:
            # prometheus_client appends "_total", as it does for SGLang itself.
            return Counter(f"sglang:{name}", doc, ("model_name",), registry=reg).labels(model_name)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(
                f"sglang:{name}", doc, ("model_name",), buckets=buckets, registry=reg
            ).labels(model_name)

        self.num_running_reqs = gauge("num_running_reqs", "The number of running requests.")
        self.num_queue_reqs = gauge(
            "num_queue_reqs", "The number of requests in the waiting queue."
        )
        self.num_used_tokens = gauge("num_used_tokens", "The number of used tokens.")
        self.token_usage = gauge("token_usage", "The token usage.")
        self.gen_throughput = gauge("gen_throughput", "The generation throughput (token/s).")
        self.cache_hit_rate = gauge("cache_hit_rate", "The prefix cache hit rate.")
        self.num_retracted_reqs = gauge("num_retracted_reqs", "The number of retracted requests.")
        self.new_token_ratio = gauge("new_token_ratio", "The new token ratio.")
        self.is_cuda_graph = gauge("is_cuda_graph", "Whether the batch is using CUDA graph.")

        self.prompt_tokens = counter("prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "generation_tokens", "Number of generation tokens processed."
        )
        self.cached_tokens = counter("cached_tokens", "Number of cached prompt tokens.")
        self.num_requests = counter("num_requests", "Number of requests processed.")
        self.num_aborted_requests = counter("num_aborted_requests", "Number of requests aborted.")

        self.ttft = histogram(
            "time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.itl = histogram(
            "inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        )
        self.e2e = histogram(
            "e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            E2E_BUCKETS,
        )

    def on_first_token(self, ttft_s: float) -> None:
        self.ttft.observe(ttft_s)

    def on_chunk(self, interval_s: float, new_tokens: int) -> None:
        """A streamed chunk of ``new_tokens`` after ``interval_s``: one ITL sample per chunk."""
        if new_tokens > 0:
            self.itl.observe(interval_s / new_tokens)

    def on_request_finished(
        self, *, prompt_tokens: int, output_tokens: int, cached_tokens: int, e2e_s: float
    ) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(output_tokens)
        self.cached_tokens.inc(cached_tokens)
        self.num_requests.inc()
        self.e2e.observe(e2e_s)

    def on_request_aborted(self, *, prompt_tokens: int, output_tokens: int) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(output_tokens)
        self.num_requests.inc()
        self.num_aborted_requests.inc()

    def render(self, stats: EngineStats) -> bytes:
        """Prometheus text exposition with gauges refreshed from ``stats``."""
        self.num_running_reqs.set(stats.num_running_reqs)
        self.num_queue_reqs.set(stats.num_queue_reqs)
        self.num_used_tokens.set(stats.num_used_tokens)
        self.token_usage.set(stats.token_usage)
        self.gen_throughput.set(stats.gen_throughput)
        self.cache_hit_rate.set(stats.cache_hit_rate)
        self.num_retracted_reqs.set(stats.num_retracted_reqs_total)
        self.new_token_ratio.set(stats.new_token_ratio)
        self.is_cuda_graph.set(1.0 if stats.is_cuda_graph else 0.0)
        return _generate_latest(self.registry)
