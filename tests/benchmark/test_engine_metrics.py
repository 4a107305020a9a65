"""Engine metrics during the benchmark: parsing SGLang's and vLLM's /metrics, scraping,
and the series a trial records on the simulator's virtual clock."""

from __future__ import annotations

from pathlib import Path

from autotune.benchmark.engine_metrics import (
    EngineMetrics,
    parse_engine_metrics,
    summarize,
)
from autotune.sim.metrics import SimMetrics
from autotune.sim.types import EngineStats
from autotune.trial.executor import run_trial
from autotune.trial.spec import TrialObserver, TrialSpec

# vLLM V1's exposition, as its metrics/loggers.py writes it (labels abridged): gauges,
# and counters whose samples carry the _total suffix.
VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="tiny"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="tiny"}} {waiting}
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="tiny"}} {usage}
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{engine="0",model_name="tiny"}} {generated}
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{{engine="0",model_name="tiny"}} 400.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{{engine="0",model_name="tiny"}} 100.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_sum{{engine="0",model_name="tiny"}} 3.0
"""


def test_the_simulators_sglang_metrics_parse_to_engine_names():
    stats = EngineStats(
        num_running_reqs=7,
        num_queue_reqs=3,
        num_used_tokens=5000,
        token_usage=0.25,
        gen_throughput=812.5,
        cache_hit_rate=0.5,
        num_retracted_reqs_total=2,
    )
    text = SimMetrics("m").render(stats).decode()
    assert parse_engine_metrics(text) == {
        "engine.num_running_reqs": 7.0,
        "engine.num_queue_reqs": 3.0,
        "engine.num_used_tokens": 5000.0,
        "engine.token_usage": 0.25,
        "engine.gen_throughput": 812.5,
        "engine.cache_hit_rate": 0.5,
        "engine.num_retracted_reqs": 2.0,
    }


def test_vllm_counters_become_rates_between_scrapes():
    bodies = iter(
        [
            VLLM_TEXT.format(running=2, waiting=5, usage=0.5, generated=1000.0),
            VLLM_TEXT.format(running=4, waiting=0, usage=0.75, generated=1600.0),
        ]
    )
    now = iter([10.0, 10.0, 12.0])  # __enter__, then one scrape at 0 s and one at 2 s
    scrape = EngineMetrics(
        "http://127.0.0.1:1/metrics", 0, get=lambda url: next(bodies), clock=lambda: next(now)
    )
    with scrape:  # interval 0: no thread, the test scrapes
        scrape.scrape_once()
        scrape.scrape_once()
    s = scrape.series
    assert [v for _, v in s["engine.num_running_reqs"]] == [2.0, 4.0]
    assert [v for _, v in s["engine.num_queue_reqs"]] == [5.0, 0.0]
    assert [v for _, v in s["engine.token_usage"]] == [0.5, 0.75]
    assert [v for _, v in s["engine.cache_hit_rate"]] == [0.25, 0.25]
    assert s["engine.gen_throughput"] == [(2.0, 300.0)]  # 600 tokens in 2 s; needs 2 scrapes
    summary = summarize(s)
    assert summary["engine.peak_queue"] == 5.0 and summary["engine.peak_kv_usage"] == 0.75
    assert summary["engine.peak_running_reqs"] == 4.0


def test_a_failing_endpoint_records_nothing_and_raises_nothing():
    def refuse(url: str) -> str:
        raise ConnectionError("refused")

    with EngineMetrics("http://127.0.0.1:1/metrics", 0.01, get=refuse) as scrape:
        scrape._stop.wait(0.1)
    assert scrape.series == {} and scrape.failures >= 2


class Collect(TrialObserver):
    def __init__(self) -> None:
        self.got: dict = {}
        self.metrics_seen: dict = {}

    def series(self, series):
        self.got = series

    def metrics(self, metrics):
        self.metrics_seen.update(metrics)


def run(cfg, tmp_path: Path, params: dict) -> Collect:
    seen = Collect()
    spec = TrialSpec(cfg, params, name="t", study="s", workdir=tmp_path / "t")
    result = run_trial(spec, [seen])
    assert result.ok, result.message
    return seen


def test_virtual_clock_series_are_the_simulators_true_state(compose_cfg, tmp_path):
    # 8 closed-loop users against max-running-requests=4: four run, four queue.
    cfg = compose_cfg(
        "deploy.clock=virtual",
        "deploy.noise=0",
        "benchmark.concurrency=[8]",
        "benchmark.max_requests_per_run=40",
        'benchmark.scenarios=["D(512,128)"]',
    )
    seen = run(cfg, tmp_path, {"max-running-requests": 4})
    s = seen.got
    times = [t for t, _ in s["engine.num_running_reqs"]]
    assert times[:3] == [0.0, 2.0, 4.0] and len(times) >= 3  # every 2 simulated seconds
    running = [v for _, v in s["engine.num_running_reqs"]]
    queued = [v for _, v in s["engine.num_queue_reqs"]]
    # At 0 s all eight requests wait for the first step; then four run and four queue
    # (closed loop: a finished request's user sends the next one at once).
    assert (running[0], queued[0]) == (0, 8)
    assert set(running[1:]) == {4} and set(queued[1:-1]) == {4}
    # The last sample may fall in the drain: all 40 requests sent, the last four running.
    assert queued[-1] in (0, 4)
    # Four running requests hold their 512 prompt tokens and up to 128 generated each.
    used = [v for _, v in s["engine.num_used_tokens"]][1:]
    assert all(4 * 512 <= u <= 4 * (512 + 128) for u in used), used
    assert 0 < max(v for _, v in s["engine.token_usage"]) <= 1
    assert max(v for _, v in s["engine.gen_throughput"]) > 0
    assert seen.metrics_seen["engine.peak_queue"] == 8
    assert seen.metrics_seen["engine.peak_running_reqs"] == 4
    # The series span the benchmark: its simulated duration is the parser's run_duration.
    assert (
        times[-1]
        >= 0.5 * seen.metrics_seen["num_completed_requests"] / (seen.metrics_seen["requests_per_s"])
    )

    off = compose_cfg("deploy.clock=virtual", "benchmark.metrics_interval_s=0")
    assert run(off, tmp_path / "off", {}).got == {}


# Scraping the real-time simulator over HTTP into MLflow: tests/spine/test_e2e.py.


def test_token_usage_leaves_out_an_evictable_prefix_as_sglang_does():
    from autotune.sim.settings import build_engine
    from autotune.sim.types import SimRequest

    eng = build_engine({}, model="llama-3.1-8b", gpu="h200_sxm", dtype="bf16")

    def run_to_end(now: float = 0.0) -> float:
        while eng.has_work():
            now += eng.step(now).duration_s
        return now

    eng.add(SimRequest(rid="a", input_len=600, output_len=4, prefix_len=512, prefix_key="p"))
    now = run_to_end()
    # Finished: the shared prefix stays cached but is evictable, so it is not "used".
    assert eng.stats().num_used_tokens == 0 and eng.stats().token_usage == 0
    eng.add(SimRequest(rid="b", input_len=600, output_len=4, prefix_len=512, prefix_key="p"))
    eng.step(now)
    st = eng.stats()
    # Running again: its own tokens plus the prefix it locked (600 prompt tokens at least).
    assert st.num_running_reqs == 1 and st.num_used_tokens >= 600
    run_to_end(now)
