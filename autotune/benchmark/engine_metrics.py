"""The engine's own gauges while the benchmark runs: scraped, normalised, summarised.

Every ``benchmark.metrics_interval_s`` a thread GETs ``base_url + runtime.metrics_path``
(Prometheus text), parses it with prometheus_client's parser and keeps the series
that explain a benchmark's numbers, under one name per meaning whatever the engine::

    engine.num_running_reqs   sglang:num_running_reqs     vllm:num_requests_running
    engine.num_queue_reqs     sglang:num_queue_reqs       vllm:num_requests_waiting
    engine.token_usage        sglang:token_usage          vllm:kv_cache_usage_perc (or gpu_)
    engine.num_used_tokens    sglang:num_used_tokens      -
    engine.gen_throughput     sglang:gen_throughput       rate of vllm:generation_tokens
    engine.cache_hit_rate     sglang:cache_hit_rate       vllm:prefix_cache_hits / _queries
    engine.num_retracted_reqs sglang:num_retracted_reqs   vllm:num_preemptions (cumulative)

Time is seconds since the benchmark started. Summaries: ``engine.peak_running_reqs``,
``engine.peak_queue``, ``engine.peak_kv_usage``, ``engine.mean_gen_throughput``,
``engine.final_cache_hit_rate``, ``engine.samples``. A failed scrape is logged and
skipped; nothing here can fail a trial.

    with EngineMetrics(endpoint.base_url + "/metrics", interval_s=2.0) as scrape:
        run = launcher.benchmark(endpoint, request)
    scrape.series["engine.num_queue_reqs"]      # [(0.0, 0.0), (2.0, 14.0), ...]
    summarize(scrape.series)["engine.peak_queue"]
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

Series = dict[str, list[tuple[float, float]]]

# Gauges: engine family name -> normalised name. Several label sets (tp / dp ranks,
# engines) are summed for counts and averaged for fractions.
GAUGES: dict[str, str] = {
    "sglang:num_running_reqs": "num_running_reqs",
    "sglang:num_queue_reqs": "num_queue_reqs",
    "sglang:token_usage": "token_usage",
    "sglang:num_used_tokens": "num_used_tokens",
    "sglang:gen_throughput": "gen_throughput",
    "sglang:cache_hit_rate": "cache_hit_rate",
    "sglang:num_retracted_reqs": "num_retracted_reqs",
    "vllm:num_requests_running": "num_running_reqs",
    "vllm:num_requests_waiting": "num_queue_reqs",
    # vLLM V1 (>= 0.10) reports kv_cache_usage_perc; older ones gpu_cache_usage_perc.
    # Both are fractions (1 = 100 %), like SGLang's token_usage.
    "vllm:kv_cache_usage_perc": "token_usage",
    "vllm:gpu_cache_usage_perc": "token_usage",
    "vllm:num_preemptions": "num_retracted_reqs",
}
_FRACTIONS = {"token_usage", "cache_hit_rate"}
# vLLM counters turned into engine.* values between two scrapes.
_COUNTERS = (
    "vllm:generation_tokens",
    "vllm:prefix_cache_hits",
    "vllm:prefix_cache_queries",
)


def parse_engine_metrics(text: str) -> dict[str, float]:
    """Normalised gauges (``engine.<name>``) and raw counters from one /metrics body."""
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        name = GAUGES.get(family.name)
        if name is not None:
            key = f"engine.{name}"
        elif family.name in _COUNTERS:
            key = family.name
        else:
            continue
        values = [
            s.value
            for s in family.samples
            if s.name in (family.name, f"{family.name}_total") and s.value == s.value
        ]
        if values:
            sums.setdefault(key, []).extend(values)
    out = {}
    for key, values in sums.items():
        fraction = key.removeprefix("engine.") in _FRACTIONS
        out[key] = sum(values) / len(values) if fraction else sum(values)
    return out


class _CounterRates:
    """vLLM's counters as the gauges SGLang reports (throughput, hit rate)."""

    def __init__(self) -> None:
        self.last: tuple[float, dict[str, float]] | None = None

    def __call__(self, t: float, raw: dict[str, float]) -> dict[str, float]:
        counters = {k: raw.pop(k) for k in _COUNTERS if k in raw}
        out: dict[str, float] = {}
        hits, queries = (
            counters.get("vllm:prefix_cache_hits"),
            counters.get("vllm:prefix_cache_queries"),
        )
        if hits is not None and queries:
            out["engine.cache_hit_rate"] = hits / queries
        if self.last is not None and "vllm:generation_tokens" in counters:
            t0, before = self.last
            if t > t0 and "vllm:generation_tokens" in before:
                delta = counters["vllm:generation_tokens"] - before["vllm:generation_tokens"]
                out["engine.gen_throughput"] = max(0.0, delta) / (t - t0)
        self.last = (t, counters)
        return out


class EngineMetrics:
    """Scrape ``url`` every ``interval_s`` in a thread while the ``with`` block runs.

    ``series`` holds the points; ``extend`` adds points measured elsewhere (the
    simulator's virtual clock). ``url=None`` scrapes nothing.
    """

    def __init__(
        self,
        url: str | None,
        interval_s: float,
        get: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.interval_s = float(interval_s)
        self.series: Series = {}
        self.failures = 0
        self._get = get or _http_get
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rates = _CounterRates()
        self._t0 = 0.0

    def __enter__(self) -> EngineMetrics:
        self._t0 = self._clock()
        if self.url and self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="engine-metrics", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        if self.failures:
            log.info("engine metrics: %d scrape(s) of %s failed", self.failures, self.url)

    def extend(self, series: Mapping[str, Iterable[tuple[float, float]]] | None) -> None:
        for name, points in (series or {}).items():
            self.series.setdefault(name, []).extend((float(t), float(v)) for t, v in points)

    def scrape_once(self) -> None:
        """One GET and parse; failures are counted, never raised."""
        t = self._clock() - self._t0
        try:
            raw = parse_engine_metrics(self._get(str(self.url)))
        except Exception as e:  # a scrape must never fail the trial
            self.failures += 1
            if self.failures == 1:
                log.warning("engine metrics from %s unavailable: %s", self.url, e)
            return
        raw.update(self._rates(t, raw))
        for name, value in raw.items():
            self.series.setdefault(name, []).append((round(t, 3), float(value)))

    def _loop(self) -> None:
        while True:
            self.scrape_once()
            if self._stop.wait(self.interval_s):
                return


def _http_get(url: str) -> str:
    import httpx

    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return response.text


def summarize(series: Mapping[str, list[tuple[float, float]]]) -> dict[str, float]:
    """Peaks and means of the series (only those that were measured)."""

    def values(name: str) -> list[float]:
        return [v for _, v in series.get(f"engine.{name}", [])]

    out: dict[str, float] = {}
    for key, name in (
        ("engine.peak_running_reqs", "num_running_reqs"),
        ("engine.peak_queue", "num_queue_reqs"),
        ("engine.peak_kv_usage", "token_usage"),
    ):
        if vals := values(name):
            out[key] = max(vals)
    if vals := values("gen_throughput"):
        out["engine.mean_gen_throughput"] = sum(vals) / len(vals)
    if vals := values("cache_hit_rate"):
        out["engine.final_cache_hit_rate"] = vals[-1]
    if series:
        out["engine.samples"] = float(max(len(p) for p in series.values()))
    return out


def scrape_url(base_url: str, metrics_path: str | None, virtual: bool) -> str | None:
    """Where to scrape (None: the engine has no endpoint, or no HTTP at all)."""
    if virtual or not metrics_path:
        return None
    return base_url.rstrip("/") + "/" + metrics_path.lstrip("/")


@contextlib.contextmanager
def during_benchmark(endpoint: Any, cfg: Any, events: Any) -> Iterator[EngineMetrics]:
    """Scrape the trial's engine while the block runs, then hand the series and their
    summaries to the trial's observers (also when the block fails)."""
    interval = float(cfg.benchmark.get("metrics_interval_s", 2.0) or 0.0)
    url = scrape_url(endpoint.base_url, cfg.runtime.get("metrics_path"), endpoint.virtual)
    scrape = EngineMetrics(url if interval > 0 else None, interval)
    try:
        with scrape:
            yield scrape
    finally:
        if scrape.series:
            events.series(dict(scrape.series))
            events.metrics(summarize(scrape.series))


def as_points(samples: Iterable[tuple[float, Mapping[str, Any]]]) -> Series:
    """(time, {name: value}) samples -> ``engine.<name>`` series (the simulator's stats)."""
    out: Series = {}
    for t, stats in samples:
        for name, value in stats.items():
            out.setdefault(f"engine.{name}", []).append((float(t), float(value)))
    return out
