"""Search efficiency: how close each strategy gets to the grid optimum in few trials.

The study is ``examples/sglang-slo-search`` (SGLang on the simulator with the virtual
clock, ``benchmark=stress``, ``objective=throughput_ttft_slo``, the reference SGLang
search space). Every configuration of the search space is evaluated once, exactly
by the trial executor itself (autotune.trial.executor.run_trial), which
gives the true optimum. Each strategy (Optuna sampler, configured from
``conf/search/<strategy>.yaml``) then runs with several seeds against that table and
is scored by the best feasible objective it found within a budget, as a fraction of
the optimum. Looking results up is legitimate because the simulator is
deterministic: a configuration scores the same every time it is run.

    python benchmarks/search_efficiency.py --json
    python benchmarks/search_efficiency.py --strategies tpe random --budgets 0.05 0.1
    python benchmarks/search_efficiency.py --override objective.slo.ttft_p99_ms=28000
    python benchmarks/search_efficiency.py --strategies tpe --sampler multivariate=false

``--json`` prints one JSON object per line, each with ``strategy``,
``budget_fraction`` (trials / grid size), ``seeds`` and
``median_fraction_of_optimum``: first the exhaustive grid (with the landscape),
then the engine defaults (the baseline trial), then every strategy × budget.
Results are in docs/search.md.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import optuna  # noqa: E402
import yaml  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.utils import execution_whitelist, instantiate  # noqa: E402
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from optuna.distributions import (  # noqa: E402
    BaseDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from autotune.config import register_configs  # noqa: E402
from autotune.params import normalize  # noqa: E402
from autotune.study.prescreen import grid_keys, grid_values, trial_params  # noqa: E402
from autotune.trial.executor import run_trial  # noqa: E402
from autotune.trial.spec import TrialSpec  # noqa: E402

log = logging.getLogger("search_efficiency")

STUDY_OVERRIDES = [
    "+experiment=sglang-slo-search",
    # Exact scores: the strategies are compared on one deterministic landscape.
    "deploy.noise=0",
]
STRATEGIES = ["tpe", "random", "qmc", "optuna_grid", "gp"]
BUDGETS = [0.025, 0.05, 0.1, 0.2]
# Sources whose change changes a configuration's score (the cache key includes them).
_SCORING_SOURCES = (
    "autotune/sim",
    "autotune/benchmark",
    "autotune/objective.py",
    "autotune/trial",
    "launchers/sim.py",
)

Space = dict[str, BaseDistribution]
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Outcome:
    """One configuration as the tuner scores it; ``value`` None = a FAIL trial."""

    value: float | None
    feasible: bool = False
    throughput: float | None = None
    ttft_p99_ms: float | None = None
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.value is None


# --------------------------------------------------------------------- the study


def compose_study(
    strategy: str, overrides: Sequence[str] = (), study: Sequence[str] = STUDY_OVERRIDES
) -> DictConfig:
    """The config of ``python -m autotune <study> <overrides> search=<strategy>``."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf")):
            return compose(
                "config",
                overrides=[*study, *overrides, f"search={strategy}"],
                return_hydra_config=True,
            )
    finally:
        GlobalHydra.instance().clear()


def search_space(cfg: DictConfig) -> tuple[Space, dict[str, Any]]:
    """The Optuna distributions and fixed params, parsed as the Optuna sweeper does."""
    lines = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    space, fixed, _ = create_params_from_overrides(lines)
    return space, fixed


# --------------------------------------------------------------------- scoring


def evaluate(cfg: DictConfig, params: Mapping[str, Any], workdir: Path) -> Outcome:
    """Score one set of flags with the trial executor itself (no tracking, no terminal).

    Any failure (start-up OOM, no results, no objective metric) is a FAIL trial.
    """
    if cfg.deploy.get("clock") != "virtual":
        raise SystemExit("the benchmark needs deploy=sim deploy.clock=virtual")
    try:
        flags = normalize(dict(params), cfg.runtime.flags, cfg.runtime.aliases)
    except Exception as e:  # a value the flag table refuses: the trial fails the same way
        return Outcome(None, error=f"{type(e).__name__}: {e}".splitlines()[0])
    spec = TrialSpec(cfg, flags, name="search-efficiency", study="search-efficiency",
                     workdir=workdir)  # fmt: skip
    result = run_trial(spec)
    if result.score is None:
        return Outcome(None, error=result.message.splitlines()[0] if result.message else "")
    return Outcome(
        value=float(result.score.values[0]),
        feasible=result.score.feasible,
        throughput=result.score.raw[0],
        ttft_p99_ms=_worst(result.metrics, "ttft_p99_ms"),
    )


def _worst(metrics: Mapping[str, float], name: str) -> float | None:
    vals = [v for k, v in metrics.items() if k == name or k.endswith(f".{name}")]
    return max(vals) if vals else None


def evaluate_grid(
    cfg: DictConfig, space: Space, fixed: Mapping[str, Any], keys: Iterable[Key]
) -> dict[Key, Outcome]:
    """Evaluate every grid point once (each in a scratch directory)."""
    table: dict[Key, Outcome] = {}
    keys = list(keys)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        for i, key in enumerate(keys):
            table[key] = evaluate(cfg, trial_params(space, fixed, key), Path(tmp) / str(i))
            if (i + 1) % 48 == 0:
                log.info("grid: %d/%d evaluated (%.0f s)", i + 1, len(keys), time.monotonic() - t0)
    return table


def fingerprint(cfg: DictConfig, space: Space, fixed: Mapping[str, Any]) -> str:
    """What a grid table depends on: the study's config and the scoring code."""
    study = {
        k: OmegaConf.to_container(cfg[k], resolve=True)
        for k in ("model", "runtime", "deploy", "benchmark", "objective")
    }
    h = hashlib.sha1(json.dumps(study, sort_keys=True, default=str).encode())
    h.update(repr(sorted((k, repr(v)) for k, v in space.items())).encode())
    h.update(repr(sorted(fixed.items())).encode())
    for src in _SCORING_SOURCES:
        path = ROOT / src
        for f in sorted(path.rglob("*") if path.is_dir() else [path]):
            if f.is_file() and f.suffix in (".py", ".json"):
                h.update(f.read_bytes())
    return h.hexdigest()


def load_or_evaluate(
    cfg: DictConfig, space: Space, fixed: Mapping[str, Any], cache: Path | None
) -> dict[Key, Outcome]:
    """The grid table, from ``cache`` when it was made for this study and code."""
    fp = fingerprint(cfg, space, fixed)
    if cache is not None and cache.exists():
        data = json.loads(cache.read_text())
        if data.get("fingerprint") == fp:
            log.info("grid: read from %s", cache)
            return {tuple(row["key"]): Outcome(**row["outcome"]) for row in data["rows"]}
        log.info("grid: %s is stale (other study or scoring code): re-evaluating", cache)
    table = evaluate_grid(cfg, space, fixed, grid_keys(space))
    if cache is not None:
        rows = [{"key": list(k), "outcome": asdict(o)} for k, o in table.items()]
        cache.write_text(json.dumps({"fingerprint": fp, "rows": rows}))
    return table


# --------------------------------------------------------------------- strategies


def make_sampler(
    cfg: DictConfig, seed: int, space: Space, settings: Mapping[str, Any] | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler of ``hydra.sweeper.sampler`` with ``seed``, as the sweeper builds it.

    ``settings`` replace keys of the sampler node (to try settings without editing YAML).
    """
    node = OmegaConf.to_container(cfg.hydra.sweeper.sampler, resolve=False)
    node.update(settings or {})
    node["seed"] = seed  # the YAML interpolates ${search.seed}
    sampler = instantiate(node, _execution_whitelist_=execution_whitelist(["optuna.*"]))
    if isinstance(sampler, functools.partial):  # GridSampler takes the space
        sampler = sampler({name: grid_values(d) for name, d in space.items()})
    return sampler


def run_strategy(
    sampler: optuna.samplers.BaseSampler,
    space: Space,
    table: Mapping[Key, Outcome],
    n_trials: int,
    direction: str = "maximize",
) -> list[Key]:
    """Ask/tell ``n_trials`` like the Optuna sweeper; return the keys in trial order.

    Params are suggested in the space's order (as the sweeper does); a failed
    configuration is told as a FAIL trial, every other one with its objective value
    (the penalty when infeasible). A repeated proposal costs a trial, as in a study.
    """
    study = optuna.create_study(sampler=sampler, direction=direction)
    keys = []
    for _ in range(n_trials):
        trial = study.ask(fixed_distributions=space)
        key = tuple(trial.params[name] for name in space)
        outcome = table[key]
        if outcome.failed:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, outcome.value)
        keys.append(key)
    return keys


def best_feasible(keys: Sequence[Key], table: Mapping[Key, Outcome]) -> float | None:
    vals = [table[k].value for k in keys if table[k].feasible]
    return max(vals) if vals else None


def summarize(
    strategy: str,
    runs: Sequence[Sequence[Key]],
    table: Mapping[Key, Outcome],
    optimum: float,
    n_trials: int,
    defaults: float | None = None,
) -> dict[str, Any]:
    """One JSON record: a strategy at one budget, over its seeds.

    ``defaults`` is the baseline trial's feasible value: a study reports the best of
    the baseline and its search (``median_fraction_with_defaults``).
    """
    bests = [best_feasible(r[:n_trials], table) or 0.0 for r in runs]
    fractions = sorted(b / optimum for b in bests)
    with_defaults = [max(b, defaults or 0.0) / optimum for b in bests]
    distinct = [len(set(r[:n_trials])) for r in runs]
    return {
        "strategy": strategy,
        "budget_fraction": round(n_trials / len(table), 4),
        "trials": n_trials,
        "seeds": len(runs),
        "median_fraction_of_optimum": round(statistics.median(fractions), 4),
        "min_fraction_of_optimum": round(fractions[0], 4),
        "mean_fraction_of_optimum": round(statistics.fmean(fractions), 4),
        "share_of_seeds_at_97pct": round(sum(f >= 0.97 for f in fractions) / len(runs), 2),
        "share_of_seeds_at_optimum": round(sum(f >= 1.0 for f in fractions) / len(runs), 2),
        "median_distinct_configs": statistics.median(distinct),
        "median_fraction_with_defaults": round(statistics.median(with_defaults), 4),
    }


# --------------------------------------------------------------------- report


def landscape(table: Mapping[Key, Outcome], space: Space, baseline: Outcome) -> dict[str, Any]:
    """The exhaustive grid as one record: optimum, spread, infeasible and failed."""
    feasible = sorted((o.value for o in table.values() if o.feasible), reverse=True)
    if not feasible:
        raise SystemExit("no configuration of the grid is feasible: loosen the SLO")
    best = feasible[0]
    best_keys = [k for k, o in table.items() if o.feasible and o.value == best]
    return {
        "strategy": "exhaustive_grid",
        "budget_fraction": 1.0,
        "trials": len(table),
        "seeds": 1,
        "median_fraction_of_optimum": 1.0,
        "optimum": round(best, 2),
        "optimum_params": [dict(zip(space, k, strict=True)) for k in best_keys],
        "feasible": len(feasible),
        "infeasible": sum(1 for o in table.values() if not o.failed and not o.feasible),
        "failed": sum(1 for o in table.values() if o.failed),
        "feasible_best": round(best, 2),
        "feasible_median": round(statistics.median(feasible), 2),
        "feasible_worst": round(feasible[-1], 2),
        "within_97pct": sum(1 for v in feasible if v >= 0.97 * best),
        "within_99pct": sum(1 for v in feasible if v >= 0.99 * best),
        "defaults": asdict(baseline),
    }


def defaults_record(baseline: Outcome, optimum: float) -> dict[str, Any]:
    """The engine's defaults (the study's baseline trial) as a reference point."""
    value = baseline.value if baseline.feasible else 0.0
    return {
        "strategy": "defaults",
        "budget_fraction": 0.0,
        "trials": 1,
        "seeds": 1,
        "median_fraction_of_optimum": round(value / optimum, 4),
        "feasible": baseline.feasible,
        "throughput": baseline.throughput,
        "ttft_p99_ms": baseline.ttft_p99_ms,
        "optimum_gain_over_defaults": round(optimum / value - 1, 4) if value else None,
    }


def print_table(records: Sequence[Mapping[str, Any]]) -> None:
    print(
        f"{'strategy':<16}{'budget':>8}{'trials':>8}{'seeds':>7}{'median':>9}{'min':>8}"
        f"{'>=97%':>7}{'optimum':>9}"
    )
    for r in records:
        print(
            f"{r['strategy']:<16}{r['budget_fraction']:>8.3f}{r['trials']:>8}{r['seeds']:>7}"
            f"{r['median_fraction_of_optimum']:>9.4f}"
            f"{r.get('min_fraction_of_optimum', r['median_fraction_of_optimum']):>8.4f}"
            f"{r.get('share_of_seeds_at_97pct', ''):>7}{r.get('share_of_seeds_at_optimum', ''):>9}"
        )


# --------------------------------------------------------------------- main


def available(strategy: str) -> str | None:
    """Why a strategy cannot run here (None if it can)."""
    if strategy == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            return "gp needs PyTorch (pip install -e '.[gp]'); skipped"
    return None


def benchmark(
    strategies: Sequence[str],
    budgets: Sequence[float],
    seeds: int,
    overrides: Sequence[str] = (),
    cache: Path | None = None,
    on_record: Callable[[dict[str, Any]], None] = lambda r: None,
    sampler_settings: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate the grid, run every strategy × seed, return the records."""
    base = compose_study("optuna_grid", overrides)
    space, fixed = search_space(base)
    direction = [str(d) for d in base.hydra.sweeper.direction]
    if len(direction) != 1 or direction[0] != "maximize":
        raise SystemExit("the benchmark supports one maximized objective")
    table = load_or_evaluate(base, space, fixed, cache)
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        baseline = evaluate(base, trial_params({}, fixed, ()), Path(tmp))
    records = [landscape(table, space, baseline)]
    # Unrounded: a rounded optimum above the true one would put no seed "at the optimum".
    optimum = max(o.value for o in table.values() if o.feasible)
    records.append(defaults_record(baseline, optimum))
    for r in records:
        on_record(r)
    trials = sorted({max(1, round(b * len(table))) for b in budgets})
    for strategy in strategies:
        if why := available(strategy):
            log.warning(why)
            continue
        cfg = compose_study(strategy, overrides)
        if search_space(cfg)[0] != space:
            raise SystemExit(f"search={strategy} has another search space than the grid")
        t0 = time.monotonic()
        runs = [
            run_strategy(
                make_sampler(cfg, seed, space, sampler_settings), space, table, max(trials)
            )
            for seed in range(seeds)
        ]
        log.info(
            "%s: %d seeds x %d trials in %.1f s",
            strategy,
            seeds,
            max(trials),
            time.monotonic() - t0,
        )
        for n in trials:
            defaults = baseline.value if baseline.feasible else None
            record = summarize(strategy, runs, table, optimum, n, defaults)
            records.append(record)
            on_record(record)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--strategies",
        nargs="+",
        default=STRATEGIES,
        help=f"conf/search/<name>.yaml samplers (default: {' '.join(STRATEGIES)})",
    )
    p.add_argument(
        "--budgets",
        nargs="+",
        type=float,
        default=BUDGETS,
        help="trials as a fraction of the grid size (default: %(default)s)",
    )
    p.add_argument("--seeds", type=int, default=10, help="seeds per strategy (default: 10)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override of the study (repeatable)",
    )
    p.add_argument(
        "--sampler",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace a key of the strategies' sampler node, e.g. multivariate=true",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JSON file for the grid's evaluations (reused while valid)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or not args.json else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def emit(record: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(record), flush=True)

    settings = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.sampler)}
    records = benchmark(
        args.strategies,
        args.budgets,
        args.seeds,
        args.override,
        args.cache,
        on_record=emit,
        sampler_settings=settings,
    )
    if not args.json:
        print(json.dumps(records[0], indent=1))
        print_table(records[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
