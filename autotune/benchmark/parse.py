"""Read a genai-bench experiment folder into per-run and aggregated metrics.

genai-bench writes one JSON per (scenario, concurrency) run, named with an
unpredictable duration, so files are keyed by their CONTENTS. A run where every
request failed leaves ``debug_for_run_*.json`` instead (genai-bench then aborts
the whole benchmark); it is read too, as an ``aborted`` run, so that a level
that failed completely shows up with ``error_rate == 1`` instead of vanishing.

Metric names (times in ms, throughputs per second)::

    output_throughput_tok_s  input_throughput_tok_s  total_throughput_tok_s  requests_per_s
    ttft_{mean,p50,p90,p99}_ms  tpot_{mean,p50,p90,p99}_ms  e2e_{mean,p50,p90,p99}_ms
    error_rate  num_requests  num_completed_requests  num_error_requests

How they are computed, per run and pooled over all runs:

- Latencies pool the successful requests' own values (``individual_request_metrics``),
  with numpy's default (linear) percentiles, as genai-bench does per run. Where a
  run lacks complete per-request records, its run-level stats are used instead:
  request-weighted means, and the max of the runs' percentiles, an upper bound of
  the pooled percentile.
- Throughputs: successful requests' tokens / summed ``run_duration``
  (genai-bench's own definition, extended over runs); 0 where nothing succeeded.
- ``error_rate = num_error_requests / num_requests`` (genai-bench 0.0.5 writes 0).
- ``_time_unit`` "ms" files are read as such; ``run_duration`` is always seconds.

Example::

    result = parse_experiment(Path("trial_7/genai_bench"))
    result.metrics()["ttft_p99_ms"], result.metrics()["c4.output_throughput_tok_s"]
    result.partial, result.missing        # [("D(100,100)", 8)] if that run is absent
    result.run("D(100,100)", 4).requests  # raw per-request records
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotune.benchmark.scenarios import slug

__all__ = [
    "METRIC_NAMES",
    "BenchmarkResult",
    "RunResult",
    "find_run_files",
    "parse_experiment",
    "parse_run_file",
]

log = logging.getLogger(__name__)

METADATA_FILE = "experiment_metadata.json"
DEBUG_PREFIX = "debug_for_run_"

# genai-bench field -> our metric prefix
_LATENCIES = {"ttft": "ttft", "tpot": "tpot", "e2e_latency": "e2e"}
_STATS = ("mean", "p50", "p90", "p99")

METRIC_NAMES: tuple[str, ...] = (
    "output_throughput_tok_s",
    "input_throughput_tok_s",
    "total_throughput_tok_s",
    "requests_per_s",
    *(f"{name}_{stat}_ms" for name in _LATENCIES.values() for stat in _STATS),
    "error_rate",
    "num_requests",
    "num_completed_requests",
    "num_error_requests",
)


@dataclass
class _RunData:
    """What aggregation needs from one run; latencies in ms."""

    n_requests: int
    n_errors: int
    duration_s: float
    in_tokens: float
    out_tokens: float
    samples: dict[str, list[float]] | None  # per-request values; None if incomplete
    stats: dict[str, dict[str, float]]  # run-level stats (fallback)

    @property
    def n_completed(self) -> int:
        return self.n_requests - self.n_errors


@dataclass
class RunResult:
    """One (scenario, concurrency) run as genai-bench recorded it.

    ``requests`` are the raw ``individual_request_metrics`` (times in
    ``time_unit``); ``aborted`` marks a run read from a ``debug_for_run`` file.
    """

    scenario: str
    concurrency: int
    metrics: dict[str, float]
    requests: list[dict[str, Any]]
    duration_s: float
    time_unit: str
    path: Path
    aborted: bool = False
    _data: _RunData | None = field(default=None, repr=False, compare=False)


@dataclass
class BenchmarkResult:
    """All runs of one experiment folder plus what the workload asked for."""

    folder: Path
    runs: list[RunResult]
    expected: list[tuple[str, int]]
    metadata: dict[str, Any] = field(default_factory=dict)
    aggregate: dict[str, float] = field(default_factory=dict)

    @property
    def missing(self) -> list[tuple[str, int]]:
        """Requested (scenario, concurrency) runs that left no result at all."""
        found = {(r.scenario, r.concurrency) for r in self.runs}
        return [key for key in self.expected if key not in found]

    @property
    def partial(self) -> bool:
        """True if a requested run is missing or was aborted by genai-bench."""
        return bool(self.missing) or any(r.aborted for r in self.runs)

    @property
    def scenarios(self) -> list[str]:
        names = [s for s, _ in self.expected] + [r.scenario for r in self.runs]
        return list(dict.fromkeys(names))

    def run(self, scenario: str, concurrency: int) -> RunResult | None:
        for r in self.runs:
            if r.scenario == scenario and r.concurrency == concurrency:
                return r
        return None

    def metrics(self) -> dict[str, float]:
        """Pooled metrics un-prefixed, plus ``c<N>.<name>`` per run.

        With several scenarios in the workload the per-run keys are
        ``<slug>.c<N>.<name>`` (e.g. ``D_100_100.c4.ttft_p99_ms``).
        """
        out = dict(self.aggregate)
        several = len(self.scenarios) > 1
        for r in self.runs:
            prefix = f"{slug(r.scenario)}.c{r.concurrency}." if several else f"c{r.concurrency}."
            out.update({prefix + k: v for k, v in r.metrics.items()})
        return out


def parse_experiment(
    folder: str | Path, expected: Iterable[tuple[str, int]] | None = None
) -> BenchmarkResult:
    """Parse every run file in ``folder``; see the module docstring for the metrics.

    ``expected`` (scenario, concurrency) pairs default to what
    ``experiment_metadata.json`` says was requested (``Workload.runs()`` fits too).
    Unreadable files are logged and skipped, never raised.
    """
    folder = Path(folder)
    metadata = _read_json(folder / METADATA_FILE) or {}
    runs_by_key: dict[tuple[str, int], RunResult] = {}
    for path in find_run_files(folder):
        run = parse_run_file(path)
        if run is None:
            continue
        key = (run.scenario, run.concurrency)
        other = runs_by_key.get(key)
        if other is not None and not other.aborted:
            log.warning("%s: duplicate run %s (keeping %s)", path, key, other.path.name)
            continue
        runs_by_key[key] = run

    if expected is None:
        expected = [
            (str(s), int(c))
            for s in metadata.get("traffic_scenario") or []
            for c in metadata.get("num_concurrency") or []
        ]
    expected = list(expected)
    order = {key: i for i, key in enumerate(expected)}
    runs = sorted(
        runs_by_key.values(),
        key=lambda r: (order.get((r.scenario, r.concurrency), len(order)), r.concurrency),
    )
    if not expected:
        expected = [(r.scenario, r.concurrency) for r in runs]
    datas = [r._data for r in runs if r._data is not None]
    return BenchmarkResult(
        folder=folder,
        runs=runs,
        expected=expected,
        metadata=metadata,
        aggregate=_summarize(datas) if datas else {},
    )


def find_run_files(folder: str | Path) -> list[Path]:
    """Candidate run files: every JSON but the metadata (debug files included)."""
    return sorted(p for p in Path(folder).glob("*.json") if p.name != METADATA_FILE)


def parse_run_file(path: str | Path) -> RunResult | None:
    """Parse one run JSON (or ``debug_for_run`` JSON); None if it is not one."""
    path = Path(path)
    data = _read_json(path)
    agg = data.get("aggregated_metrics") if isinstance(data, dict) else None
    if not isinstance(agg, dict):
        log.debug("%s: not a genai-bench run file", path)
        return None
    if agg.get("iteration_type", "num_concurrency") != "num_concurrency":
        log.warning("%s: iteration_type %s is not supported", path, agg.get("iteration_type"))
        return None
    try:
        scenario = str(agg["scenario"])
        concurrency = int(agg.get("num_concurrency", agg.get("concurrency")))
    except (KeyError, TypeError, ValueError):
        log.warning("%s: no scenario/num_concurrency in aggregated_metrics", path)
        return None
    unit = str(data.get("_time_unit") or "s").lower()
    if unit not in ("s", "ms"):
        log.warning("%s: unknown _time_unit %r, assuming seconds", path, unit)
        unit = "s"
    requests = data.get("individual_request_metrics")
    requests = [r for r in requests if isinstance(r, dict)] if isinstance(requests, list) else []
    run_data = _run_data(agg, requests, 1000.0 if unit == "s" else 1.0)
    return RunResult(
        scenario=scenario,
        concurrency=concurrency,
        metrics=_summarize([run_data]),
        requests=requests,
        duration_s=run_data.duration_s,
        time_unit=unit,
        path=path,
        aborted=path.name.startswith(DEBUG_PREFIX),
        _data=run_data,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("cannot read %s: %s", path, err)
        return None


def _num(value: Any) -> float | None:
    """A finite float, or None for missing / null / NaN / non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _is_error(record: dict[str, Any]) -> bool:
    return record.get("error_code") not in (None, 0, 200)


def _run_data(agg: dict[str, Any], requests: list[dict[str, Any]], to_ms: float) -> _RunData:
    freq = agg.get("error_codes_frequency")
    freq_errors = sum(int(v) for v in freq.values()) if isinstance(freq, dict) else None
    completed = _num(agg.get("num_completed_requests"))
    rec_errors = sum(1 for r in requests if _is_error(r))
    # Counts from the run's own tallies (exact even if the records were trimmed);
    # debug files have num_requests=0 but correct completed/error tallies.
    if completed is not None and freq_errors is not None:
        n_errors, n_requests = freq_errors, int(completed) + freq_errors
    elif _num(agg.get("num_requests")):
        n_requests = int(agg["num_requests"])
        n_errors = int(_num(agg.get("num_error_requests")) or rec_errors)
    else:
        n_requests, n_errors = len(requests), rec_errors
    complete = bool(requests) and len(requests) == n_requests

    stats = agg.get("stats") if isinstance(agg.get("stats"), dict) else {}
    duration = _num(agg.get("run_duration")) or 0.0
    ok = [r for r in requests if not _is_error(r)]
    if complete:
        in_tokens = sum(_num(r.get("num_input_tokens")) or 0.0 for r in ok)
        out_tokens = sum(_num(r.get("num_output_tokens")) or 0.0 for r in ok)
        samples = {
            name: [v * to_ms for r in ok if (v := _num(r.get(name))) is not None]
            for name in _LATENCIES
        }
    else:
        in_tokens = _stat(stats, "num_input_tokens", "sum", 1.0)
        out_tokens = _stat(stats, "num_output_tokens", "sum", 1.0)
        if in_tokens is None:
            in_tokens = (_num(agg.get("mean_input_throughput_tokens_per_s")) or 0.0) * duration
        if out_tokens is None:
            out_tokens = (_num(agg.get("mean_output_throughput_tokens_per_s")) or 0.0) * duration
        samples = None
    run_stats = {
        name: {s: v for s in _STATS if (v := _stat(stats, name, s, to_ms)) is not None}
        for name in _LATENCIES
    }
    return _RunData(
        n_requests=n_requests,
        n_errors=n_errors,
        duration_s=duration,
        in_tokens=in_tokens,
        out_tokens=out_tokens,
        samples=samples,
        stats=run_stats,
    )


def _stat(stats: dict[str, Any], name: str, key: str, scale: float) -> float | None:
    entry = stats.get(name)
    value = _num(entry.get(key)) if isinstance(entry, dict) else None
    return None if value is None else value * scale


def _summarize(parts: Sequence[_RunData]) -> dict[str, float]:
    out: dict[str, float] = {}
    n_req = sum(p.n_requests for p in parts)
    n_err = sum(p.n_errors for p in parts)
    n_ok = n_req - n_err
    duration = sum(p.duration_s for p in parts if p.duration_s > 0)
    in_tok = sum(p.in_tokens for p in parts)
    out_tok = sum(p.out_tokens for p in parts)
    if n_ok == 0:
        rates: tuple[float, ...] | None = (0.0, 0.0, 0.0, 0.0)
    elif duration > 0:
        rates = (
            out_tok / duration,
            in_tok / duration,
            (in_tok + out_tok) / duration,
            n_ok / duration,
        )
    else:
        rates = None  # successes but no duration (a debug file): unknown, not zero
    if rates is not None:
        names = ("output_throughput_tok_s", "input_throughput_tok_s", "total_throughput_tok_s")
        out.update(zip((*names, "requests_per_s"), rates, strict=True))
    for field_name, prefix in _LATENCIES.items():
        out.update(_latency(parts, field_name, prefix))
    if n_req:
        out["error_rate"] = n_err / n_req
    out["num_requests"] = float(n_req)
    out["num_completed_requests"] = float(n_ok)
    out["num_error_requests"] = float(n_err)
    return out


def _latency(parts: Sequence[_RunData], name: str, prefix: str) -> dict[str, float]:
    if all(p.samples is not None for p in parts):
        values = [v for p in parts for v in p.samples[name]]  # type: ignore[index]
        if not values:
            return {}
        arr = np.asarray(values, dtype=float)
        p50, p90, p99 = np.percentile(arr, [50, 90, 99])
        return {
            f"{prefix}_mean_ms": float(arr.mean()),
            f"{prefix}_p50_ms": float(p50),
            f"{prefix}_p90_ms": float(p90),
            f"{prefix}_p99_ms": float(p99),
        }
    # Fallback: mix per-run stats; runs with samples contribute their own stats.
    per_run = [(_own_stats(p, name), p.n_completed) for p in parts]
    out: dict[str, float] = {}
    weighted = [(s["mean"], n) for s, n in per_run if "mean" in s and n > 0]
    if weighted:
        total = sum(n for _, n in weighted)
        out[f"{prefix}_mean_ms"] = sum(m * n for m, n in weighted) / total
    for key in ("p50", "p90", "p99"):
        values = [s[key] for s, n in per_run if key in s and n > 0]
        if values:
            out[f"{prefix}_{key}_ms"] = max(values)
    return out


def _own_stats(part: _RunData, name: str) -> dict[str, float]:
    if part.samples is None or not part.samples[name]:
        return part.stats[name]
    arr = np.asarray(part.samples[name], dtype=float)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"mean": float(arr.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}
