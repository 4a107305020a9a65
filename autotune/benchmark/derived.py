"""Metrics that need more than genai-bench's numbers: per GPU, goodput and cost.

genai-bench knows the traffic, not the deployment or the service level. Given what
the trial deployed (:class:`Deployment`: GPUs and their hourly price) and the
per-request bounds of the objective (:class:`RequestBounds`), this adds, per
(scenario, concurrency) run and pooled over all runs, under the parser's key scheme
(``c<N>.<name>``, or ``<slug>.c<N>.<name>`` with several scenarios)::

    output_throughput_tok_s_per_gpu  output tokens/s divided by the trial's GPUs
    goodput_req_s                    requests/s that completed AND met every bound
    goodput_fraction                 those requests / all requests sent
    cost_usd_per_mtok                USD per million output tokens at that throughput

Goodput counts genai-bench's own per-request records (``individual_request_metrics``):
a request is good when it succeeded and its TTFT, TPOT and end-to-end latency are
within the bounds that are set (no bounds: every successful request is good).
Pooled goodput divides by the summed run durations, as the parser's throughputs do.

    extra = derived_metrics(parse_experiment(folder),
                            RequestBounds(ttft_ms=500, tpot_ms=50),
                            Deployment(gpus=2, gpu_hour_usd=4.0))
    extra["goodput_req_s"], extra["c32.cost_usd_per_mtok"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autotune.benchmark.parse import BenchmarkResult, RunResult
from autotune.benchmark.scenarios import slug

DERIVED_METRIC_NAMES: tuple[str, ...] = (
    "output_throughput_tok_s_per_gpu",
    "goodput_req_s",
    "goodput_fraction",
    "cost_usd_per_mtok",
)

# genai-bench's per-request fields, checked against the bound of the same kind.
_FIELDS = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2e_ms": "e2e_latency"}
# objective.slo keys whose bound also bounds every request: ttft_p99_ms -> ttft_ms …
_SLO_KINDS = {"ttft_": "ttft_ms", "tpot_": "tpot_ms", "e2e_": "e2e_ms"}


@dataclass(frozen=True)
class RequestBounds:
    """Per-request latency bounds in ms (None = not bounded)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    @classmethod
    def from_objective(cls, objective: Any) -> RequestBounds:
        """``objective.request_slo`` if any bound is set there, else the latency SLOs.

        From ``objective.slo`` every ``ttft_*_ms`` / ``tpot_*_ms`` / ``e2e_*_ms`` bound
        (a percentile or the mean) becomes a bound on each request; the tightest wins.
        """
        own = objective.get("request_slo") or {}
        given = {k: float(v) for k, v in dict(own).items() if v is not None}
        if given:
            return cls(**given)
        found: dict[str, float] = {}
        for name, bound in dict(objective.get("slo") or {}).items():
            kind = next((k for p, k in _SLO_KINDS.items() if str(name).startswith(p)), None)
            if kind is not None and str(name).endswith("_ms"):
                found[kind] = min(float(bound), found.get(kind, math.inf))
        return cls(**found)

    def met(self, record: Mapping[str, Any], to_ms: float) -> bool:
        """Did this successful request stay within every bound? (missing value = missed)"""
        for key, field_name in _FIELDS.items():
            bound = getattr(self, key)
            if bound is None:
                continue
            value = record.get(field_name)
            if key == "tpot_ms" and value is None and (record.get("num_output_tokens") or 0) <= 1:
                continue  # one output token has no time per output token
            if not isinstance(value, int | float) or value * to_ms > bound:
                return False
        return True


@dataclass(frozen=True)
class Deployment:
    """What the trial occupied: GPUs and their price (None = cost unknown)."""

    gpus: int = 1
    gpu_hour_usd: float | None = None

    @classmethod
    def from_config(cls, cfg: Any, params: Mapping[str, Any]) -> Deployment:
        """GPUs from the runtime's parallelism flags; the price as :func:`gpu_price`."""
        from autotune.params import gpus_used

        runtime = cfg.runtime
        flags = list(runtime.get("parallel_flags") or [])
        if not flags and runtime.get("gpu_flag"):
            flags = [runtime.gpu_flag]
        return cls(gpus=gpus_used(params, flags), gpu_hour_usd=gpu_price(cfg)[0])


def gpu_price(cfg: Any) -> tuple[float | None, str]:
    """(USD per GPU-hour, where it came from); (None, why) when nothing gives one.

    ``deploy.gpu_hour_usd`` first, then ``pricing.gpu_hour_usd[<GPU type>]`` with the
    type from ``deploy.gpu_type`` (the simulator: ``deploy.gpu``).
    """
    deploy = cfg.deploy
    if deploy.get("gpu_hour_usd") is not None:
        return float(deploy.gpu_hour_usd), "deploy.gpu_hour_usd"
    gpu_type = deploy.get("gpu_type") or deploy.get("gpu")
    table = dict((cfg.get("pricing") or {}).get("gpu_hour_usd") or {})
    if gpu_type is None:
        return None, (
            "no GPU price: set deploy.gpu_hour_usd=<USD per GPU-hour>, or "
            f"deploy.gpu_type=<one of {sorted(table)}> to use pricing.gpu_hour_usd"
        )
    if str(gpu_type) not in table:
        return None, (
            f"no price for GPU type {gpu_type!r} in pricing.gpu_hour_usd {sorted(table)}: "
            f"add pricing.gpu_hour_usd.{gpu_type}=<USD> or set deploy.gpu_hour_usd"
        )
    return float(table[str(gpu_type)]), f"pricing.gpu_hour_usd.{gpu_type}"


def good_requests(run: RunResult, bounds: RequestBounds) -> int:
    """Successful requests of ``run`` that met ``bounds``."""
    to_ms = 1000.0 if run.time_unit == "s" else 1.0
    return sum(1 for r in run.requests if _succeeded(r) and bounds.met(r, to_ms))


def derived_metrics(
    result: BenchmarkResult, bounds: RequestBounds, deployment: Deployment
) -> dict[str, float]:
    """The metrics of this module, per run and pooled (see the module docstring)."""
    several = len(result.scenarios) > 1
    out: dict[str, float] = {}
    counts = []
    for run in result.runs:
        prefix = f"{slug(run.scenario)}.c{run.concurrency}." if several else f"c{run.concurrency}."
        good = good_requests(run, bounds) if _complete(run) else None
        counts.append((good, run))
        values = _for_view(run.metrics, good, run.duration_s, deployment)
        out.update({prefix + k: v for k, v in values.items()})
    pooled_good = None if any(g is None for g, _ in counts) else sum(g for g, _ in counts)
    duration = sum(r.duration_s for _, r in counts if r.duration_s > 0)
    out.update(_for_view(result.aggregate, pooled_good, duration, deployment))
    return out


def _for_view(
    metrics: Mapping[str, float], good: int | None, duration_s: float, deployment: Deployment
) -> dict[str, float]:
    out: dict[str, float] = {}
    throughput = metrics.get("output_throughput_tok_s")
    if throughput is not None:
        out["output_throughput_tok_s_per_gpu"] = throughput / max(1, deployment.gpus)
        if deployment.gpu_hour_usd is not None and throughput > 0:
            usd_per_s = deployment.gpus * deployment.gpu_hour_usd / 3600.0
            out["cost_usd_per_mtok"] = usd_per_s / throughput * 1e6
    if good is not None:
        if duration_s > 0:
            out["goodput_req_s"] = good / duration_s
        n = metrics.get("num_requests")
        if n:
            out["goodput_fraction"] = good / n
    return out


def _succeeded(record: Mapping[str, Any]) -> bool:
    return record.get("error_code") in (None, 0, 200)


def _complete(run: RunResult) -> bool:
    """Goodput needs every request's record (a trimmed file cannot be counted)."""
    n = run.metrics.get("num_requests")
    return bool(run.requests) and n is not None and len(run.requests) == int(n)


def serving_context(cfg: Any, params: Mapping[str, Any]) -> tuple[RequestBounds, Deployment]:
    """What :func:`derived_metrics` needs to know of a trial's config."""
    return RequestBounds.from_objective(cfg.objective), Deployment.from_config(cfg, params)
