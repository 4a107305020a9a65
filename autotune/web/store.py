"""What the console shows, read from the MLflow tracking store, cached and shared.

The study list is one snapshot of the store, refreshed at most every ``ttl_s`` and
shared by every page, poll and event stream (single flight: concurrent readers wait
for the one refresh in progress); a study's trials likewise. So 20 browsers polling
cost the store what one does.

Statuses (API): running | finished | failed | stopped, from the parent run's MLflow
status and ``autotune.status`` tag.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autotune.web import bridge

log = logging.getLogger(__name__)
T = TypeVar("T")


class Cached:
    """One value recomputed at most every ``ttl_s``; callers share the refresh."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._values: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        hit = self._values.get(key)
        if hit and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        with self._lock:  # single flight: whoever waited here finds it fresh
            hit = self._values.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            if len(self._values) > 256:  # old studies' entries
                oldest = min(self._values, key=lambda k: self._values[k][0])
                self._values.pop(oldest, None)
            return value

    def clear(self) -> None:
        self._values.clear()


def _status(run: Any) -> str:
    mlflow_status = run.info.status
    tag = run.data.tags.get(bridge.STATUS, "")
    if mlflow_status == "RUNNING":
        return "stopped" if bridge.sweep_process_gone(run.data.tags) else "running"
    if mlflow_status == "FINISHED":
        return "finished"
    if mlflow_status == "KILLED" or tag == "interrupted":
        return "stopped"
    return "failed"


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = _num(value)
    return int(f) if f is not None else None


@dataclass
class Trial:
    run_id: str
    name: str
    index: int | None
    status: str  # running | ok | failed
    phase: str
    failure: str
    objective: float | None
    params: dict[str, str]
    metrics: dict[str, float]
    start_ms: int
    end_ms: int | None

    @classmethod
    def from_run(cls, run: Any) -> Trial:
        tags = run.data.tags
        status = tags.get(bridge.STATUS, "running")
        if run.info.status != "RUNNING" and status == "running":
            status = "failed"
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id[:8],
            index=_int(tags.get(bridge.TRIAL_INDEX)),
            status=status,
            phase=tags.get(bridge.PHASE, ""),
            failure=tags.get(bridge.FAILURE, ""),
            objective=_num(run.data.metrics.get("objective")),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            start_ms=run.info.start_time or 0,
            end_ms=run.info.end_time,
        )


@dataclass
class Study:
    id: str
    name: str
    experiment_id: str
    status: str
    simulated: bool
    trials_done: int
    trials_failed: int
    trials_total: int | None
    best_objective: float | None
    best_run_id: str | None
    sweep_dir: str
    owner: str
    command: str
    start_ms: int
    end_ms: int | None
    params: dict[str, str]
    # The confirmation stage's outcome (autotune.confirm): the trial it chose, and
    # its sentence with the gain's interval.
    confirmed_run_id: str | None = None
    verdict_line: str = ""
    current: Trial | None = None
    trials: list[Trial] = field(default_factory=list)

    @classmethod
    def from_run(cls, run: Any) -> Study:
        tags, m = run.data.tags, run.data.metrics
        # Planned trials: the tag (the trials_total metric becomes the count run at the end).
        total = _int(tags.get(bridge.N_TRIALS)) or _int(m.get("trials_total"))
        best = m.get("best_objective_final", m.get("best_objective"))
        return cls(
            id=run.info.run_id,
            name=tags.get(bridge.STUDY, run.info.run_name or run.info.run_id),
            experiment_id=run.info.experiment_id,
            status=_status(run),
            simulated=tags.get(bridge.SIMULATED) == "true",
            trials_done=_int(m.get("trials_done")) or 0,
            trials_failed=_int(m.get("trials_failed")) or 0,
            trials_total=total,
            best_objective=_num(best),
            best_run_id=tags.get(bridge.BEST_RUN),
            sweep_dir=tags.get(bridge.SWEEP_DIR, ""),
            owner=tags.get(bridge.OWNER, ""),
            command=tags.get(bridge.COMMAND, ""),
            start_ms=run.info.start_time or 0,
            end_ms=run.info.end_time,
            params=dict(run.data.params),
            confirmed_run_id=tags.get("autotune.confirmed_run_id"),
            verdict_line=tags.get("autotune.verdict_line", ""),
        )

    def eta_s(self, now_ms: int | None = None) -> float | None:
        """Seconds left at the pace so far (None until a trial has finished)."""
        if self.status != "running" or not self.trials_total or not self.trials_done:
            return None
        now_ms = now_ms or int(time.time() * 1000)
        per_trial = (now_ms - self.start_ms) / 1000 / self.trials_done
        return max(0.0, per_trial * (self.trials_total - self.trials_done))

    def best_trial(self) -> Trial | None:
        by_id = {t.run_id: t for t in self.trials}
        for chosen in (self.confirmed_run_id, self.best_run_id):
            if chosen in by_id:
                return by_id[chosen]
        scored = [t for t in self.trials if t.status == "ok" and t.objective is not None]
        if not scored:
            return None
        maximize = "max" in self.params.get("objective", "max:").split(":", 1)[0]
        return (max if maximize else min)(scored, key=lambda t: t.objective)

    def verdict(self) -> str:
        """One sentence: how the study ended (or stands) and what it found."""
        best = self.best_trial()
        state = {
            "running": "running",
            "finished": "finished",
            "stopped": "stopped before its end",
            "failed": "failed",
        }[self.status]
        counts = f"{self.trials_done} trial(s) done, {self.trials_failed} failed"
        if best is None:
            return f"Study {state}: {counts}; no trial scored yet."
        sim = " (simulated engine: confirm on a real one)" if self.simulated else ""
        return (
            f"Study {state}: {counts}; best so far {best.name} with objective "
            f"{best.objective:.4g}{sim}."
            if self.status == "running"
            else f"Study {state}: {counts}; best {best.name} with objective "
            f"{best.objective:.4g}{sim}." + (f" {self.verdict_line}" if self.verdict_line else "")
        )


class Store:
    """Cached reads of one tracking store (see the module docstring)."""

    def __init__(self, uri: str, ttl_s: float = 2.0) -> None:
        self.uri = uri
        self.client = bridge.open_client(uri)
        self._list = Cached(ttl_s)
        self._detail = Cached(ttl_s)
        self.queries = 0  # store round trips, for the load benchmark and tests

    def _search(self, filter_string: str, exp_ids: list[str]) -> list[Any]:
        self.queries += 1
        return bridge.search_all(self.client, exp_ids, filter_string, order="DESC")

    def _experiment_ids(self) -> list[str]:
        self.queries += 1
        return [e.experiment_id for e in self.client.search_experiments()]

    def _snapshot(self) -> list[Study]:
        exp_ids = self._experiment_ids()
        studies = [
            Study.from_run(r) for r in self._search(f"tags.`{bridge.ROLE}` = 'sweep'", exp_ids)
        ]
        running = [s.experiment_id for s in studies if s.status == "running"]
        if running:
            live = self._search(
                f"tags.`{bridge.ROLE}` = 'trial' and attributes.status = 'RUNNING'",
                sorted(set(running)),
            )
            by_parent = {r.data.tags.get(bridge.PARENT): r for r in reversed(live)}
            for s in studies:
                if s.id in by_parent:
                    s.current = Trial.from_run(by_parent[s.id])
        return studies

    def studies(self) -> list[Study]:
        """Every study in the store, newest first (one shared snapshot per ``ttl_s``)."""
        try:
            return self._list.get("all", self._snapshot)
        except Exception as e:  # the store may be briefly locked or down
            log.warning("cannot read the tracking store: %s", e)
            return []

    def study(self, run_id: str) -> Study | None:
        """One study with its trials (cached like the list)."""

        def load() -> Study | None:
            try:
                self.queries += 1
                run = self.client.get_run(run_id)
            except Exception:
                return None
            if run.data.tags.get(bridge.ROLE) != "sweep" or run.info.lifecycle_stage != "active":
                return None
            study = Study.from_run(run)
            self.queries += 1
            trials = bridge.trial_runs(self.client, study.experiment_id, run_id)
            study.trials = sorted(
                (Trial.from_run(r) for r in trials),
                key=lambda t: (t.index if t.index is not None else 1 << 30, t.start_ms),
            )
            study.current = next((t for t in study.trials if t.status == "running"), None)
            return study

        if not _is_run_id(run_id):
            return None
        return self._detail.get(run_id, load)

    def trial(self, run_id: str) -> tuple[Trial, str] | None:
        """A trial and its parent study's id."""
        if not _is_run_id(run_id):
            return None
        try:
            self.queries += 1
            run = self.client.get_run(run_id)
        except Exception:
            return None
        if run.data.tags.get(bridge.ROLE) != "trial":
            return None
        return Trial.from_run(run), run.data.tags.get(bridge.PARENT, "")

    def find_by_owner(self, owners: set[str]) -> Study | None:
        """The study whose sweep process is one of ``owners`` (``pid@host``)."""
        for s in self.studies():
            if s.owner in owners:
                return s
        return None

    def invalidate(self) -> None:
        self._list.clear()
        self._detail.clear()


def _is_run_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isalnum()
