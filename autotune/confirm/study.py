"""The confirmation stage of a finished search, on MLflow and the trial pipeline.

Called once by the sweep driver at the end of a single-objective study, before the
best configuration is exported (:func:`confirm_study`). It picks the top-k distinct
successful trials, re-runs each of them and the engine defaults ``repeats`` times as
fresh trials (nested runs tagged ``autotune.role=confirm`` and
``autotune.confirms=<run id of the trial they repeat>``, not counted in the search's
budget), decides the verdict (:mod:`autotune.confirm.verdict`) and records it on the
sweep run: tags ``autotune.verdict``, ``autotune.verdict_line``,
``autotune.confirmed_run_id`` (the trial the export takes) and the ``confirm.*``
metrics. A resumed study finds its finished confirmation runs by name and does not
run them again.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from autotune.confirm.plan import top_distinct
from autotune.confirm.stage import Candidate, RunResult, run_confirmation, run_label
from autotune.confirm.verdict import BETTER, DEFAULTS, Verdict, decide

log = logging.getLogger(__name__)

ROLE_CONFIRM = "confirm"
CONFIRMS, SLOT = "autotune.confirms", "autotune.confirm_slot"
VERDICT, VERDICT_LINE, CONFIRMED = (
    "autotune.verdict",
    "autotune.verdict_line",
    "autotune.confirmed_run_id",
)


def confirm_study(
    cfg: DictConfig, info: Any, client: Any, sweep_dir: Path | None
) -> Verdict | None:
    """Run the confirmation stage of a finished study; None when it does not apply."""
    from autotune import tracking
    from autotune.objective import Objective

    conf = cfg.search.confirm
    objective = Objective.from_config(cfg.objective)
    if not conf.enabled or cfg.dry_run or len(objective.directions) != 1:
        return None
    if cfg.search.worker is not None:
        # Each worker of a shared study ends on its own; confirming is the study's job
        # once all have (not yet built: known limitation, docs/team.md).
        log.warning("search.worker is set: the confirmation stage is skipped for team studies")
        return None
    maximize = objective.directions[0] == "maximize"
    trials = [
        r
        for r in tracking.trial_runs(client, info.experiment_id, info.parent_run_id)
        if r.data.tags.get(tracking.STATUS) == "ok" and "objective" in r.data.metrics
    ]
    if not trials:
        return None
    flag_names = set(cfg.runtime.flags)

    def flags(run: Any) -> dict[str, str]:
        return {k: v for k, v in run.data.params.items() if k in flag_names}

    baseline = next((r for r in trials if r.data.tags.get("autotune.baseline") == "true"), None)
    default_flags = flags(baseline) if baseline is not None else _fixed_params(cfg)
    best = top_distinct(
        [r for r in trials if r is not baseline],
        int(conf.top_k),
        value=lambda r: r.data.metrics["objective"],
        flags=lambda r: tuple(sorted(flags(r).items())),
        maximize=maximize,
        exclude=tuple(sorted((k, str(v)) for k, v in default_flags.items())),
    )
    if not best:
        log.info("confirmation: no configuration other than the engine defaults to confirm")
        return None
    candidates = [Candidate(r.info.run_name, flags(r), r.info.run_id) for r in best]
    defaults = Candidate(DEFAULTS, dict(default_flags), baseline.info.run_id if baseline else "")
    repeats = int(conf.repeats)
    # Which candidate each run repeats (its autotune.confirms tag), by the run's label.
    by_label = {run_label(c.key, r): c for c in [*candidates, defaults] for r in range(repeats)}
    measured = run_confirmation(
        candidates,
        defaults,
        _trial_runner(cfg, info, sweep_dir, client, by_label),
        repeats=repeats,
        seed=int(cfg.search.seed),
        done=finished_runs(client, info.experiment_id, info.parent_run_id),
    )
    verdict = decide(
        [measured[c.key] for c in candidates],
        measured[DEFAULTS],
        maximize,
        has_slo=bool(cfg.objective.slo),
    )
    _record(client, info.parent_run_id, verdict, candidates, defaults)
    return verdict


def _fixed_params(cfg: DictConfig) -> dict[str, Any]:
    """The study's fixed flags, without any searched one (the defaults without a baseline trial)."""
    from autotune.params import normalize
    from autotune.study.validation import sweep_values

    searched = {k.lstrip("+~").removeprefix("params.") for k, _, _ in sweep_values(cfg)}
    fixed = {k: v for k, v in dict(cfg.params).items() if k not in searched}
    return normalize(fixed, cfg.runtime.flags, cfg.runtime.aliases)


def _trial_runner(
    cfg: DictConfig,
    info: Any,
    sweep_dir: Path | None,
    client: Any,
    by_label: dict[str, Candidate],
) -> Callable[[dict[str, Any], str], RunResult]:
    """``run_one(params, label)``: a fresh trial through :func:`autotune.trial.run_trial`."""
    from autotune.params import normalize
    from autotune.tracking.progress import TrialProgress
    from autotune.tracking.recorder import TrialRecorder
    from autotune.trial.executor import run_trial
    from autotune.trial.spec import TrialSpec

    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    root = Path(sweep_dir or Path.cwd()) / "confirm"

    def run_one(params: dict[str, Any], label: str) -> RunResult:
        job = base.copy()
        with open_dict(job):
            job.params = dict(params)
            job.study.baseline_trial = False
        cand = by_label.get(label)
        # A run interrupted earlier left its files here: none may pass for this run's.
        shutil.rmtree(root / label, ignore_errors=True)
        spec = TrialSpec(
            cfg=job,
            params=normalize(dict(params), job.runtime.flags, job.runtime.aliases),
            name=label,
            study=info.name,
            workdir=root / label,
            index=-1,
            role=ROLE_CONFIRM,
            tags={CONFIRMS: cand.confirms if cand else "", SLOT: label},
        )
        recorder = TrialRecorder(info, Path(sweep_dir or root), str(job.tracking.experiment))
        progress = TrialProgress(-1, None, spec.params, info.simulated, label=label)
        value = run_trial(spec, [recorder, progress]).value
        run = finished_runs(client, info.experiment_id, info.parent_run_id).get(label)
        if run is not None:
            return run
        ok = isinstance(value, int | float) and math.isfinite(value)
        return RunResult(float(value) if ok else None, ok)

    return run_one


def finished_runs(client: Any, experiment_id: str, parent_run_id: str) -> dict[str, RunResult]:
    """The study's finished confirmation runs by label (a failed one counts as done)."""
    from autotune import tracking

    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{tracking.PARENT}` = '{parent_run_id}' and tags.`{tracking.ROLE}` = "
            f"'{ROLE_CONFIRM}' and attributes.status != 'RUNNING'"
        ),
        max_results=1000,
    )
    out = {}
    for r in runs:
        label = r.data.tags.get(SLOT)
        if not label or r.info.status == "KILLED":
            continue  # an interrupted run is run again
        ok = r.data.tags.get(tracking.STATUS) == "ok" and "objective" in r.data.metrics
        out[label] = RunResult(
            r.data.metrics["objective"] if ok else None,
            ok and r.data.tags.get("autotune.feasible", "true") == "true",
            r.info.run_id,
        )
    return out


def _record(client: Any, parent: str, v: Verdict, candidates, defaults) -> None:
    """The verdict on the sweep run: tags, ``confirm.*`` metrics, the per-config table."""
    import time

    from mlflow.entities import Metric, RunTag

    keys = {c.key: c for c in [*candidates, defaults]}
    win = keys.get(v.winner) if v.winner else None
    chosen = defaults.confirms if v.verdict != BETTER and defaults.confirms else None
    chosen = chosen or (win.confirms if win is not None else "")
    now = int(time.time() * 1000)
    client.log_batch(
        parent,
        metrics=[Metric(k, val, now, 0) for k, val in v.metrics().items()],
        tags=[RunTag(VERDICT, v.verdict), RunTag(VERDICT_LINE, v.line[:5000])]
        + ([RunTag(CONFIRMED, chosen)] if chosen else []),
    )
    client.log_dict(parent, summary_table(v, keys), "confirmation.json")


def summary_table(v: Verdict, keys: dict[str, Candidate]) -> dict[str, Any]:
    """The confirmation's numbers as data (``confirmation.json`` on the sweep run)."""

    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "verdict": v.verdict,
        "line": v.line,
        "winner": v.winner,
        "runner_up": v.runner_up,
        "repeats": v.repeats,
        "noise_cv": num(v.noise_cv),
        "gain": None
        if v.gain is None
        else [num(x) for x in (v.gain.value, v.gain.low, v.gain.high)],
        "configurations": [
            {
                "key": k,
                "confirms": keys[k].confirms if k in keys else "",
                "flags": keys[k].params if k in keys else {},
                "n": s.n,
                "mean": s.mean,
                "sd": num(s.sd),
                "ci": [num(s.ci_low), num(s.ci_high)],
            }
            for k, s in v.summaries.items()
        ],
    }


def confirm_and_report(cfg: DictConfig, info: Any, client: Any, sweep_dir: Path | None) -> None:
    """The study's end, before the export: confirm, record, print the verdict line.

    Never raises (except on Ctrl-C): the search's results stay whatever happens here.
    """
    from autotune.tracking.progress import results

    try:
        verdict = confirm_study(cfg, info, client, sweep_dir)
    except Exception:
        log.exception("the confirmation stage failed; the export is the search's best trial")
        return
    if verdict is None:
        return
    color = {"better": "green", "no_baseline": "yellow"}.get(verdict.verdict, "yellow")
    sim = " [magenta](SIMULATED)[/]" if info.simulated else ""
    results.print(f"[bold {color}]Verdict[/]{sim}: ", end="", highlight=False)
    results.print(verdict.line, highlight=False, markup=False)
