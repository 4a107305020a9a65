"""Check a whole study before the first trial: every error names the key and the fix.

Hydra's structured configs already reject unknown keys and wrong types at
composition. This module checks what the schema cannot: engine flags (including
every value a sweep will try), workload strings, objective and SLO metric names,
the simulator profile, and local paths.

    errors = validate_study(cfg)          # [] when the study can start
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autotune.benchmark.derived import DERIVED_METRIC_NAMES, gpu_price
from autotune.benchmark.parse import METRIC_NAMES
from autotune.benchmark.workload_checks import check_workload
from autotune.objective import ACROSS_LEVELS
from autotune.params import ParamError, canonical_name, coerce, suggest

# objective=capacity's metrics (autotune.benchmark.capacity), objective terms only.
CAPACITY_METRICS = [
    "capacity_concurrency",
    "capacity_concurrency_per_gpu",
    "capacity_output_throughput_tok_s",
    "capacity_requests_per_s",
]
# Metrics the parser reports (un-prefixed, pooled across levels; also as c<N>.<name>),
# and those derived from them with the trial's GPUs, price and per-request bounds.
KNOWN_METRICS = [*METRIC_NAMES, *DERIVED_METRIC_NAMES]


class StudyConfigError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def sweep_values(cfg: DictConfig) -> Iterator[tuple[str, list[Any], tuple[Any, Any] | None]]:
    """(key, discrete values, interval bounds) of every override a sweep will apply.

    Covers the command line (``hydra.overrides.task``) and the sweeper's search space
    (``hydra.sweeper.params``), in the grammar both Hydra sweepers share.
    """
    hydra = cfg.get("hydra")
    if hydra is None:
        return
    # The sweeper's space first, then the command line: as in Hydra's basic sweeper,
    # a command-line list for the same key replaces the configured one.
    # Read unresolved: an override such as `x=${oc.env:Y}` is text here, not a lookup
    # (a broken interpolation is reported by _check_interpolations, naming its key).
    sweep_params = _raw(cfg, "hydra.sweeper.params") or {}
    strings = [f"{k}={v}" for k, v in dict(sweep_params).items() if v is not None]
    strings += list(_raw(cfg, "hydra.overrides.task") or [])
    parser = OverridesParser.create()
    for s in strings:
        try:
            ov = parser.parse_override(s)
        except Exception:
            continue  # Hydra itself reports syntax errors
        key = ov.key_or_group
        value = ov.value()
        if isinstance(value, IntervalSweep):
            yield key, [], (value.start, value.end)
        elif isinstance(value, ChoiceSweep | RangeSweep):
            yield key, list(ov.sweep_iterator()), None
        else:
            yield key, [value], None


def _raw(cfg: DictConfig, key: str) -> Any:
    """The plain value at ``key`` without resolving interpolations (None if absent)."""
    node = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if node is None:
        return None
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=False)
    return node


_SPEC_KEYS = {"type", "choices", "min", "max", "help"}
_SPEC_TYPES = {"int", "float", "str", "bool"}


def _check_flag_table(cfg: DictConfig, errors: list[str]) -> None:
    for name, spec in dict(cfg.runtime.flags).items():
        spec = spec or {}
        extra = set(spec) - _SPEC_KEYS
        if extra:
            errors.append(
                f"runtime.flags.{name}: unknown key(s) {sorted(extra)}; a flag takes "
                f"{sorted(_SPEC_KEYS)}."
            )
        if spec.get("type", "str") not in _SPEC_TYPES:
            errors.append(
                f"runtime.flags.{name}.type={spec.get('type')!r}: use one of {sorted(_SPEC_TYPES)}."
            )
    for alias, native in dict(cfg.runtime.aliases).items():
        if native not in cfg.runtime.flags:
            errors.append(f"runtime.aliases.{alias}: {native!r} is not in runtime.flags.")


def _check_params(cfg: DictConfig, errors: list[str]) -> None:
    flags, aliases = cfg.runtime.flags, cfg.runtime.aliases
    seen: set[str] = set()
    given_as: dict[str, str] = {}  # native flag -> the key that set it (set values)

    def check(name: str, values: list[Any], bounds: tuple[Any, Any] | None) -> None:
        try:
            native = canonical_name(name, flags, aliases)
        except ParamError as e:
            if name not in seen:
                errors.append(str(e))
                seen.add(name)
            return
        other = given_as.setdefault(native, name)
        if other != name and values != [None]:
            # e.g. params.mem-fraction-static=0.7,0.8 while the default grid sweeps
            # params.mem: every trial would set the flag twice and fail at start.
            errors.append(
                f"params.{name} and params.{other} both set {native}: keep one (a "
                f"command-line list replaces the default grid's only under the same key)."
            )
        for v in [*values, *(bounds or ())]:
            if v is None:
                continue
            try:
                coerce(name, v, flags[native])
            except ParamError as e:
                errors.append(str(e))

    for name, value in dict(cfg.params).items():
        check(name, [value], None)
    for key, values, bounds in sweep_values(cfg):
        key = key.lstrip("+~")
        if key.startswith("params."):
            check(key[len("params.") :], values, bounds)


def _check_benchmark(cfg: DictConfig, errors: list[str]) -> None:
    b = cfg.benchmark
    if not b.scenarios:
        errors.append("benchmark.scenarios is empty: give at least one, e.g. ['D(1024,256)'].")
    errors.extend(check_workload(b))  # scenarios, dataset, shared prefix
    if not b.concurrency:
        errors.append("benchmark.concurrency is empty: give at least one level, e.g. [8, 32].")
    for c in b.concurrency:
        if int(c) < 1:
            errors.append(f"benchmark.concurrency: {c} is not a level; use integers >= 1.")
    if b.max_requests_per_run < 1:
        errors.append("benchmark.max_requests_per_run must be >= 1.")
    if b.max_time_per_run_min < 1:
        errors.append("benchmark.max_time_per_run_min must be >= 1 (genai-bench counts minutes).")
    if b.timeout_s <= 0:
        errors.append("benchmark.timeout_s must be > 0.")
    if b.warmup_requests is not None and b.warmup_requests < 0:
        errors.append(
            "benchmark.warmup_requests must be >= 0 (0: no warm-up; null: one request per user of the highest level)."
        )


def _check_metric(key: str, name: str, errors: list[str]) -> None:
    if name not in KNOWN_METRICS:
        hint = suggest(name, KNOWN_METRICS)
        errors.append(
            f"{key}: unknown metric {name!r}."
            + (f" Did you mean: {', '.join(hint)}?" if hint else "")
            + f" Known: {', '.join(KNOWN_METRICS)}."
        )


def _check_derived(cfg: DictConfig, errors: list[str]) -> None:
    """Goodput bounds are positive; an objective or SLO on cost_usd_per_mtok needs a
    GPU price before anything runs."""
    o = cfg.objective
    for key, bound in dict(o.get("request_slo") or {}).items():
        if bound is not None and float(bound) <= 0:
            errors.append(f"objective.request_slo.{key}={bound}: a bound must be > 0 ms.")
    if "cost_usd_per_mtok" not in [t.metric for t in o.terms] + list(o.slo):
        return
    price, why = gpu_price(cfg)
    if price is None:
        errors.append(f"objective: cost_usd_per_mtok needs a GPU price; {why}.")
    elif price <= 0:
        errors.append(f"{why}={price}: a GPU price must be > 0 (USD per GPU-hour).")


def _check_objective(cfg: DictConfig, errors: list[str]) -> None:
    o = cfg.objective
    if not o.terms:
        errors.append("objective.terms is empty: name at least one metric to optimize.")
    for i, t in enumerate(o.terms):
        if t.metric not in CAPACITY_METRICS:
            _check_metric(f"objective.terms[{i}].metric", t.metric, errors)
        if t.direction not in ("maximize", "minimize"):
            errors.append(
                f"objective.terms[{i}].direction={t.direction!r}: use maximize or minimize."
            )
    for name in o.slo:
        _check_metric(f"objective.slo.{name}", name, errors)
    if o.across_levels not in ACROSS_LEVELS:
        errors.append(
            f"objective.across_levels={o.across_levels!r}: use one of {list(ACROSS_LEVELS)}."
        )
    _check_derived(cfg, errors)
    levels = [int(c) for c in cfg.benchmark.concurrency]
    for key in ("concurrency", "slo_concurrency"):
        level = o.get(key)
        if level is not None and int(level) not in levels:
            errors.append(
                f"objective.{key}={level} is not a benchmark level {levels}: "
                f"add it to benchmark.concurrency or pick one of those."
            )


def _check_gpus(cfg: DictConfig, errors: list[str]) -> None:
    pool = cfg.deploy.get("gpus")
    if pool is None or not cfg.runtime.gpu_flag:
        return
    for v in _all_values(cfg, cfg.runtime.gpu_flag):
        try:
            n = int(v)
        except (TypeError, ValueError):
            continue
        if n > len(pool):
            errors.append(
                f"params.{cfg.runtime.gpu_flag}={n} needs {n} GPUs but deploy.gpus={list(pool)} "
                f"has {len(pool)}: list more GPUs or drop that value."
            )


def _check_deploy(cfg: DictConfig, errors: list[str]) -> None:
    _check_gpus(cfg, errors)
    d = cfg.deploy
    if d.get("host") and d.get("port") == 8443:
        errors.append("deploy.port=8443 is reserved on users' machines: pick another port.")
    if d.get("simulated"):
        # A dry run shows what a real target would launch instead (study.dry_run).
        if cfg.runtime.name != "sglang" and not cfg.get("dry_run"):
            errors.append(
                f"deploy={d.name} simulates SGLang only, but runtime={cfg.runtime.name}: use "
                f"runtime=sglang, or a real deploy target (local, docker, ome)."
            )
        if not cfg.model.sim_profile:
            errors.append(
                f"model.sim_profile is not set for model {cfg.model.name}: deploy={d.name} needs "
                f"one (python -m autotune.sim predict --help lists them)."
            )
        else:
            _check_sim_profile(cfg, errors)
        _check_sim_version(cfg, errors)
    elif not cfg.dry_run:  # a dry run benchmarks nothing, so needs no tokenizer
        tok = cfg.model.tokenizer or cfg.model.path
        if not Path(str(tok)).expanduser().is_dir():
            errors.append(
                f"model.tokenizer: genai-bench needs a local tokenizer directory, and "
                f"{tok!r} is not one. Set model.tokenizer=/path/to/tokenizer (a HF model "
                f"directory works)."
            )


def _check_sim_version(cfg: DictConfig, errors: list[str]) -> None:
    """The SGLang version the simulator imitates must be one whose defaults it knows."""
    from autotune.sim.versions import sglang_defaults, version_from_image_tag

    explicit = cfg.deploy.get("sglang_version")
    version = explicit or version_from_image_tag(cfg.runtime.get("image_tag"))
    try:
        sglang_defaults(version)
    except ValueError as e:
        key = "deploy.sglang_version" if explicit else "runtime.image_tag"
        errors.append(
            f"{key}: {e}. Set deploy.sglang_version to a release it simulates (e.g. 0.5.5.post3)."
        )


def _check_sim_profile(cfg: DictConfig, errors: list[str]) -> None:
    from autotune.sim.perf import available_profiles

    available = available_profiles()
    tps = {1}
    with contextlib.suppress(TypeError, ValueError):
        tps = {int(v) for v in _all_values(cfg, cfg.runtime.gpu_flag) if v is not None} or {1}
    for tp in sorted(tps):
        key = (cfg.model.sim_profile, cfg.deploy.gpu, cfg.model.dtype, tp)
        if key not in available:
            models = sorted({a[0] for a in available})
            gpus = sorted({a[1] for a in available})
            errors.append(
                f"the simulator has no profile for model.sim_profile={key[0]} "
                f"deploy.gpu={key[1]} model.dtype={key[2]} tp-size={tp}. Profiles: models "
                f"{models}, GPUs {gpus}, dtypes bf16/fp8, tp 1/2/4/8."
            )


def _all_values(cfg: DictConfig, flag: str | None) -> list[Any]:
    """Every value the study will give ``flag`` (config + sweep)."""
    if not flag:
        return []
    names = {flag} | {a for a, n in cfg.runtime.aliases.items() if n == flag}
    values = [v for k, v in dict(cfg.params).items() if k in names]
    for key, vals, bounds in sweep_values(cfg):
        key = key.lstrip("+~")
        if key.startswith("params.") and key[len("params.") :] in names:
            values += vals + list(bounds or ())
    return values or [1]  # unset: the engine's default of one GPU


def _check_export(cfg: DictConfig, errors: list[str]) -> None:
    pick = OmegaConf.select(cfg, "export.pick", default=None)
    if pick is None:
        return
    how, _, metric = str(pick).partition(":")
    if how not in ("max", "min") or not metric:
        errors.append(f"export.pick={pick!r}: use max:<metric> or min:<metric>.")
    else:
        _check_metric("export.pick", metric, errors)


def _check_search(cfg: DictConfig, errors: list[str]) -> None:
    confirm = cfg.search.confirm
    if confirm.enabled and confirm.repeats < 2:
        errors.append(
            f"search.confirm.repeats={confirm.repeats}: one run has no spread, so no interval; "
            "use 2 or more (3 is the default), or search.confirm.enabled=false."
        )
    if confirm.enabled and confirm.top_k < 1:
        errors.append(f"search.confirm.top_k={confirm.top_k}: confirm at least 1 configuration.")
    sampler = str(OmegaConf.select(cfg, "hydra.sweeper.sampler._target_", default="") or "")
    if sampler.endswith("GPSampler"):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            errors.append(
                "search=gp: Optuna's GPSampler needs PyTorch, which is not installed: "
                "pip install -e '.[gp]' (a CPU build is enough), or use search=tpe."
            )


def _check_search_space(cfg: DictConfig, errors: list[str]) -> None:
    """A model-based search needs flags to search; a sweep list needs values."""
    for key, values, bounds in sweep_values(cfg):
        if bounds is None and not values:
            errors.append(
                f"{key.lstrip('+~')}: the sweep has no values (an empty list or range): "
                f"give at least one, e.g. {key.lstrip('+~')}=a,b or range(start,stop,step) "
                f"with start < stop."
            )
    target = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    if "optuna" not in target.lower():
        return
    name = OmegaConf.select(cfg, "hydra.runtime.choices.search", default=None) or "<search>"
    searched = [k for k, _, _ in sweep_values(cfg) if k.lstrip("+~").startswith("params.")]
    if not searched:
        errors.append(
            f"search={name}: the search space is empty (hydra.sweeper.params names no "
            f"params.* flag), so every trial would run the same configuration. Use a "
            f"space (the reference one is conf/search/space/sglang.yaml; a study of your "
            f"own can put one in its search/ config), or search=none to run one "
            f"configuration."
        )
    if int(cfg.search.n_trials) < 1:
        errors.append(f"search.n_trials={cfg.search.n_trials}: give a budget >= 1.")


def _check_interpolations(cfg: DictConfig, errors: list[str]) -> None:
    """Every ``${...}`` of the study config resolves; a broken one is named by its key."""

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, str) and "${" in value:
            try:
                OmegaConf.select(cfg, path, throw_on_resolution_failure=True)
            except OmegaConfBaseException as e:
                cause = str(e).splitlines()[0] if str(e) else type(e).__name__
                errors.append(
                    f"{path}={value}: this interpolation does not resolve ({cause}). Refer "
                    f"to an existing key by its full path (e.g. ${{model.name}}), set the "
                    f"environment variable an ${{oc.env:NAME}} reads, or write a literal "
                    f"$ as \\${{...}}."
                )

    for key in cfg:
        if key != "hydra":
            walk(_raw(cfg, str(key)), str(key))


def validate_study(cfg: DictConfig) -> list[str]:
    """All problems that would stop the study, as user-facing messages (each once)."""
    errors: list[str] = []
    _check_interpolations(cfg, errors)
    if errors:  # every check below reads the config, which would raise
        return errors
    _check_flag_table(cfg, errors)
    if errors:
        return errors
    _check_params(cfg, errors)
    _check_benchmark(cfg, errors)
    _check_objective(cfg, errors)
    _check_deploy(cfg, errors)
    _check_export(cfg, errors)
    _check_search(cfg, errors)
    _check_search_space(cfg, errors)
    _check_levels(cfg, errors)
    return list(dict.fromkeys(errors))


def _check_levels(cfg: DictConfig, errors: list[str]) -> None:
    """Early abort, pruners and the capacity ladder (autotune.benchmark.levels)."""
    from autotune.trial.pruning import PRUNERS

    b, o = cfg.benchmark, cfg.objective
    if not 0 <= float(b.get("abort_margin", 0.1)) < 1:
        errors.append(
            f"benchmark.abort_margin={b.abort_margin}: a relative margin in [0, 1), e.g. 0.1 "
            "(a latency 10 % over its SLO at a lower level aborts)."
        )
    pruner = str(cfg.search.get("pruner", "none"))
    if pruner not in PRUNERS:
        errors.append(f"search.pruner={pruner!r}: use one of {', '.join(PRUNERS)}.")
    sweeper = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    if pruner != "none" and sweeper and "Optuna" not in sweeper:
        errors.append(
            f"search.pruner={pruner} needs an Optuna search (search=tpe, random, ...): "
            "the grid runs every configuration whatever the pruner says."
        )
    capacity = [t.metric for t in o.terms if t.metric in CAPACITY_METRICS]
    if not capacity:
        if o.get("ladder"):
            errors.append("objective.ladder is only read by objective=capacity: remove it.")
        return
    if not o.slo:
        errors.append(
            "objective=capacity needs SLOs to find the highest level meeting them: set "
            "objective.slo (e.g. objective.slo.ttft_p99_ms=2000)."
        )
    ladder = [int(c) for c in (o.get("ladder") or b.concurrency)]
    if len(ladder) < 2 or min(ladder) < 1 or len(set(ladder)) != len(ladder):
        errors.append(
            f"objective.ladder={ladder}: the capacity ladder needs >= 2 distinct levels "
            ">= 1, e.g. [4, 8, 16, 32, 64, 128, 256]."
        )
    if o.concurrency is not None or o.slo_concurrency is not None:
        errors.append(
            "objective=capacity reads every level itself: set objective.concurrency and "
            "objective.slo_concurrency to null."
        )
    if ladder and b.max_requests_per_run < 2 * max(ladder):
        errors.append(
            f"objective=capacity: benchmark.max_requests_per_run={b.max_requests_per_run} "
            f"gives the {max(ladder)} users of the top ladder level fewer than 2 requests "
            f"each; set it to {2 * max(ladder)} or more, or lower objective.ladder."
        )


# Config groups a user picks on the command line (model=..., deploy=...).
CONFIG_GROUPS = ("model", "runtime", "deploy", "benchmark", "objective", "search")
_DIR_OPTIONS = ("--config-dir", "-cd")


def check_group_choices(argv: list[str], conf_dir: Path) -> list[str]:
    """Unknown config-group choices on the command line (``model=foo``), with the choices.

    Runs before Hydra composes (whose own error lists schema entries and search paths
    too). Directories given with ``--config-dir`` count; when the search path holds
    anything this cannot list (``hydra.searchpath``, ``--config-path``), Hydra decides.
    """
    dirs, overrides, i = [Path(conf_dir), *_plugin_config_dirs()], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in _DIR_OPTIONS and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
            i += 2
            continue
        if arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
        elif arg in ("--config-path", "-cp") or arg.startswith("--config-path="):
            return []
        elif not arg.startswith("-"):
            if arg.split("=", 1)[0].lstrip("+~").startswith("hydra.searchpath"):
                return []
            overrides.append(arg)
        i += 1
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return []  # Hydra reports syntax errors itself
    errors = []
    for ov in parsed:
        group = ov.key_or_group
        if group not in CONFIG_GROUPS or ov.package or ov.is_delete():
            continue
        value = ov.value()
        values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [value]
        known = sorted(
            {p.stem for d in dirs for p in (d / group).glob("*.yaml")}
            | {n.removesuffix(".yaml") for n in _config_store_names(group)}
        )
        for v in values:
            if isinstance(v, str) and v not in known:
                choices = [k for k in known if not k.endswith("_schema")]
                hint = suggest(v, choices)
                errors.append(
                    f"{group}={v}: there is no {group} config {v!r}."
                    + (f" Did you mean: {', '.join(hint)}?" if hint else "")
                    + f" Available: {', '.join(choices)}. A new one is a file "
                    f"{group}/{v}.yaml in conf/ or in a directory passed with --config-dir."
                )
    return errors


def _plugin_config_dirs() -> list[Path]:
    """Config directories of deploy targets other packages add (autotune.deploy.plugins)."""
    from importlib.resources import files

    from autotune.deploy.plugins import config_packages

    out = []
    for package in config_packages():
        try:
            out.append(Path(str(files(package))))
        except (ModuleNotFoundError, TypeError):
            continue
    return out


def _config_store_names(group: str) -> list[str]:
    from hydra.core.config_store import ConfigStore

    try:
        return list(ConfigStore.instance().list(group))
    except Exception:
        return []
