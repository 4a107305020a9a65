"""The study's lifecycle around Hydra's sweep: validate, open the sweep run, close it.

``StudyCallback`` runs in the sweep driver. Before the first trial it validates the
whole study (flags of every sweep value, workload, objective) and checks the tracking
store, so bad input exits non-zero with a clear message and nothing deployed. It then
finds or creates the MLflow parent run and writes ``study.json`` for the trials. At
the end it prints the study table and the best trial, and closes the parent run, also
when the sweep is interrupted (Ctrl-C, SIGTERM) or the process exits early.

Several sweep processes (workers) may share one study (docs/team.md): the one that
creates the Optuna study creates the parent run and records it in the study, the
others join it; the parent is closed by the last worker to leave.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from autotune import registry, secrets

if TYPE_CHECKING:
    from autotune import tracking
from autotune.objective import Objective, pareto_front
from autotune.owner import owner_dead, owner_id
from autotune.progress import console, print_pareto, print_summary
from autotune.study import (
    WORKER_ATTR,
    SharedStudy,
    StudyInfo,
    join_study,
    open_storage,
    optuna_storage,
    storage_error,
    study_name,
    worker_name,
    worker_seed,
)
from autotune.validation import validate_study

log = logging.getLogger(__name__)

# Exit code for bad input (as argparse uses).
EXIT_CONFIG = 2


def _fail(title: str, errors: list[str]) -> None:
    console.print(f"[bold red]{title}[/]", highlight=False)
    known = secrets.secret_values()
    for e in errors:
        console.print(f"  - {secrets.scrub(e, known)}", highlight=False, markup=False)
    console.print("Nothing was deployed.", highlight=False)
    raise SystemExit(EXIT_CONFIG)


def expected_trials(cfg: DictConfig) -> int | None:
    """How many trials the sweep will run, when that is known up front."""
    sweeper = OmegaConf.select(cfg, "hydra.sweeper")
    if sweeper is None:
        return 1
    from autotune.validation import sweep_values

    sizes: dict[str, int] = {}
    for key, values, bounds in sweep_values(cfg):
        sizes[key.lstrip("+~")] = max(1, len(values)) if bounds is None else 0
    searched = any(k.startswith("params.") for k in sizes)
    baseline = 1 if searched and OmegaConf.select(cfg, "search.baseline", default=False) else 0
    if OmegaConf.select(cfg, "hydra.sweeper.n_trials") is not None:
        return int(cfg.hydra.sweeper.n_trials) + baseline
    if 0 in sizes.values():
        return None
    return (math.prod(sizes.values()) if sizes else 1) + baseline


def resumable(cfg: DictConfig) -> bool:
    """Does the sweeper keep its study in storage (so the same command resumes it)?"""
    return "optuna" in str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).lower()


def study_storage(cfg: DictConfig) -> str:
    """The Optuna storage URL the sweeper uses."""
    return str(
        OmegaConf.select(cfg, "hydra.sweeper.storage", default=None)
        or optuna_storage(cfg, cfg.hydra.runtime.cwd)
    )


# How long a worker that joins a brand-new study waits for its creator to record the
# MLflow parent run (one create_run call), and how long two workers that both created
# a parent run (no shared Optuna study to decide) wait before keeping the oldest.
PARENT_WAIT_S, PARENT_SETTLE_S = 30.0, 2.0
_SWEEP_DIR_OWNER = ".autotune-worker"


def _claim_sweep_dir(sweep_dir: Path) -> str | None:
    """Make this process the sweep directory's only user; else say who uses it.

    Two workers started in the same second on one host get the same default
    ``hydra.sweep.dir``: their trials would overwrite each other's files.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / _SWEEP_DIR_OWNER
    me = owner_id()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            other = path.read_text().strip()
            if other and other != me and not owner_dead(other, unknown_is_dead=True):
                return other
            path.unlink(missing_ok=True)  # left by a process that is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return None
    return None


class StudyCallback(Callback):
    def __init__(self) -> None:
        self.info: StudyInfo | None = None
        self.parent: tracking.RunLogger | None = None
        self.interrupted = False
        self.sweep_dir: Path | None = None
        self.worker = ""  # search.worker, or "pid@host" for a lone sweep process
        # Every secret the study knows (env, config, command line, URL passwords):
        # masked in every log record and scrubbed from the sweep dir's Hydra files.
        self._secrets: list[str] = []
        self._multirun_yaml: Path | None = None
        self._left = False
        self._previous_handlers: dict[int, Any] = {}

    # -- Hydra hooks ---------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, Path(config.hydra.sweep.dir), expected_trials(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._end(config)
        finally:
            # Hydra's files (multirun.yaml, each job's .hydra/), the trials' files.
            if self._secrets:
                secrets.scrub_tree(Path(config.hydra.sweep.dir), self._secrets)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, Path(config.hydra.run.dir), 1)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._end(config)
        finally:
            if self._secrets:
                secrets.scrub_tree(Path(config.hydra.run.dir) / ".hydra", self._secrets)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # In the process that runs the trial (the driver, or a joblib/Ray worker that
        # got this callback pickled): mask the study's secrets there too, scrub them
        # from the files Hydra has just written for this job (and the sweep's
        # multirun.yaml), and tag the trial run with this sweep process's worker name
        # and sampler seed.
        if self._secrets:
            secrets.register(self._secrets)
            self._scrub_hydra_files(config)
        # Again at each job (cheap): a library that re-applies its own logger set-up
        # mid-study (MLflow can) would otherwise print INFO lines past the trial log.
        from autotune.logs import route_library_logs

        route_library_logs()
        self._stop_if_interrupted()
        if self.info is None:
            return
        from autotune import tracking

        tracking.set_job_tags(
            {tracking.WORKER: self.info.worker, tracking.SAMPLER_SEED: self.info.sampler_seed}
        )

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        # A study killed later (SIGKILL) leaves no secret in a finished job's files.
        if self._secrets:
            self._scrub_hydra_files(config)
        self._stop_if_interrupted()

    # -- implementation ------------------------------------------------------------------
    def _scrub_hydra_files(self, config: DictConfig) -> None:
        """Mask the study's secrets in the job's ``.hydra/*.yaml`` (config, hydra,
        overrides: Hydra writes the command line there) and, once, ``multirun.yaml``."""
        hc = config.hydra
        job_dir = OmegaConf.select(hc, "runtime.output_dir", default=None)
        subdir = OmegaConf.select(hc, "output_subdir", default=None)
        if job_dir and subdir:
            secrets.scrub_tree(Path(job_dir) / str(subdir), self._secrets)
        if self._multirun_yaml is None:
            sweep_dir = OmegaConf.select(hc, "sweep.dir", default=None)
            if sweep_dir and str(hc.mode) == "RunMode.MULTIRUN":
                self._multirun_yaml = Path(sweep_dir) / "multirun.yaml"
                if self._multirun_yaml.is_file():
                    secrets.scrub_file(self._multirun_yaml, self._secrets)

    def _start(self, cfg: DictConfig, sweep_dir: Path, n_trials: int | None) -> None:
        # Hydra turns exceptions raised in callbacks into warnings and carries on;
        # a study that cannot start must stop here instead.
        try:
            self._open(cfg, sweep_dir, n_trials)
        except SystemExit:
            raise
        except Exception as e:
            log.exception("the study could not start")
            _fail("The study could not start:", [f"{type(e).__name__}: {e}"])
        # What is alive now (MLflow, SQLAlchemy, pandas, Hydra: ~370k objects) lives as
        # long as the study: kept out of the cyclic GC's reach, and young collections
        # made rarer, the GC walks mostly what the trials allocate (OmegaConf copies are
        # cyclic garbage). A 100-trial virtual study spent ~7 s of ~50 in the GC, ~3 s now.
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)

    def _open(self, cfg: DictConfig, sweep_dir: Path, n_trials: int | None) -> None:
        # Before anything is printed or the first job is launched (Hydra's launcher
        # logs each job's overrides): every secret the study knows is masked from now
        # on in every log record, on the terminal and in the jobs' log files.
        self._secrets = secrets.secret_values(extra=secrets.config_secrets(cfg))
        secrets.register(self._secrets)
        errors = validate_study(cfg)
        if errors:
            _fail("Invalid study configuration:", errors)
        if cfg.dry_run:
            return
        start_dir = cfg.hydra.runtime.cwd
        shared_study = resumable(cfg)
        storage = study_storage(cfg) if shared_study else None
        url_errors = [
            f"{key}: {err}"
            for key, url in (("search.storage", storage), ("tracking.uri", cfg.tracking.uri))
            if url and (err := storage_error(str(url)))
        ]
        if url_errors:
            _fail("Invalid study configuration:", url_errors)
        # Imported only now: mlflow takes seconds to import, and bad input must fail fast.
        from autotune import tracking

        registry.reap()
        uri = tracking.resolve_uri(cfg.tracking.uri, start_dir)
        # A password in a storage or tracking URL never reaches a log or MLflow.
        secrets.register(secrets.url_credentials(storage) + secrets.url_credentials(uri))
        self._secrets = secrets.secret_values()
        from autotune import outbox

        outbox.bound_http_retries()  # a server that is down fails in seconds, not minutes
        try:
            outbox.check_reachable(uri)
            client, exp_id = tracking.connect(uri, cfg.tracking.experiment)
        except tracking.TrackingError as e:
            _fail("Tracking store unavailable:", [secrets.scrub(str(e), self._secrets)])
        # Results earlier sweeps kept while MLflow was down (before their runs are closed).
        outbox.replay_pending(client, uri)
        for run_id in tracking.close_orphaned_runs(client, exp_id):
            log.warning("closed run %s left RUNNING by a tuner that was killed", run_id)
        objective = Objective.from_config(cfg.objective)
        simulated = bool(cfg.deploy.get("simulated"))
        if cfg.study.name or shared_study:
            name = study_name(cfg)
        else:  # a grid keeps no state to resume from: each run is its own study
            name = f"{cfg.tracking.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.sweep_dir = sweep_dir.resolve()
        other = _claim_sweep_dir(self.sweep_dir)
        if other:
            _fail(
                "Sweep directory in use:",
                [
                    f"{self.sweep_dir} is used by the sweep process {other}; give each worker "
                    f"its own directory: hydra.sweep.dir=multirun/<study>/<worker>"
                ],
            )
        worker = worker_name(cfg)
        self.worker = worker or owner_id()
        shared = None
        if shared_study:
            shared = join_study(open_storage(storage), name, objective.directions, worker)
            self._check_workers(shared, worker)
        self.parent, created = self._sweep_run(
            client,
            exp_id,
            cfg,
            name,
            shared,
            {
                tracking.ROLE: "sweep",
                tracking.STUDY: name,
                tracking.SIMULATED: str(simulated).lower(),
                tracking.STATUS: "running",
                "autotune.sweep_dir": str(self.sweep_dir),
                "autotune.n_trials": n_trials if n_trials is not None else "",
                "autotune.command": secrets.scrub(" ".join(sys.argv[1:]), secrets.secret_values()),
                tracking.OWNER: owner_id(),
            },
        )
        joined = not created and tracking.live_workers(client.get_run(self.parent.run_id).data.tags)
        tracking.join_sweep_run(self.parent, self.worker)
        if not created:
            console.print(
                f"{'Joining' if joined else 'Resuming'} study {name} "
                f"(MLflow run {self.parent.run_id})",
                highlight=False,
            )
        self.parent.params(
            {
                "model": cfg.model.name,
                "runtime": cfg.runtime.name,
                "deploy": cfg.deploy.name,
                "objective": ",".join(f"{t.direction}:{t.metric}" for t in cfg.objective.terms),
                "objective.concurrency": cfg.objective.concurrency,
                "objective.across_levels": cfg.objective.across_levels,
                "objective.slo_concurrency": cfg.objective.slo_concurrency,
                "slo": ",".join(f"{k}<={v}" for k, v in cfg.objective.slo.items()) or "none",
                "workload.scenarios": ",".join(cfg.benchmark.scenarios),
                "workload.concurrency": ",".join(str(c) for c in cfg.benchmark.concurrency),
            }
        )
        done_before = len(client.get_metric_history(self.parent.run_id, "trial_ok"))
        seed = worker_seed(cfg.search.seed, worker) if shared_study else None
        self.info = StudyInfo(
            name=name,
            tracking_uri=uri,
            experiment_id=exp_id,
            parent_run_id=self.parent.run_id,
            directions=list(objective.directions),
            n_trials=n_trials,
            simulated=simulated,
            # The Optuna sweeper numbers its jobs after the Optuna trials (unique across
            # workers); a grid numbers them after the trials already in the study.
            first_index=0 if shared_study else done_before,
            worker=self.worker,
            sampler_seed=seed,
        )
        self.info.write(self.sweep_dir)
        if n_trials is not None and worker is None:  # live done / failed / total in the UI
            self.parent.metric("trials_total", done_before + n_trials)
        self._guard()
        banner = " [magenta](SIMULATED engine)[/]" if simulated else ""
        team = f" as worker {worker} (sampler seed {seed})" if worker else ""
        shown = secrets.mask_url(uri)
        console.print(
            f"[bold]Study {name}[/]{banner}: {n_trials or '?'} trial(s) on deploy={cfg.deploy.name}"
            f"{team}, tracking {shown}\n  watch: mlflow ui --backend-store-uri {shown}",
            highlight=False,
        )

    def _sweep_run(
        self,
        client: Any,
        exp_id: str,
        cfg: DictConfig,
        name: str,
        shared: SharedStudy | None,
        tags: dict[str, Any],
    ) -> tuple[tracking.RunLogger, bool]:
        """The study's one MLflow parent run, found or created; True if created here.

        With an Optuna study, the worker that created it creates the parent run and
        records its id in the study; the others read it (waiting for it if the study
        is brand new). Without one (a grid, or a study recorded before autotune kept
        the parent's id), find or create by tag.
        """
        from autotune import tracking

        experiment = str(cfg.tracking.experiment)
        if shared is not None:
            run = tracking.sweep_run(client, shared.parent_run_id(experiment))
            if run is None and not shared.created and shared.is_empty():
                log.info("waiting for the worker that created study %s to record its run", name)
                run_id = shared.wait_parent_run_id(experiment, PARENT_WAIT_S)
                run = tracking.sweep_run(client, run_id)
            if run is not None:
                return run, False
            if shared.created:
                run = tracking.find_sweep_run(client, exp_id, name)
                created = run is None
                if run is None:
                    run = tracking.create_run(client, exp_id, name, tags)
                shared.set_parent_run_id(experiment, run.run_id)
                return run, created
        settle = PARENT_SETTLE_S if shared is not None or cfg.study.name else 0.0
        run, created = tracking.find_or_create_sweep_run(client, exp_id, name, tags, settle)
        if shared is not None:
            shared.set_parent_run_id(experiment, run.run_id)
        return run, created

    def _check_workers(self, shared: SharedStudy, worker: str | None) -> None:
        """A worker name runs once at a time; a lone sweep should not share a study."""
        me = owner_id()
        for t in shared.running_trials():
            owner = t.user_attrs.get("autotune_owner")
            if owner == me or owner_dead(owner):
                continue
            if worker is not None and t.user_attrs.get(WORKER_ATTR) == worker:
                if owner and owner.partition("@")[2] == me.partition("@")[2]:
                    _fail(
                        "Worker already running:",
                        [
                            f"search.worker={worker} is running as {owner} (trial {t.number}); "
                            f"give each worker its own search.worker name"
                        ],
                    )
            elif worker is None:
                log.warning(
                    "%s is running trials of this study too: give every process that "
                    "shares a study its own search.worker=NAME, so that each gets its own "
                    "sampler seed and budget (docs/team.md)",
                    owner,
                )
                return

    def _guard(self) -> None:
        """Never leave the parent RUNNING: mark interrupts, close on any exit."""

        def on_signal(signum: int, frame: Any) -> None:
            self.interrupted = True
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous_handlers[sig] = signal.signal(sig, on_signal)
        atexit.register(self._close_parent, "KILLED")

    def _stop_if_interrupted(self) -> None:
        """Stop the sweep if a signal came that did not stop it.

        The handler raises KeyboardInterrupt in whatever frame runs when the signal
        arrives; in a weakref or GC callback (SQLAlchemy has some) Python prints the
        exception and drops it, and the sweep would run on to its end (seen with
        SIGTERM between trials). No further trial starts after a signal.
        """
        if self.interrupted:
            raise KeyboardInterrupt("interrupted")

    def _close_parent(self, status: str) -> None:
        if self.parent is None or self._left:
            return
        from autotune import tracking

        self._left = True
        try:
            last = tracking.leave_sweep_run(self.parent, self.worker, status)
            if not last:
                log.info("other workers are still running study %s", self.parent.run_id)
            elif not tracking.is_terminal(self.parent.status()):
                self.parent.tag(
                    **{tracking.STATUS: "interrupted" if status == "KILLED" else "done"}
                )
                self.parent.end(status)
        except Exception:
            log.exception("could not close the sweep run %s", self.parent.run_id)

    def _end(self, cfg: DictConfig) -> None:
        if self.parent is None or self.info is None:
            return
        try:
            from autotune import outbox

            # Trials' results kept while MLflow was down: in before the summary reads them.
            outbox.Outbox(self.sweep_dir, self.info.tracking_uri).replay(
                self.parent.client, force=True
            )
            self._summarize(cfg)
        except Exception:
            log.exception("could not summarize the study")
        finally:
            self._close_parent("KILLED" if self.interrupted or _in_interrupt() else "FINISHED")
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)
            if self.sweep_dir is not None:
                with contextlib.suppress(OSError):
                    (self.sweep_dir / _SWEEP_DIR_OWNER).unlink()

    def _summarize(self, cfg: DictConfig) -> None:
        assert self.info is not None and self.parent is not None
        from autotune import tracking

        client = self.parent.client
        runs = tracking.trial_runs(client, self.info.experiment_id, self.info.parent_run_id)
        objective = Objective.from_config(cfg.objective)
        flag_names = set(cfg.runtime.flags)
        rows, best = [], None
        for r in runs:
            flags = " ".join(
                f"{k}={v}" for k, v in sorted(r.data.params.items()) if k in flag_names
            )
            m = r.data.metrics
            ok = r.data.tags.get(tracking.STATUS) == "ok"
            row = {
                "trial": r.info.run_name,
                "status": "ok"
                if ok
                else f"failed: {r.data.tags.get(tracking.FAILURE, r.info.status.lower())}",
                "flags": flags or "(defaults)",
                "objective": f"{m['objective']:.4g}" if "objective" in m else "",
                "tput": f"{m['output_throughput_tok_s']:.1f}"
                if "output_throughput_tok_s" in m
                else "",
                "ttft": f"{m['ttft_p99_ms']:.1f}" if "ttft_p99_ms" in m else "",
                "tpot": f"{m['tpot_mean_ms']:.2f}" if "tpot_mean_ms" in m else "",
                "run_id": r.info.run_id,
                "value": m.get("objective"),
                "values": [m.get(f"objective_{i}") for i in range(len(objective.directions))]
                if len(objective.directions) > 1
                else [m.get("objective")],
                "ok": ok,
                "feasible": ok and r.data.tags.get("autotune.feasible", "true") == "true",
            }
            if len(objective.directions) > 1 and ok:
                row["objective"] = ", ".join(f"{v:.4g}" for v in row["values"] if v is not None)
            rows.append(row)
        # The best trial meets the SLOs when any trial does; a study where none does
        # still names the one that came closest (its score grades the miss).
        pool = [r for r in rows if r["feasible"]] or [r for r in rows if r["ok"]]
        pool = [r for r in pool if None not in r["values"]]
        best, front = None, []
        if len(objective.directions) == 1:
            for row in pool:  # ties: lower p99 TTFT, then the later trial (as the export)
                if (
                    best is None
                    or objective.better(row["value"], best["value"])
                    or row["value"] == best["value"]
                    and _ttft(row) <= _ttft(best)
                ):
                    best = row
            if best is not None and not best["feasible"]:
                log.warning(
                    "no trial met the SLOs %s; the closest is shown", dict(cfg.objective.slo)
                )
        else:
            front = [
                pool[i] for i in pareto_front([r["values"] for r in pool], objective.directions)
            ]
            for row in front:
                row["pareto"] = True
            self.parent.dict(
                {
                    "objectives": [
                        f"{d}:{m}"
                        for d, m in zip(objective.directions, objective.metrics, strict=True)
                    ],
                    "pareto_front": [
                        {
                            "trial": r["trial"],
                            "run_id": r["run_id"],
                            "flags": r["flags"],
                            "values": r["values"],
                        }
                        for r in front
                    ],
                },
                "pareto_front.json",
            )
            self.parent.metric("pareto_size", len(front))
        n_ok = sum(1 for r in rows if r["status"] == "ok")
        summary = {"trials_total": len(rows), "trials_ok": n_ok, "trials_failed": len(rows) - n_ok}
        self.parent.metrics(summary)
        self.parent.dict(
            {"study": self.info.name, **summary, "trials": rows, "best": best}, "study_summary.json"
        )
        if best is not None:
            self.parent.metric("best_objective_final", best["value"])
            self.parent.tag(
                **{"autotune.best_run_id": best["run_id"], "autotune.best_trial": best["trial"]}
            )
        print_summary(f"Study {self.info.name}", rows, best, self.info.simulated)
        if len(objective.directions) > 1:
            print_pareto(objective, front, self.info.simulated)
        # Confirmation runs and the verdict, then the confirmed choice's export and figures.
        from autotune.confirm.study import confirm_and_report
        from autotune.report import publish_study

        confirm_and_report(cfg, self.info, client, self.sweep_dir)

        publish_study(cfg, self.info, client, self.sweep_dir)


def _ttft(row: dict) -> float:
    try:
        return float(row["ttft"])
    except (KeyError, TypeError, ValueError):
        return float("inf")


def _in_interrupt() -> bool:
    exc = sys.exc_info()[1]
    return isinstance(exc, KeyboardInterrupt | SystemExit)
