"""Capacity under SLO: the highest concurrency level at which one deployment still
meets the SLOs, found by bisection over a ladder of levels (objective=capacity).

genai-bench 0.0.5 is closed-loop, so load is concurrency; latency rises with it, so
"meets the SLOs" is (up to noise) true below the capacity and false above. The
bisection probes the middle of the ladder first and halves the open interval with
each probe: ceil(log2(n + 1)) probes instead of n, never a level above a measured
violation. docs/capacity.md has the measurements (benchmarks/capacity.py).

    ladder = CapacityLadder([4, 8, 16, 32, 64, 128], objective)
    outcome = run_levels(ladder, run_level, folder)      # probes 32, then 8 or 128 …
    outcome.extra["capacity_concurrency"]                # 16 (0: not even the lowest)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autotune.benchmark.levels import LevelPolicy
from autotune.objective import Objective, higher_is_better, read_metric

__all__ = ["CapacityLadder", "capacity_from_levels", "meets_slos"]

# The throughput reported at the capacity level (capacity_<name>).
THROUGHPUTS = ("output_throughput_tok_s", "requests_per_s")


def meets_slos(objective: Objective, metrics: Mapping[str, float], level: int) -> bool:
    """Every SLO holds at ``level`` (a metric not measured there counts as missed)."""
    for name, bound in objective.slo.items():
        value = read_metric(metrics, name, level, "pooled")
        if value is None:
            return False
        if (value < bound) if higher_is_better(name) else (value > bound):
            return False
    return True


def capacity_metrics(
    metrics: Mapping[str, float], capacity: int, gpus: int = 1
) -> dict[str, float]:
    """``capacity_concurrency`` (also per GPU) and the throughputs measured there."""
    out = {"capacity_concurrency": float(capacity), "capacity_concurrency_per_gpu": capacity / gpus}
    for name in THROUGHPUTS:
        value = read_metric(metrics, name, capacity, "pooled") if capacity else None
        out[f"capacity_{name}"] = value if value is not None else 0.0
    return out


def capacity_from_levels(
    objective: Objective, metrics: Mapping[str, float], levels: Sequence[int]
) -> int:
    """The exhaustive ladder's answer: the highest level such that it and every lower
    level meet the SLOs (0 when the lowest does not)."""
    found = 0
    for level in sorted(levels):
        if not meets_slos(objective, metrics, level):
            break
        found = level
    return found


class CapacityLadder(LevelPolicy):
    """Bisection over ``levels`` for the highest one that meets the SLOs."""

    def __init__(self, levels: Sequence[int], objective: Objective, gpus: int = 1) -> None:
        if not objective.slo:
            raise ValueError(
                "objective=capacity needs SLOs: set objective.slo (e.g. "
                "objective.slo.ttft_p99_ms=2000)"
            )
        self.levels = sorted(set(levels))
        self.objective = objective
        self.gpus = max(1, gpus)  # the trial's GPUs, for capacity_concurrency_per_gpu
        self.passed = -1  # index of the highest level known to meet the SLOs
        self.failed = len(self.levels)  # index of the lowest level known to miss them

    def next_level(self, metrics: Mapping[str, float], done: Sequence[int]) -> int | None:
        if done:
            i = self.levels.index(done[-1])
            if meets_slos(self.objective, metrics, done[-1]):
                self.passed = max(self.passed, i)
            else:
                self.failed = min(self.failed, i)
        if self.failed - self.passed <= 1:
            return None
        return self.levels[(self.passed + self.failed + 1) // 2]

    @property
    def capacity(self) -> int:
        return self.levels[self.passed] if self.passed >= 0 else 0

    def extra_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return capacity_metrics(metrics, self.capacity, self.gpus)
