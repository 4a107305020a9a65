"""Objectives and SLOs: from a trial's metrics to the number(s) the sweeper optimizes.

    >>> obj = Objective.from_config(cfg.objective)
    >>> s = obj.score({"output_throughput_tok_s": 1800.0, "ttft_p99_ms": 420.0})
    >>> s.value, s.feasible
    (1800.0, True)

Metrics come from :mod:`autotune.benchmark.parse`: un-prefixed names are pooled
across concurrency levels, ``c<N>.<name>`` are per level. An objective or SLO is
read either at one level (``concurrency``) or across levels (``across_levels``:
pooled, mean, min or max of the levels).

Infeasible trials (an SLO missed) rank below every feasible one and still say how
far they missed, so a model-based sampler learns the boundary:

- maximize (metrics that are >= 0, such as throughput): ``-violation``
- minimize: ``infeasible_offset + violation``

where ``violation`` is the sum of relative misses (0.2 = 20 % over the bound).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Metric names for which an SLO is a lower bound; every other SLO is an upper bound.
_HIGHER_IS_BETTER = re.compile(r"(throughput|requests_per_s|num_completed|goodput)")
_LEVEL_KEY = re.compile(r"^(?:(?P<scenario>.+)\.)?c(?P<level>\d+)\.(?P<name>[^.]+)$")
ACROSS_LEVELS = ("pooled", "mean", "min", "max")


def higher_is_better(metric: str) -> bool:
    return bool(_HIGHER_IS_BETTER.search(metric))


def levels(metrics: Mapping[str, float]) -> list[int]:
    """Concurrency levels present in a metrics dict, ascending."""
    found = {int(m["level"]) for k in metrics if (m := _LEVEL_KEY.match(k))}
    return sorted(found)


def read_metric(
    metrics: Mapping[str, float], name: str, concurrency: int | None, across_levels: str
) -> float | None:
    """One metric as the objective sees it (None if the benchmark did not produce it)."""
    if concurrency is not None:
        vals = [
            v
            for k, v in metrics.items()
            if (m := _LEVEL_KEY.match(k)) and int(m["level"]) == concurrency and m["name"] == name
        ]
        return _finite_mean(vals)
    if across_levels == "pooled":
        v = metrics.get(name)
        return float(v) if v is not None and math.isfinite(v) else None
    per_level = [v for k, v in metrics.items() if (m := _LEVEL_KEY.match(k)) and m["name"] == name]
    per_level = [float(v) for v in per_level if math.isfinite(v)]
    if not per_level:
        return None
    return {"mean": sum(per_level) / len(per_level), "min": min(per_level), "max": max(per_level)}[
        across_levels
    ]


def _finite_mean(vals: Sequence[float]) -> float | None:
    vals = [float(v) for v in vals if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


@dataclass
class Score:
    """What a trial scored: the value(s) for the sweeper plus what explains them."""

    values: list[float]
    raw: list[float | None]
    feasible: bool
    slack: dict[str, float] = field(default_factory=dict)  # relative; < 0 = missed

    @property
    def value(self) -> float | list[float]:
        return self.values[0] if len(self.values) == 1 else list(self.values)


@dataclass
class Objective:
    metrics: list[str]
    directions: list[str]
    concurrency: int | None = None
    across_levels: str = "pooled"
    slo: dict[str, float] = field(default_factory=dict)
    slo_concurrency: int | None = None
    infeasible_offset: float = 1e6

    @classmethod
    def from_config(cls, cfg: Any) -> Objective:
        terms = list(cfg.terms)
        return cls(
            metrics=[t.metric for t in terms],
            directions=[t.direction for t in terms],
            concurrency=cfg.concurrency,
            across_levels=cfg.across_levels,
            slo={k: float(v) for k, v in dict(cfg.slo or {}).items()},
            slo_concurrency=cfg.slo_concurrency,
        )

    @property
    def capacity(self) -> bool:
        """Capacity under SLO (objective=capacity): the ladder applied the SLOs per level."""
        return any(m.startswith("capacity_") for m in self.metrics)

    def slo_level(self, metrics: Mapping[str, float]) -> int | None:
        """The level the SLOs are read at (None: across levels). For capacity: the
        capacity found, or the lowest level probed when none met the SLOs."""
        if self.slo_concurrency is not None:
            return self.slo_concurrency
        if self.concurrency is not None or not self.capacity:
            return self.concurrency
        found = int(metrics.get("capacity_concurrency", 0))
        return found if found > 0 else min(levels(metrics), default=None)

    def slack(self, metrics: Mapping[str, float], stand_in: int | None = None) -> dict[str, float]:
        """Relative slack of every SLO: (bound - value) / bound, flipped for lower bounds.

        ``stand_in``: a trial stopped early did not reach the SLO's level; the highest
        level it ran stands in for it (a lower bound of the miss, latency rising
        with concurrency: autotune.benchmark.levels).
        """
        level = self.slo_level(metrics)
        out = {}
        for name, bound in self.slo.items():
            value = read_metric(metrics, name, level, self.across_levels)
            if value is None and stand_in is not None:
                value = read_metric(metrics, name, stand_in, self.across_levels)
            if value is None:
                out[name] = -1.0  # not measured counts as missed
                continue
            scale = abs(bound) if bound else 1.0
            diff = (value - bound) if higher_is_better(name) else (bound - value)
            out[name] = diff / scale
        return out

    def score(self, metrics: Mapping[str, float], stand_in: int | None = None) -> Score | None:
        """None when an objective metric is missing (the trial cannot be ranked).

        ``stand_in``: see :meth:`slack`; an infeasible trial stopped early is scored
        from what it measured even when the objective's own level was not reached.
        """
        raw = [read_metric(metrics, m, self.concurrency, self.across_levels) for m in self.metrics]
        slack = self.slack(metrics, stand_in)
        violation = sum(-s for s in slack.values() if s < 0)
        feasible = violation == 0
        if any(v is None for v in raw) and (feasible or stand_in is None):
            return None
        values = []
        for v, direction in zip(raw, self.directions, strict=True):
            if feasible:
                values.append(float(v))
            elif direction == "maximize":
                values.append(-violation)
            else:
                values.append(self.infeasible_offset + violation)
        return Score(values=values, raw=raw, feasible=feasible, slack=slack)

    def better(self, a: float, b: float) -> bool:
        """Is objective value ``a`` better than ``b`` (single objective)?"""
        return a > b if self.directions[0] == "maximize" else a < b


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (ties kept), in input order.

    >>> pareto_front([(10, 5), (8, 3), (7, 6)], ["maximize", "minimize"])
    [0, 1]
    """
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [[s * v for s, v in zip(sign, p, strict=True)] for p in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and any(
            x > y for x, y in zip(a, b, strict=True)
        )

    return [i for i, p in enumerate(scored) if not any(dominates(q, p) for q in scored)]
