"""The study's lifecycle around Hydra's sweep: validate, open the sweep run, close it.

``StudyCallback`` runs in the sweep driver. Before the first trial it validates the
whole study (flags of every sweep value, workload, objective) and checks the tracking
store, so bad input exits non-zero with a clear message and nothing deployed. It then
creates the MLflow parent run and writes ``study.json`` for the trials. At the end
it prints the study table and the best trial, and closes the parent run, also when
the sweep is interrupted (Ctrl-C, SIGTERM) or the process exits early.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from autotune import registry

if TYPE_CHECKING:
    from autotune import tracking
from autotune.objective import Objective, pareto_front
from autotune.owner import owner_id
from autotune.progress import console, print_pareto, print_summary
from autotune.study import StudyInfo, study_name
from autotune.validation import validate_study

log = logging.getLogger(__name__)

# Exit code for bad input (as argparse uses).
EXIT_CONFIG = 2


def _fail(title: str, errors: list[str]) -> None:
    console.print(f"[bold red]{title}[/]", highlight=False)
    for e in errors:
        console.print(f"  - {e}", highlight=False, markup=False)
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


class StudyCallback(Callback):
    def __init__(self) -> None:
        self.info: StudyInfo | None = None
        self.parent: tracking.RunLogger | None = None
        self.interrupted = False
        self.sweep_dir: Path | None = None
        self._previous_handlers: dict[int, Any] = {}

    # -- Hydra hooks ---------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, Path(config.hydra.sweep.dir), expected_trials(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end(config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, Path(config.hydra.run.dir), 1)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end(config)

    # -- implementation ------------------------------------------------------------------
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

    def _open(self, cfg: DictConfig, sweep_dir: Path, n_trials: int | None) -> None:
        errors = validate_study(cfg)
        if errors:
            _fail("Invalid study configuration:", errors)
        if cfg.dry_run:
            return
        # Imported only now: mlflow takes seconds to import, and bad input must fail fast.
        from autotune import tracking

        registry.reap()
        start_dir = cfg.hydra.runtime.cwd
        uri = tracking.resolve_uri(cfg.tracking.uri, start_dir)
        try:
            client, exp_id = tracking.connect(uri, cfg.tracking.experiment)
        except tracking.TrackingError as e:
            _fail("Tracking store unavailable:", [str(e)])
        for run_id in tracking.close_orphaned_runs(client, exp_id):
            log.warning("closed run %s left RUNNING by a tuner that was killed", run_id)
        objective = Objective.from_config(cfg.objective)
        simulated = bool(cfg.deploy.get("simulated"))
        if cfg.study.name or resumable(cfg):
            name = study_name(cfg)
        else:  # a grid keeps no state to resume from: each run is its own study
            name = f"{cfg.tracking.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.sweep_dir = sweep_dir.resolve()
        self.parent = tracking.find_sweep_run(client, exp_id, name)
        if self.parent is not None:
            console.print(
                f"Resuming study {name} (MLflow run {self.parent.run_id})", highlight=False
            )
            self.parent.reopen()
        else:
            self.parent = tracking.create_run(
                client,
                exp_id,
                name,
                {
                    tracking.ROLE: "sweep",
                    tracking.STUDY: name,
                    tracking.SIMULATED: str(simulated).lower(),
                    tracking.STATUS: "running",
                    "autotune.sweep_dir": str(self.sweep_dir),
                    "autotune.n_trials": n_trials if n_trials is not None else "",
                    "autotune.command": " ".join(sys.argv[1:]),
                    tracking.OWNER: owner_id(),
                },
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
        self.info = StudyInfo(
            name=name,
            tracking_uri=uri,
            experiment_id=exp_id,
            parent_run_id=self.parent.run_id,
            directions=list(objective.directions),
            n_trials=n_trials,
            simulated=simulated,
            first_index=len(client.get_metric_history(self.parent.run_id, "trial_ok")),
        )
        self.info.write(self.sweep_dir)
        if n_trials is not None:  # live done / failed / total in the UI
            self.parent.metric("trials_total", self.info.first_index + n_trials)
        self._guard()
        banner = " [magenta](SIMULATED engine)[/]" if simulated else ""
        console.print(
            f"[bold]Study {name}[/]{banner}: {n_trials or '?'} trial(s) on deploy={cfg.deploy.name}, "
            f"tracking {uri}\n  watch: mlflow ui --backend-store-uri {uri}",
            highlight=False,
        )

    def _guard(self) -> None:
        """Never leave the parent RUNNING: mark interrupts, close on any exit."""

        def on_signal(signum: int, frame: Any) -> None:
            self.interrupted = True
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous_handlers[sig] = signal.signal(sig, on_signal)
        atexit.register(self._close_parent, "KILLED")

    def _close_parent(self, status: str) -> None:
        if self.parent is None:
            return
        from autotune import tracking

        try:
            if not tracking.is_terminal(self.parent.status()):
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
            self._summarize(cfg)
        except Exception:
            log.exception("could not summarize the study")
        finally:
            self._close_parent("KILLED" if self.interrupted or _in_interrupt() else "FINISHED")
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)

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
        # Best-config export (best/ on the sweep run and in the sweep dir) and figures.
        from autotune.report import publish_study

        publish_study(cfg, self.info, client, self.sweep_dir)


def _ttft(row: dict) -> float:
    try:
        return float(row["ttft"])
    except (KeyError, TypeError, ValueError):
        return float("inf")


def _in_interrupt() -> bool:
    exc = sys.exc_info()[1]
    return isinstance(exc, KeyboardInterrupt | SystemExit)
