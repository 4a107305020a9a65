"""Hydra's grid and Optuna sweepers, with what a tuning study needs on top.

- A **baseline** trial with the engine's default flags runs first (once per study),
  so every study reports its gain over defaults.
- **Resume**: the Optuna study lives in persistent storage under a stable name
  (:func:`autotune.study.study_name`); re-running the same command runs only the
  remaining budget, and trials a killed run left RUNNING are marked FAIL.
- **Feasibility**: each trial's SLO slack reaches the sampler as Optuna constraints,
  and a configuration that cannot start is an infeasible region, not a FAIL
  (:mod:`autotune.study.constraints`).
- **Pre-screen** (``search.prescreen=sim``): the space is scored on the simulator
  first; the best predictions are enqueued, predicted failures and clear SLO misses
  are answered without a deployment (:mod:`autotune.study.prescreen`).
- Composition checks: autotune validates every swept flag value before the first
  trial, so the grid sweeper re-composes only jobs whose other overrides could
  still be invalid (the stock sweeper composes every job twice).

Select with ``hydra/sweeper: autotune_grid`` or ``autotune_optuna`` (conf/search/).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.autotune_sweepers.compose_cache import with_compose_cache

log = logging.getLogger(__name__)

_VALIDATED_PREFIXES = ("params.", "+params.", "++params.")
_BASELINE_ATTR = "autotune_baseline_done"
_OWNER_ATTR = "autotune_owner"


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def baseline_overrides(space_keys: Sequence[str], fixed: Sequence[str]) -> list[str]:
    """Overrides of the baseline job: every searched flag unset, the rest as given."""
    searched = {k.lstrip("+~") for k in space_keys}
    keep = [o for o in fixed if _key(o).lstrip("+~") not in searched]
    return [
        *keep,
        *(f"{k}=null" for k in sorted(searched) if k.startswith("params.")),
        "study.baseline_trial=true",
    ]


class AutotuneGridSweeper(BasicSweeper):
    """Hydra's basic (grid) sweeper with a baseline job and lighter composition checks."""

    def __init__(
        self, max_batch_size: int | None, params: dict[str, str] | None, baseline: bool = True
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.baseline = baseline

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(
            hydra_context=with_compose_cache(hydra_context),
            task_function=task_function,
            config=config,
        )

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # autotune.study.validation already checked every params.* value of the sweep;
        # compose once per distinct combination of the other overrides.
        seen: set[tuple[str, ...]] = set()
        for overrides in batch:
            rest = tuple(o for o in overrides if not o.startswith(_VALIDATED_PREFIXES))
            if rest not in seen:
                seen.add(rest)
                super().validate_batch_is_legal([list(overrides)])

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(parsed, self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        job_idx = 0
        returns = []
        if self.baseline and self.config.search.baseline:
            job = _baseline_job(parsed)
            if job is not None:
                log.info("baseline trial (engine defaults): %s", " ".join(job))
                returns.append(self.launcher.launch([job], initial_job_idx=job_idx))
                job_idx += 1
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            for r in results:
                _ = r.return_value  # re-raises a job's exception, as the stock sweeper does
            job_idx += len(batch)
            returns.append(results)
        return returns


def _baseline_job(parsed: Sequence[Any]) -> list[str] | None:
    """The baseline job for parsed overrides, or None when nothing is searched."""
    swept = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    if not any(k.lstrip("+~").startswith("params.") for k in swept):
        return None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.input_line]
    return baseline_overrides(swept, fixed)


# How often one slot of a batch asks again after an exact repeat before it runs one
# (a sampler that only proposes repeats has exhausted a small space).
_MAX_REASKS = 20
# How often it asks again after proposals the pre-screen excluded (a space of which
# 95 % is excluded needs many: each is answered without a deployment).
_MAX_EXCLUDED_REASKS = 500


def measured_twin(trial: Any) -> optuna.trial.FrozenTrial | None:
    """The earlier COMPLETE trial of the same study with exactly ``trial``'s params."""
    for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.number != trial.number and t.params == trial.params and t.values is not None:
            return t
    return None


class AutotuneOptunaSweeperImpl(OptunaSweeperImpl):
    def __init__(
        self, *args: Any, baseline: bool = True, stale_after_s: float = 86400.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.baseline = baseline
        self.stale_after_s = stale_after_s

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from autotune.study.team import (
            optuna_storage,
            study_name,
            worker_name,
            worker_sampler,
            worker_seed,
        )

        super().setup(
            hydra_context=with_compose_cache(hydra_context),
            task_function=task_function,
            config=config,
        )
        # One study identity for Optuna and MLflow, stable across re-runs.
        self.study_name = self.study_name or study_name(config)
        self.storage = self.storage or optuna_storage(config, config.hydra.runtime.cwd)
        # A worker of a shared study (search.worker) samples with its own seed.
        self.worker = worker_name(config)
        self.sampler_seed = worker_seed(config.search.seed, self.worker)
        self.sampler = worker_sampler(
            OmegaConf.select(config, "hydra.sweeper.sampler"), self.sampler, self.sampler_seed
        )
        if config.dry_run:
            # A dry run proposes one configuration and must leave no trace in the study
            # (in memory, but one store for the whole sweep: the pre-screen's enqueued
            # configurations reach the stock loop's study).
            self.storage, self.n_trials = optuna.storages.InMemoryStorage(), 1

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        self._process_searchspace_config()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        self._fail_stale(study)
        self._plan = self._prescreen(study, arguments)
        if not isinstance(self.launcher, _AnsweringLauncher):
            self.launcher = _AnsweringLauncher(self.launcher, self)
        from autotune.study.team import baseline_is_mine, finished_trials

        done = finished_trials(study, self.worker)
        remaining = max(0, self.n_trials - done)
        if done:
            log.info(
                "resuming study %s: %d trial(s) done, %d to go", self.study_name, done, remaining
            )
        if (
            self.baseline
            and self.config.search.baseline
            and not study.user_attrs.get(_BASELINE_ATTR)
            and baseline_is_mine(study, self.worker)
        ):
            parsed = OverridesParser.create().parse_overrides(
                [*self._parse_sweeper_params_config(), *arguments]
            )
            job = _baseline_job(parsed)
            if job is not None:
                log.info("baseline trial (engine defaults): %s", " ".join(job))
                self.launcher.launch([job], initial_job_idx=self.job_idx)
                self.job_idx += 1
                study.set_user_attr(_BASELINE_ATTR, True)
        if remaining == 0:
            log.info("study %s already has its %d trials", self.study_name, self.n_trials)
            return None
        self.n_trials = remaining
        try:
            return super().sweep(arguments)
        except ValueError:
            # The stock sweeper reads study.best_trial at the end, which raises when
            # no trial completed (all failed): that is a result, not a crash.
            complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if any(all(v <= 0 for v in t.constraints.values()) for t in complete):
                raise
            if self.config.dry_run:
                return None  # a dry run measures nothing: no trial is expected to complete
            log.warning(
                "no trial of study %s completed within its SLOs: see the failure tags and "
                "slo_slack.* in MLflow",
                self.study_name,
            )
            return None

    def _prescreen(self, study: optuna.Study, arguments: list[str]) -> Any:
        """search.prescreen=sim: score the space on the simulator, enqueue the best
        predictions (once per study), and return the plan (None: no pre-screen)."""
        from autotune.study import prescreen_stage

        assert self.config is not None
        return prescreen_stage.prepare(
            self.config, study, [*self._parse_sweeper_params_config(), *arguments]
        )

    def _configure_trials(self, trials: list[Any], *args: Any, **kwargs: Any) -> Any:
        overrides = list(self._configure_owned(trials, *args, **kwargs))
        # An exact repeat of a measured configuration costs no deployment: it is told
        # the earlier measurement and the sampler is asked again (in place: the stock
        # sweep loop launches and tells the trials of this same list). Repeats are
        # planned in the confirmation stage instead. So does a configuration the
        # pre-screen excluded: it is told its predicted infeasibility. And an enqueued
        # prediction after the engine contradicted one is skipped.
        from autotune.study.prescreen_stage import answer_excluded, answer_stale_enqueued

        plan = getattr(self, "_plan", None)
        for i, trial in enumerate(trials):
            excluded = repeats = 0
            while True:
                if excluded < _MAX_EXCLUDED_REASKS and (
                    answer_excluded(plan, trial) or answer_stale_enqueued(plan, trial)
                ):
                    excluded += 1
                elif repeats < _MAX_REASKS and self._answer_repeat(trial):
                    repeats += 1
                else:
                    break
                trial = trials[i] = trial.study.ask()
                overrides[i] = self._configure_owned([trial], *args, **kwargs)[0]
        # Number the jobs (trial-<N>, sweep subdir) after the Optuna trials: unique in
        # the study even when several workers share it (job 0 is the baseline).
        self.job_idx = trials[0].number + 1
        _register_for_pruning(self.job_idx, trials, self.config)
        self._asked = list(trials)  # told by the stock loop, answered by the launcher
        return overrides

    @staticmethod
    def _answer_repeat(trial: Any) -> bool:
        """An exact repeat of a measured trial is told its measurement (True)."""
        from autotune.study.team import REPEAT_ATTR

        twin = measured_twin(trial)
        if twin is None:
            return False
        log.info(
            "trial %d repeats trial %d exactly: answered from its measurement "
            "(no deployment), asking the sampler again",
            trial.number,
            twin.number,
        )
        trial.set_user_attr(REPEAT_ATTR, twin.number)
        for key, value in twin.constraints.items():
            trial.set_constraint(key, value)
        trial.study.tell(trial, values=twin.values)
        return True

    def _configure_owned(self, trials: list[Any], *args: Any, **kwargs: Any) -> Any:
        # Record who runs each trial, so a later sweep can tell a dead worker's
        # RUNNING trial (fail it) from a live one's (leave it).
        from autotune.owner import owner_id
        from autotune.study.team import SEED_ATTR, WORKER_ATTR

        for trial in trials:
            trial.set_user_attr(_OWNER_ATTR, owner_id())
            if self.worker is not None:
                trial.set_user_attr(WORKER_ATTR, self.worker)
                trial.set_user_attr(SEED_ATTR, self.sampler_seed)
        return super()._configure_trials(trials, *args, **kwargs)

    def _fail_stale(self, study: optuna.Study) -> None:
        """Trials left RUNNING by a killed sweep never finish: mark them FAIL."""
        from autotune.owner import owner_id
        from autotune.study.team import is_stale, reclaim

        me = owner_id()
        reclaimed = []
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if is_stale(t, me, self.worker, self.stale_after_s):
                log.warning(
                    "trial %d was left RUNNING by an earlier sweep: marking it FAIL", t.number
                )
                reclaim(study, t)
                reclaimed.append(t.number)
        if reclaimed:
            self._retag_reclaimed_runs(reclaimed)

    def _retag_reclaimed_runs(self, numbers: list[int]) -> None:
        """A sweep killed between recording a trial and telling Optuna left an ok MLflow
        run for a trial now reclaimed: it is retagged, so both stores count the same."""
        from autotune import tracking
        from autotune.study.team import StudyInfo

        assert self.config is not None
        try:
            info = StudyInfo.read(Path(self.config.hydra.sweep.dir).resolve())
            client = tracking.open_client(info.tracking_uri)
            for number in numbers:
                # Jobs are numbered after the Optuna trials (``job_idx``, set where the
                # trials are asked): trial N is job N + 1, job 0 the baseline.
                for run_id in tracking.mark_reclaimed(
                    client, info.experiment_id, info.parent_run_id, number + 1
                ):
                    log.warning(
                        "trial %d had been recorded (MLflow run %s) but the search never "
                        "heard its result: tagged reclaimed",
                        number,
                        run_id,
                    )
        except Exception:  # bookkeeping must not stop the study
            log.exception("could not retag the MLflow runs of reclaimed trials %s", numbers)


def _register_for_pruning(first_job: int, trials: list[Any], config: Any) -> None:
    """Each job finds its Optuna trial to report levels to (search.pruner)."""
    from autotune.trial import pruning

    pruner = str(OmegaConf.select(config, "search.pruner", default="none"))
    for i, trial in enumerate(trials):
        pruning.register(first_job + i, trial, pruner)


class _AnsweringLauncher:
    """The sweep's launcher, turning each job's Answer into what the stock loop tells:
    constraints set on the trial first (autotune.study.constraints)."""

    def __init__(self, inner: Any, impl: AutotuneOptunaSweeperImpl) -> None:
        self.inner = inner
        self.impl = impl

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        from autotune.study.constraints import answer_trials

        returns = self.inner.launch(job_overrides, initial_job_idx=initial_job_idx)
        trials, self.impl._asked = getattr(self.impl, "_asked", None), None
        if trials is not None:
            answer_trials(trials, returns, self.impl._get_directions())
        return returns

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class AutotuneOptunaSweeper(OptunaSweeper):
    def __init__(
        self, *args: Any, baseline: bool = True, stale_after_s: float = 86400.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        inner = self.sweeper
        self.sweeper = AutotuneOptunaSweeperImpl.__new__(AutotuneOptunaSweeperImpl)
        self.sweeper.__dict__.update(inner.__dict__)
        self.sweeper.baseline = baseline
        self.sweeper.stale_after_s = stale_after_s


@dataclass
class AutotuneGridSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.autotune_sweepers.sweepers.AutotuneGridSweeper"
    baseline: bool = True


@dataclass
class AutotuneOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.autotune_sweepers.sweepers.AutotuneOptunaSweeper"
    baseline: bool = True
    # A RUNNING trial is failed when a sweep starts if its worker (on this host) is
    # gone, or, for workers elsewhere, once it is older than this.
    stale_after_s: float = 86400.0


ConfigStore.instance().store(
    group="hydra/sweeper", name="autotune_grid", node=AutotuneGridSweeperConf, provider="autotune"
)
ConfigStore.instance().store(
    group="hydra/sweeper",
    name="autotune_optuna",
    node=AutotuneOptunaSweeperConf,
    provider="autotune",
)

__all__ = ["AutotuneGridSweeper", "AutotuneOptunaSweeper", "Sweeper"]
