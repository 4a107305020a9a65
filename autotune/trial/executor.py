"""One trial, top to bottom: lease → deploy → ready → benchmark → score → teardown.

This is the only place that knows the order of the stages. It knows nothing of
MLflow or the terminal: whoever runs a trial (the Hydra job, the pre-screen, the
confirmation stage, the benchmarks) passes observers that record what happens.
Whatever happens (a failure, an exception, Ctrl-C, SIGTERM) the engine is stopped
and the observers hear how the trial ended.

    result = run_trial(TrialSpec(cfg, params, name="trial-003", study="s", workdir=d),
                       [recorder, progress])
    result.value          # float | list[float] | None, what the sweeper gets
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from autotune.benchmark.derived import derived_metrics, serving_context
from autotune.benchmark.engine_metrics import during_benchmark
from autotune.benchmark.levels import ladder_levels, level_policy
from autotune.benchmark.parse import parse_experiment
from autotune.deploy import (
    Endpoint,
    Failure,
    Launcher,
    LaunchSpec,
    TrialFailure,
    create_launcher,
)
from autotune.deploy.base import BenchmarkRequest
from autotune.deploy.failures import failure_in, last_lines, read_log
from autotune.deploy.processes import interrupts_held
from autotune.deploy.readiness import wait_ready
from autotune.objective import Objective
from autotune.secrets import scrub, scrub_tree, secret_values
from autotune.trial.spec import TrialObserver, TrialResult, TrialSpec

log = logging.getLogger(__name__)


class _Observers(TrialObserver):
    """All observers as one; an observer's error is logged, never the trial's end."""

    def __init__(self, observers: Sequence[TrialObserver]) -> None:
        self.all = list(observers)

    def _each(self, method: str, *args: Any) -> None:
        for o in self.all:
            try:
                getattr(o, method)(*args)
            except Exception:
                log.exception("%s.%s failed", type(o).__name__, method)

    def started(self, *args: Any) -> None:
        self._each("started", *args)

    def phase(self, *args: Any) -> None:
        self._each("phase", *args)

    def gpus(self, *args: Any) -> None:
        self._each("gpus", *args)

    def server_info(self, *args: Any) -> None:
        self._each("server_info", *args)

    def metrics(self, *args: Any) -> None:
        self._each("metrics", *args)

    def series(self, *args: Any) -> None:
        self._each("series", *args)

    def finished(self, *args: Any) -> None:
        self._each("finished", *args)


def run_trial(
    spec: TrialSpec, observers: Sequence[TrialObserver] = (), launcher: Launcher | None = None
) -> TrialResult:
    """Measure one configuration; the engine is stopped whatever happens.

    ``launcher``: the deploy target built from ``spec.cfg.deploy`` once for many
    trials (the pre-screen's hundreds of virtual-clock trials); default: a new one.
    """
    cfg = spec.cfg
    launcher = launcher or create_launcher(cfg.deploy)
    objective = Objective.from_config(cfg.objective)
    secrets = secret_values(extra=[cfg.benchmark.api_key])
    events = _Observers(observers)
    launch = spec.launch_spec()

    result = TrialResult(spec.name, "failed")
    started = time.monotonic()
    try:
        with interrupts_held():
            events.started(spec, launcher, launcher.render(launch))
        with _gpu_lease(cfg, spec) as gpus:
            launch.gpus = gpus
            if gpus is not None:
                events.gpus(gpus)
            _deploy_and_measure(spec, launcher, launch, objective, events, result)
    except TrialFailure as e:
        result.failure, result.message = e.failure, scrub(str(e), secrets)
        log.error("%s failed (%s): %s", spec.name, e.failure.value, result.message)
        events.phase("failed")
    except (KeyboardInterrupt, SystemExit):
        result.status, result.failure = "interrupted", Failure.INTERRUPTED
        events.phase("interrupted")
        raise
    except Exception:  # a bug must not stop the study: record it, go on
        result.failure = Failure.INTERNAL_ERROR
        result.message = scrub(traceback.format_exc(), secrets)
        log.exception("%s hit an internal error", spec.name)
        events.phase("failed")
    finally:
        result.elapsed_s = time.monotonic() - started
        _scrub_workdir(spec.workdir, secrets)
        with interrupts_held():
            events.finished(spec, result)
    return result


def _deploy_and_measure(
    spec: TrialSpec,
    launcher: Launcher,
    launch: LaunchSpec,
    objective: Objective,
    events: TrialObserver,
    result: TrialResult,
) -> None:
    """deploy → ready → benchmark → score, with the engine stopped on the way out."""
    cfg = spec.cfg
    events.phase("deploying")
    endpoint: Endpoint | None = None
    try:
        # A start that returns at once is not cut from the handle it returns: a signal
        # landing in between would leave the engine running. A blocking start (an image
        # pull, a cluster rollout) stays interruptible and cleans up after itself.
        with contextlib.nullcontext() if launcher.start_blocks else interrupts_held():
            result.endpoint = endpoint = launcher.start(launch)
        result.startup_s = wait_ready(
            launcher,
            endpoint,
            health_path=cfg.runtime.health_path,
            ready_pattern=cfg.runtime.ready_log_pattern,
            failure_patterns=cfg.runtime.failure_patterns,
            timeout_s=float(cfg.deploy.startup_timeout_s),
        )
        events.metrics({"startup_s": result.startup_s})
        events.phase("ready")
        info = launcher.server_info(endpoint, cfg.runtime.get("server_info_path"))
        if info is not None:
            events.server_info(info)
        result.metrics = _benchmark(spec, launcher, endpoint, events, result, objective)
        # A trial stopped early is scored from what it measured (its last level
        # stands in for an SLO level it did not reach).
        stand_in = max(result.levels) if result.pruned and result.levels else None
        scored = objective.score(result.metrics, stand_in)
        if scored is None:
            raise TrialFailure(
                Failure.BENCHMARK_FAILED,
                f"the benchmark produced no {', '.join(objective.metrics)} (error_rate "
                f"{result.metrics.get('error_rate', float('nan')):.2f})",
            )
        result.score, result.status = scored, "pruned" if result.by_pruner else "ok"
        events.phase("done")
    finally:
        if endpoint is not None:
            launcher.stop(endpoint)


def _benchmark(
    spec: TrialSpec,
    launcher: Launcher,
    endpoint: Endpoint,
    events: TrialObserver,
    result: TrialResult,
    objective: Objective,
) -> dict[str, float]:
    cfg = spec.cfg
    bounds, deployment = serving_context(cfg, spec.params)
    policy = level_policy(cfg, objective, spec.report, deployment.gpus)
    workload = spec.workload()
    if ladder := ladder_levels(policy):
        workload = dataclasses.replace(workload, concurrency=ladder)
    # One scrape around every level: the series spans the whole benchmark.
    with during_benchmark(endpoint, cfg, events) as scrape:
        run = launcher.benchmark(
            endpoint,
            BenchmarkRequest(
                workload=workload,
                out_dir=spec.workdir / "genai-bench",
                tokenizer=cfg.model.tokenizer or cfg.model.path,
                timeout_s=float(cfg.benchmark.timeout_s),
                api_key=cfg.benchmark.api_key,
                on_progress=events.phase,
                policy=policy,
                metrics_interval_s=scrape.interval_s,
            ),
        )
        scrape.extend(run.engine_series)
    code = launcher.poll(endpoint)
    if code is not None:
        text = read_log(endpoint.log_path)
        result.partial = _partial_metrics(run.folder, events)
        raise TrialFailure(
            failure_in(text, cfg.runtime.failure_patterns),
            f"engine exited with code {code} during the benchmark:\n{last_lines(text)}",
        )
    parsed = parse_experiment(run.folder)
    if not parsed.runs:
        kind = Failure.BENCHMARK_TIMEOUT if run.timed_out else Failure.BENCHMARK_FAILED
        raise TrialFailure(kind, f"the benchmark produced no results ({run.note})")
    metrics = parsed.metrics()
    if run.levels is not None:
        metrics.update(run.levels.extra)
        result.levels = list(run.levels.levels)
        if run.levels.pruned:
            result.pruned, result.by_pruner = run.levels.stopped, run.levels.by_pruner
            events.phase("pruned")
    metrics.update(derived_metrics(parsed, bounds, deployment))
    if run.partial or parsed.partial:
        result.partial = True
        log.warning("partial benchmark results (%s)", run.note)
    events.metrics(metrics)
    if metrics.get("num_completed_requests", 1) == 0:
        # genai-bench writes a run where every request failed (throughput 0): that is
        # no measurement, and a throughput objective of 0 must not pass for one.
        raise TrialFailure(
            Failure.BENCHMARK_FAILED,
            f"every request failed (error_rate {metrics.get('error_rate', 1.0):.2f}, "
            f"{run.note}): see genai-bench/ and logs/engine.log",
        )
    return metrics


def _partial_metrics(folder: Path, events: TrialObserver) -> bool:
    """What a benchmark measured before the engine died, kept with the failed trial."""
    try:
        parsed = parse_experiment(folder)
    except Exception:
        return False
    if parsed.runs:
        events.metrics(parsed.metrics())
    return bool(parsed.runs)


@contextlib.contextmanager
def _gpu_lease(cfg: DictConfig, spec: TrialSpec) -> Iterator[list[int] | None]:
    """``tp-size`` GPUs of ``deploy.gpus`` for the trial; given back only once the
    engine has stopped (no-op when no pool is configured)."""
    pool = cfg.deploy.get("gpus")
    if pool is None:
        yield None
        return
    from autotune.deploy import leftovers
    from autotune.deploy.gpus import lease_gpus
    from autotune.params import gpu_count

    with lease_gpus(
        [int(g) for g in pool],
        gpu_count(spec.params, cfg.runtime.gpu_flag),
        leftovers.registry_dir().parent / "gpu-leases",
        holder=f"{spec.study}-{spec.name}",
    ) as gpus:
        yield gpus


def _scrub_workdir(workdir: Path, secrets: list[str]) -> None:
    """No secret stays in the trial's files (engine log, genai-bench output)."""
    try:
        scrub_tree(workdir, secrets)
    except Exception:
        log.exception("could not scrub %s", workdir)
