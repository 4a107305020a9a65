"""Write genai-bench-shaped experiment folders from per-request timings.

The simulator's virtual clock replays a workload without HTTP, so it has
per-request timestamps but no genai-bench output. ``write_experiment`` turns
those timestamps into the files genai-bench 0.0.5 would have written (same
fields, same per-request formulas, same statistics), so that ``parse_experiment``
reads simulated and real benchmarks through one code path.

Per request, as genai-bench computes it: ``ttft = first_token - start``,
``e2e_latency = end - start``, ``output_latency = e2e - ttft``,
``tpot = output_latency / (output_tokens - 1)`` (none when
``output_latency < 1 ms``), ``input_throughput = input_tokens / ttft``.
Per run: ``run_duration`` (default: last end - first start) divides the token
sums. Mirrored genai-bench behaviour (``genai_like=True``): a successful
request with fewer than 2 output tokens is dropped (genai-bench rejects its
record as invalid); a run left with no request writes no file; a run in which
no request succeeded (or none has a TPOT) writes
``debug_for_run_<scenario>_<N>.json`` and ends the benchmark, so later runs are
absent; ``error_rate`` is written as 0 (genai-bench's bug; the parser
recomputes it).

Example::

    reqs = [RequestRecord(start=0.0, first_token=0.05, end=0.5, input_tokens=100,
                          output_tokens=10)]
    write_experiment(folder, [RunRecords("D(100,10)", 1, reqs, duration_s=1.0)])
    parse_experiment(folder).metrics()["ttft_mean_ms"]   # 50.0
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotune.benchmark.parse import DEBUG_PREFIX, METADATA_FILE

if TYPE_CHECKING:
    from autotune.benchmark.genai_bench import Workload

__all__ = ["RequestRecord", "RunRecords", "write_experiment"]

log = logging.getLogger(__name__)

GENAI_BENCH_VERSION = "0.0.5"
# RequestLevelMetrics fields in genai-bench's order (it aggregates them in this order).
_FIELDS = (
    "ttft",
    "tpot",
    "e2e_latency",
    "output_latency",
    "output_inference_speed",
    "num_input_tokens",
    "num_output_tokens",
    "num_reasoning_tokens",
    "total_tokens",
    "input_throughput",
    "output_throughput",
    "audio_throughput",
)
_OPTIONAL_FIELDS = {"audio_throughput"}  # genai-bench skips these when empty


@dataclass
class RequestRecord:
    """One request as a client saw it; times in seconds on any one clock.

    ``first_token`` may be None for a failed request.
    """

    start: float
    first_token: float | None
    end: float
    input_tokens: int
    output_tokens: int
    ok: bool = True
    error_code: int = 500
    error_message: str = "request failed"


@dataclass
class RunRecords:
    """The requests of one (scenario, concurrency) run.

    ``duration_s`` is genai-bench's ``run_duration``: from the run's start to the
    moment it stopped; it defaults to last end - first start.
    """

    scenario: str
    concurrency: int
    requests: list[RequestRecord] = field(default_factory=list)
    duration_s: float | None = None


def _request_metrics(r: RequestRecord) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(_FIELDS)
    if not r.ok or r.first_token is None:
        out.update(error_code=int(r.error_code), error_message=r.error_message)
        return out
    ttft = r.first_token - r.start
    e2e = r.end - r.start
    output_latency = e2e - ttft
    out.update(
        ttft=ttft,
        e2e_latency=e2e,
        output_latency=output_latency,
        num_input_tokens=int(r.input_tokens),
        num_output_tokens=int(r.output_tokens),
        num_reasoning_tokens=0,
        total_tokens=int(r.input_tokens) + int(r.output_tokens),
        input_throughput=r.input_tokens / ttft if ttft else 0,
        error_code=None,
        error_message=None,
    )
    if r.output_tokens > 1:
        tpot = output_latency / (r.output_tokens - 1)
        # genai-bench drops TPOT for sub-millisecond outputs (timing jitter).
        if output_latency >= 0.001:
            out.update(tpot=tpot, output_inference_speed=1 / tpot)
        out["output_throughput"] = (r.output_tokens - 1) / output_latency if output_latency else 0
    return out


def _stat(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    p25, p50, p75, p90, p95, p99 = np.percentile(arr, [25, 50, 75, 90, 95, 99])
    return {
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "stddev": float(arr.std()),
        "sum": float(arr.sum()),
        "p25": float(p25),
        "p50": float(p50),
        "p75": float(p75),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
    }


_EMPTY_STAT = dict.fromkeys(
    ("min", "max", "mean", "stddev", "sum", "p25", "p50", "p75", "p90", "p95", "p99")
)


def _run_json(run: RunRecords, genai_like: bool) -> tuple[dict[str, Any], bool]:
    """The run file's content and whether genai-bench would have aborted here.

    An aborting run is written as genai-bench's debug file has it (stats up to the
    first empty metric, zero duration and totals) when ``genai_like``.
    """
    individual = [_request_metrics(r) for r in run.requests]
    ok = [m for m in individual if m["error_code"] is None]
    errors: dict[int, int] = {}
    for m in individual:
        if m["error_code"] is not None:
            errors[m["error_code"]] = errors.get(m["error_code"], 0) + 1

    stats = {name: dict(_EMPTY_STAT) for name in _FIELDS}
    aborted = False
    for name in _FIELDS:
        values = [m[name] for m in ok if m[name] is not None]
        if values:
            stats[name] = _stat(values)
        elif name not in _OPTIONAL_FIELDS and not aborted:
            aborted = True  # genai-bench: "No values found for metric ..."
            if genai_like:
                break

    agg: dict[str, Any] = {
        "scenario": run.scenario,
        "num_concurrency": run.concurrency,
        "batch_size": 1,
        "iteration_type": "num_concurrency",
        "run_duration": 0.0,
        "mean_output_throughput_tokens_per_s": 0.0,
        "mean_input_throughput_tokens_per_s": 0.0,
        "mean_total_tokens_throughput_tokens_per_s": 0.0,
        "requests_per_second": 0.0,
        "error_codes_frequency": errors,
        "error_rate": 0.0,
        "num_error_requests": 0,
        "num_completed_requests": len(ok),
        "num_requests": 0,
        "stats": stats,
    }
    if not (aborted and genai_like):
        duration = run.duration_s
        if duration is None:
            duration = max(r.end for r in run.requests) - min(r.start for r in run.requests)
        duration = max(float(duration), 1e-9)
        n_err = sum(errors.values())
        agg.update(
            run_duration=duration,
            mean_output_throughput_tokens_per_s=(stats["num_output_tokens"]["sum"] or 0) / duration,
            mean_input_throughput_tokens_per_s=(stats["num_input_tokens"]["sum"] or 0) / duration,
            mean_total_tokens_throughput_tokens_per_s=(stats["total_tokens"]["sum"] or 0)
            / duration,
            requests_per_second=len(ok) / duration,
            error_rate=0,  # what genai-bench 0.0.5 writes (its bug); parse recomputes
            num_error_requests=n_err,
            num_requests=len(ok) + n_err,
        )
    data = {"aggregated_metrics": agg, "individual_request_metrics": individual, "_time_unit": "s"}
    return data, aborted


def _sanitize(scenario: str) -> str:
    # genai_bench.utils.sanitize_string
    return scenario.replace("/", "_").replace(",", "_").replace("(", "").replace(")", "")


def write_experiment(
    folder: str | Path,
    runs: Iterable[RunRecords],
    *,
    workload: Workload | None = None,
    model_name: str = "simulated",
    tokenizer: str | None = None,
    api_backend: str = "sglang",
    genai_like: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``experiment_metadata.json`` and one run JSON per run; return the run files.

    ``workload`` (if given) fills the requested scenarios, concurrency levels and
    limits in the metadata, so ``parse_experiment`` can report runs that are
    missing; otherwise they are taken from ``runs``. ``metadata`` entries
    override the generated metadata fields. The folder is created if needed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = list(runs)
    task = workload.task if workload else "text-to-text"
    if workload is not None:
        scenarios, levels = list(workload.scenarios), list(workload.concurrency)
        max_requests = workload.max_requests_per_run
        max_time_s = workload.max_time_per_run_min * 60
    else:
        scenarios = list(dict.fromkeys(r.scenario for r in runs))
        levels = list(dict.fromkeys(r.concurrency for r in runs))
        max_requests = max((len(r.requests) for r in runs), default=0)
        max_time_s = 0
    meta: dict[str, Any] = {
        "cmd": "",
        "benchmark_version": GENAI_BENCH_VERSION,
        "api_backend": api_backend,
        "auth_config": {},
        "api_model_name": model_name,
        "server_model_tokenizer": tokenizer,
        "model": model_name,
        "task": task,
        "num_concurrency": levels,
        "batch_size": [1],
        "iteration_type": "num_concurrency",
        "traffic_scenario": scenarios,
        "additional_request_params": {},
        "server_engine": None,
        "server_version": None,
        "server_gpu_type": None,
        "server_gpu_count": None,
        "max_time_per_run_s": max_time_s,
        "max_requests_per_run": max_requests,
        "experiment_folder_name": str(folder.absolute()),
        "metrics_time_unit": "s",
        "dataset_path": "None",
    }
    meta.update(metadata or {})
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=4))

    written = []
    for run in runs:
        if genai_like:
            kept = [r for r in run.requests if not (r.ok and r.output_tokens < 2)]
            if len(kept) < len(run.requests):
                log.debug(
                    "run %s c%d: dropping %d single-token requests, as genai-bench does",
                    run.scenario,
                    run.concurrency,
                    len(run.requests) - len(kept),
                )
                run = RunRecords(run.scenario, run.concurrency, kept, run.duration_s)
        if not run.requests:
            log.debug("run %s c%d has no requests: no file", run.scenario, run.concurrency)
            continue
        data, aborted = _run_json(run, genai_like)
        name = _sanitize(run.scenario)
        if aborted and genai_like:
            path = folder / f"{DEBUG_PREFIX}{name}_{run.concurrency}.json"
        else:
            seconds = int(data["aggregated_metrics"]["run_duration"])
            path = folder / f"{name}_{task}_num_concurrency_{run.concurrency}_time_{seconds}s.json"
        # One line: with indent, json falls back to its pure-Python encoder, which cost
        # more than the virtual-clock benchmark that produced the records.
        path.write_text(json.dumps(data))
        written.append(path)
        if aborted and genai_like:
            log.info("run %s c%d has no usable request: stopping", run.scenario, run.concurrency)
            break
    return written
