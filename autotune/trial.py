"""One trial, top to bottom: deploy → ready → benchmark → parse → score → record → teardown.

This is the only module that knows the order of the stages. Each stage is a
component chosen by config; whatever happens (a failure, an exception, Ctrl-C,
SIGTERM) the engine is stopped and the MLflow run is closed with a status.

    score = run_trial(cfg, TrialContext.from_hydra(cfg))   # float | list[float] | None
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from autotune import outbox, registry, tracking
from autotune.benchmark.genai_bench import Workload, run_genai_bench
from autotune.benchmark.parse import parse_experiment
from autotune.benchmark.virtual import run_virtual
from autotune.benchmark.warmup import warm_up
from autotune.failures import classify, last_lines, read_log
from autotune.gpus import lease_gpus
from autotune.launcher import Endpoint, Failure, Launcher, LaunchSpec, TrialFailure, create_launcher
from autotune.objective import Objective, Score
from autotune.owner import owner_id
from autotune.params import gpu_count, normalize
from autotune.progress import TrialProgress
from autotune.readiness import wait_ready
from autotune.secrets import scrub, scrub_data, scrub_tree, secret_values
from autotune.study import StudyInfo

log = logging.getLogger(__name__)
# libyaml's dumper when PyYAML has it (~10x faster than the pure-Python one).
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass
class TrialContext:
    """Where a trial sits: its index, its directory and its study."""

    index: int
    workdir: Path
    study: StudyInfo
    # Where the sweep keeps its files (study.json, outbox/); default: workdir's parent.
    sweep_dir: Path | None = None
    # A run of another stage (the confirmation stage: role "confirm"): its own name and
    # tags, and it does not count as a search trial on the sweep run.
    role: str = "trial"
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hydra(cls) -> TrialContext:
        hc = HydraConfig.get()
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
        sweep_dir = Path(hc.sweep.dir if multirun else hc.run.dir).resolve()
        study = StudyInfo.read(sweep_dir)
        index = int(hc.job.num) if multirun and hc.job.get("num") is not None else 0
        return cls(
            index=study.first_index + index,
            workdir=Path(hc.runtime.output_dir).resolve(),
            study=study,
            sweep_dir=sweep_dir,
        )


def workload_from_config(cfg: DictConfig, api_backend: str) -> Workload:
    b = cfg.benchmark
    return Workload(
        scenarios=list(b.scenarios),
        concurrency=[int(c) for c in b.concurrency],
        max_requests_per_run=int(b.max_requests_per_run),
        max_time_per_run_min=int(b.max_time_per_run_min),
        task=b.task,
        api_backend=api_backend,
        warmup_requests=max(b.concurrency) if b.warmup_requests is None else b.warmup_requests,
    )


def _flags_label(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(engine defaults)"


def run_trial(cfg: DictConfig, ctx: TrialContext) -> float | list[float] | None:
    """Run one trial; return its score for the sweeper, None if it failed."""
    params = normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases)
    launcher = create_launcher(cfg.deploy)
    objective = Objective.from_config(cfg.objective)
    secrets = secret_values(extra=[cfg.benchmark.api_key])
    study = ctx.study

    # MLflow may be down or locked for a while: what cannot be sent is kept in the
    # sweep's outbox and uploaded later (autotune.outbox); the trial goes on.
    outbox.bound_http_retries()
    box = outbox.Outbox(ctx.sweep_dir or ctx.workdir.parent, study.tracking_uri)
    client = _client(study.tracking_uri, cfg.tracking.experiment)
    box.replay(client)
    baseline = bool(cfg.study.baseline_trial)
    name = ctx.name or f"trial-{ctx.index:03d}" + ("-baseline" if baseline else "")
    run = outbox.SafeRun.create(
        client,
        box,
        study.experiment_id,
        name,
        {
            tracking.ROLE: ctx.role,
            **ctx.tags,
            tracking.PARENT: study.parent_run_id,
            tracking.STUDY: study.name,
            tracking.STATUS: "running",
            tracking.PHASE: "deploying",
            tracking.SIMULATED: str(launcher.simulated).lower(),
            "autotune.trial_index": ctx.index,
            "autotune.baseline": str(baseline).lower(),
            "autotune.deploy": cfg.deploy.name,
            "autotune.runtime": cfg.runtime.name,
            "autotune.host": os.uname().nodename,
            tracking.OWNER: owner_id(),
        },
        deferred=launcher.instant,
    )
    progress = TrialProgress(
        ctx.index, study.n_trials, _flags_label(params), launcher.simulated, label=ctx.name
    )

    def phase(p: str) -> None:
        run.tag(**{tracking.PHASE: p})
        progress.phase(p)

    spec = LaunchSpec.for_trial(cfg, params, study=study.name, trial=name, workdir=ctx.workdir)
    run.params(
        {
            **params,
            "model": cfg.model.name,
            "runtime": cfg.runtime.name,
            "deploy": cfg.deploy.name,
            "workload.scenarios": ",".join(cfg.benchmark.scenarios),
            "workload.concurrency": ",".join(str(c) for c in cfg.benchmark.concurrency),
            "workload.max_requests_per_run": cfg.benchmark.max_requests_per_run,
            **(
                {"sim.gpu": cfg.deploy.gpu, "sim.clock": cfg.deploy.clock}
                if launcher.simulated
                else {}
            ),
        }
    )
    # Scrub the values, not the YAML text: a bare *** would not parse back.
    resolved = scrub_data(OmegaConf.to_container(cfg, resolve=True), secrets)
    # Dump the plain data: re-wrapping it in OmegaConf cost more than a virtual trial.
    run.text(
        yaml.dump(resolved, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True),
        "config.yaml",
    )
    for fname, text in launcher.render(spec).items():
        run.text(scrub(text, secrets), f"launch/{fname}")

    endpoint: Endpoint | None = None
    status, failure, score = "FAILED", None, None
    started = time.monotonic()
    held = contextlib.ExitStack()
    try:
        spec.gpus = held.enter_context(_gpu_lease(cfg, params, spec.trial_name))
        leased_at = time.time()
        if spec.gpus is not None:
            run.tag(**{"autotune.gpus": ",".join(map(str, spec.gpus))})
        phase("deploying")
        endpoint = launcher.start(spec)
        waited = wait_ready(
            launcher,
            endpoint,
            health_path=cfg.runtime.health_path,
            ready_pattern=cfg.runtime.ready_log_pattern,
            failure_patterns=cfg.runtime.failure_patterns,
            timeout_s=float(cfg.deploy.startup_timeout_s),
        )
        run.metric("startup_s", waited)
        phase("ready")
        _record_server_info(endpoint, cfg, run)
        metrics = _benchmark(cfg, launcher, endpoint, ctx.workdir, phase, run)
        scored = objective.score(metrics)
        if scored is None:
            raise TrialFailure(
                Failure.BENCHMARK_FAILED,
                f"the benchmark produced no {', '.join(objective.metrics)} (error_rate "
                f"{metrics.get('error_rate', float('nan')):.2f})",
            )
        _record_score(run, scored)
        score = scored.value
        status = "FINISHED"
        run.tag(**{tracking.STATUS: "ok"})
        phase("done")
    except TrialFailure as e:
        failure = e.failure
        log.error("trial %d failed (%s): %s", ctx.index, e.failure.value, scrub(str(e), secrets))
        run.tag(
            **{
                tracking.STATUS: "failed",
                tracking.FAILURE: e.failure.value,
                # The failure class at a glance in the runs list and on the run page.
                "mlflow.runName": f"{name} [{e.failure.value}]",
                "mlflow.note.content": scrub(str(e), secrets)[:4000],
            }
        )
        run.text(scrub(str(e), secrets), "failure.txt")
        phase("failed")
    except (KeyboardInterrupt, SystemExit):
        status, failure = "KILLED", Failure.INTERRUPTED
        run.tag(**{tracking.STATUS: "failed", tracking.FAILURE: Failure.INTERRUPTED.value})
        progress.phase("interrupted")
        raise
    except Exception as e:  # a bug must not stop the study: record it, go on
        failure = Failure.INTERNAL_ERROR
        log.exception("trial %d hit an internal error", ctx.index)
        run.tag(**{tracking.STATUS: "failed", tracking.FAILURE: failure.value})
        run.text(scrub(traceback.format_exc(), secrets), "failure.txt")
        phase("failed")
        del e
    finally:
        if endpoint is not None:
            launcher.stop(endpoint)
        held.close()  # GPUs go back only once the engine has stopped
        if spec.gpus is not None:  # when the GPUs were held (epoch seconds)
            run.tag(**{"autotune.gpu_lease": f"{leased_at:.3f}-{time.time():.3f}"})
        _record_artifacts(run, ctx.workdir, endpoint, secrets)
        run.end(status)
        elapsed = time.monotonic() - started
        if ctx.role == "trial":
            _update_parent(client, box, study, objective, ctx.index, score)
        progress.finish(score, failure.value if failure else None, elapsed)
    return score


def _gpu_lease(cfg: DictConfig, params: dict[str, Any], holder: str):
    """Lease ``tp-size`` GPUs of ``deploy.gpus`` (no-op when no pool is configured)."""
    pool = cfg.deploy.get("gpus")
    if pool is None:
        return contextlib.nullcontext(None)
    return lease_gpus(
        [int(g) for g in pool],
        gpu_count(params, cfg.runtime.gpu_flag),
        registry.registry_dir().parent / "gpu-leases",
        holder=holder,
    )


def _benchmark(
    cfg: DictConfig, launcher: Launcher, endpoint: Endpoint, workdir: Path, phase, run
) -> dict[str, float]:
    workload = workload_from_config(cfg, cfg.runtime.api_backend)
    out_dir = workdir / "genai-bench"
    if endpoint.virtual:
        phase("benchmarking (virtual clock)")
        folder = run_virtual(endpoint.info["sim"], workload, out_dir)
        partial, note = False, ""
    else:
        tokenizer = endpoint.info.get("tokenizer") or cfg.model.tokenizer or cfg.model.path
        phase("warming up")
        budget_s, warm_start = float(cfg.benchmark.timeout_s), time.monotonic()
        warm_up(
            endpoint.base_url,
            endpoint.model_name,
            requests=workload.warmup_requests,
            users=max(workload.concurrency),
            scenario=workload.scenarios[0],
            api_key=cfg.benchmark.api_key,
            timeout_s=budget_s,
        )
        # One wall-clock limit for warm-up and benchmark together (a hung engine).
        left_s = max(1.0, budget_s - (time.monotonic() - warm_start))
        bench = run_genai_bench(
            endpoint.base_url,
            endpoint.model_name,
            str(tokenizer),
            workload,
            out_dir,
            timeout_s=left_s,
            api_key=cfg.benchmark.api_key,
            on_progress=phase,
        )
        folder, partial = bench.folder, bench.partial
        note = f"genai-bench exit {bench.returncode}{' (timed out)' if bench.timed_out else ''}"
        code = launcher.poll(endpoint)
        if code is not None:
            text = read_log(endpoint.log_path)
            found = classify(text, cfg.runtime.failure_patterns) or Failure.CRASH.value
            _log_partial(run, folder)
            raise TrialFailure(
                Failure(found) if found in Failure._value2member_map_ else Failure.CRASH,
                f"engine exited with code {code} during the benchmark:\n{last_lines(text)}",
            )
    result = parse_experiment(folder)
    metrics = result.metrics()
    if not result.runs:
        kind = Failure.BENCHMARK_TIMEOUT if "timed out" in note else Failure.BENCHMARK_FAILED
        raise TrialFailure(kind, f"the benchmark produced no results ({note})")
    if partial or result.partial:
        run.tag(**{"autotune.partial": "true"})
        log.warning("partial benchmark results (%s)", note)
    run.metrics(metrics)
    if metrics.get("num_completed_requests", 1) == 0:
        # genai-bench writes a run where every request failed (throughput 0): that is
        # no measurement, and a throughput objective of 0 must not pass for one.
        raise TrialFailure(
            Failure.BENCHMARK_FAILED,
            f"every request failed (error_rate {metrics.get('error_rate', 1.0):.2f}, "
            f"{note}): see genai-bench/ and logs/engine.log",
        )
    return metrics


def _log_partial(run, folder: Path) -> None:
    try:
        result = parse_experiment(folder)
    except Exception:
        return
    if result.runs:
        run.metrics(result.metrics())
        run.tag(**{"autotune.partial": "true"})


def _record_score(run, scored: Score) -> None:
    values = scored.values
    out = {"objective": values[0], "slo_feasible": 1.0 if scored.feasible else 0.0}
    if len(values) > 1:
        out.update({f"objective_{i}": v for i, v in enumerate(values)})
    out.update({f"slo_slack.{k}": v for k, v in scored.slack.items()})
    run.metrics(out)
    run.tag(**{"autotune.feasible": str(scored.feasible).lower()})


def _record_server_info(endpoint: Endpoint, cfg: DictConfig, run) -> None:
    """Keep the engine's effective (auto-derived) settings with the trial."""
    if endpoint.virtual or cfg.runtime.name != "sglang":
        return
    try:
        info = httpx.get(endpoint.base_url + "/get_server_info", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return
    run.dict(info, "server_info.json")


def _record_artifacts(run, workdir: Path, endpoint: Endpoint | None, secrets: list[str]) -> None:
    """Engine log and genai-bench folder, scrubbed of secrets, then uploaded."""
    try:
        scrub_tree(workdir, secrets)
        if endpoint is not None and endpoint.log_path.exists():
            run.artifact(endpoint.log_path, "logs")
        bench = workdir / "genai-bench"
        if bench.exists():
            run.artifact(bench, "genai-bench")
    except Exception:
        log.exception("could not upload the trial's artifacts")


def _client(uri: str, experiment: str):
    """The tracking client; one that connects later when the store is down right now."""
    try:
        client, _ = tracking.connect(uri, experiment)
    except tracking.TrackingError as e:
        from mlflow.tracking import MlflowClient

        log.warning("%s", e)
        client = MlflowClient(tracking_uri=uri)
    return client


def _update_parent(
    client, box: outbox.Outbox, study: StudyInfo, objective: Objective, index: int, score
) -> None:
    """Live study curves on the parent run, with step = trial index.

    ``trial_objective`` / ``trial_ok`` record each trial as it ends (from any worker);
    ``best_objective``, ``trials_done`` and ``trials_failed`` are derived from their
    history, which is one small query however long the study is.
    """
    parent = outbox.SafeRun(client, box, study.parent_run_id, "sweep")
    single = len(objective.directions) == 1
    own = {"trial_ok": 0.0 if score is None else 1.0}
    if single and score is not None:
        own["trial_objective"] = float(score)
    parent.metrics(own, step=index)  # kept in the outbox if MLflow is down
    if parent.online:  # else the next trial that reaches MLflow derives the curves
        try:
            oks = client.get_metric_history(study.parent_run_id, "trial_ok")
            out = {"trials_done": len(oks), "trials_failed": sum(1 for m in oks if m.value == 0)}
            if single:
                values = [
                    m.value
                    for m in client.get_metric_history(study.parent_run_id, "trial_objective")
                ]
                if values:
                    pick = max if objective.directions[0] == "maximize" else min
                    out["best_objective"] = pick(values)
            parent.metrics(out, step=index)
        except Exception as e:
            log.warning("could not update the sweep run's curves: %s", e)
    parent.close()
