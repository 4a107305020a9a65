"""Structured configs: the schema every YAML file and command-line override is checked against.

Hydra merges ``conf/`` into these dataclasses, so a typo such as
``benchmark.concurency=8`` or a wrong type such as ``benchmark.max_requests_per_run=lots``
fails at composition, before anything is deployed, with a message naming the key.

``params`` is the one open mapping: it holds the launch flags of a trial under the
engine's native names, and is checked against the runtime's flag table by
:mod:`autotune.params` instead (with close matches suggested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# The config groups ship inside the package (the repository's conf/, see pyproject.toml).
CONFIG_MODULE = "autotune.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def config_dir() -> Path:
    """The directory of autotune's own config groups (a checkout's conf/ or the wheel's)."""
    from importlib.resources import files

    return Path(str(files(CONFIG_MODULE)))


@dataclass
class FlagSpec:
    """One engine launch flag: its type and the values it accepts."""

    type: str = "str"  # int | float | str | bool
    choices: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    help: str = ""


@dataclass
class RuntimeConfig:
    """An engine (SGLang, vLLM): how to launch it and how to tell it is healthy."""

    name: str = MISSING
    # argv prefix of the engine's server; the launcher adds model, host, port and flags.
    launch: list[str] = MISSING
    model_arg: str = "--model-path"
    served_name_arg: str | None = "--served-model-name"
    host_arg: str = "--host"
    port_arg: str = "--port"
    # Always passed, before the trial's flags (e.g. --enable-metrics).
    extra_args: list[str] = field(default_factory=list)
    # name -> {type, choices, min, max, help} (see FlagSpec). Left untyped on purpose:
    # typed nodes make every Hydra composition (one per trial) several times slower;
    # autotune.study.validation checks the table instead.
    flags: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    # The flag whose value is the number of GPUs a trial takes.
    gpu_flag: str | None = "tp-size"
    # The flags whose product is the GPUs a deployment occupies (tp × dp × pp), for
    # per-GPU throughput and cost; empty = gpu_flag alone.
    parallel_flags: list[str] = field(default_factory=list)
    health_path: str = "/health"
    ready_log_pattern: str | None = None
    metrics_path: str | None = "/metrics"
    # GET path of the engine's effective settings (SGLang: /get_server_info), kept
    # with each trial as server_info.json; null = the engine has none.
    server_info_path: str | None = None
    # failure class -> regexes searched in the engine log (first match wins, in order).
    failure_patterns: dict[str, list[str]] = field(default_factory=dict)
    # genai-bench --api-backend
    api_backend: str = "openai"
    image: str = ""
    image_tag: str = "latest"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """What is served."""

    name: str = MISSING
    # HF id or local directory handed to the engine.
    path: str = MISSING
    served_name: str | None = None
    # Local tokenizer directory for genai-bench; null = the model path if it is a local
    # directory (the simulator falls back to its own bundled tokenizer).
    tokenizer: str | None = None
    # Simulator profile of this model (see `python -m autotune.sim predict --help`).
    sim_profile: str | None = None
    dtype: str = "bf16"


@dataclass
class DatasetConfig:
    """Prompts from a local file (``benchmark=dataset``, docs/workloads.md)."""

    # A local file, or pkg://autotune.benchmark/datasets/chat.jsonl (the shipped sample);
    # null = synthetic scenarios.
    path: str | None = None
    format: str = "auto"  # auto (by extension) | jsonl | csv | json | sharegpt | txt
    prompt_column: str = "prompt"
    # Output tokens asked of every request (genai-bench sends one max_tokens for all);
    # null = the engine's default (it stops at EOS or its own limit).
    max_tokens: int | None = None


@dataclass
class BenchmarkConfig:
    """A genai-bench workload: every (scenario, concurrency) pair is one run."""

    scenarios: list[str] = field(default_factory=lambda: ["D(1024,256)"])
    concurrency: list[int] = field(default_factory=lambda: [8, 32])
    max_requests_per_run: int = 64
    max_time_per_run_min: int = 2
    # Wall-clock limit of the warm-up and the whole genai-bench process together;
    # genai-bench is killed after this.
    timeout_s: float = 900.0
    task: str = "text-to-text"
    # The key genai-bench sends (it insists on one). None: a random throwaway key per
    # run, which engines started by autotune do not check; set it (a secret, masked
    # everywhere) for an engine that was given --api-key.
    api_key: str | None = None
    # Requests sent before each measured run and not measured (a fresh engine's first
    # requests are slower); null = the highest concurrency level once.
    warmup_requests: int | None = None
    # One shared prefix of this many tokens at the start of every prompt (genai-bench
    # --prefix-len: the same text for every request, level and trial); 0 = none.
    prefix_len: int = 0
    # The shared prefix as a fraction of each prompt (--prefix-ratio; D scenarios only).
    prefix_ratio: float = 0.0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    # Stop a trial once its finished levels show it cannot meet the SLOs (recorded
    # infeasible, autotune.pruned=true): docs/search.md. Needs SLOs and >= 2 levels;
    # genai-bench still runs all levels in one process, stopped between levels.
    early_abort: bool = True
    # How far (relative) a level below the SLO's level must miss a latency bound to
    # abort: latency rises with concurrency, noise must not abort a feasible trial.
    abort_margin: float = 0.1
    # Seconds between scrapes of the engine's metrics endpoint (runtime.metrics_path)
    # while the benchmark runs (virtual clock: simulated seconds); 0 = no scraping.
    metrics_interval_s: float = 2.0


@dataclass
class ObjectiveTerm:
    metric: str = "output_throughput_tok_s"
    direction: str = "maximize"  # maximize | minimize


@dataclass
class RequestSLOConfig:
    """Per-request latency bounds (ms) for goodput; null = unbounded. All null: the
    latency bounds of ``objective.slo`` (ttft_*_ms, tpot_*_ms, e2e_*_ms) apply to
    each request (autotune/benchmark/derived.py)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None


@dataclass
class ObjectiveConfig:
    """What "better" means. One term → a float; several → a list (multi-objective)."""

    terms: list[ObjectiveTerm] = field(default_factory=lambda: [ObjectiveTerm()])
    # Read every metric at this concurrency level; null = aggregated across levels.
    concurrency: int | None = None
    # How levels are combined when concurrency is null: pooled (all requests of all
    # levels together, as the parser reports them), mean, min or max of the levels.
    across_levels: str = "pooled"
    # Service-level objectives: metric -> bound (<= for latencies and error_rate,
    # >= for throughputs). A trial that misses one is infeasible.
    slo: dict[str, float] = field(default_factory=dict)
    # Level the SLOs are read at; null = the same view as the objective.
    slo_concurrency: int | None = None
    # objective=capacity: the levels the capacity ladder may probe (bisection, one
    # genai-bench run each); empty = benchmark.concurrency. docs/capacity.md.
    ladder: list[int] = field(default_factory=list)
    # What a request must meet to count towards goodput_req_s.
    request_slo: RequestSLOConfig = field(default_factory=RequestSLOConfig)


@dataclass
class TrackingConfig:
    # null = sqlite:///<directory the command was started from>/mlflow.db
    uri: str | None = None
    experiment: str = "autotune"


@dataclass
class StudyConfig:
    # null = derived from what defines the study (model, engine, target, workload,
    # objective, search space), so re-running the same command resumes the same study.
    name: str | None = None
    # Set by the sweeper on the trial that runs the engine's default flags first.
    baseline_trial: bool = False


@dataclass
class ConfirmConfig:
    """The confirmation stage after the search (autotune/confirm/)."""

    enabled: bool = True
    # The best distinct configurations re-run (with the engine defaults).
    top_k: int = 3
    # Fresh runs of each, interleaved (at least 2: one run has no spread).
    repeats: int = 3


@dataclass
class SearchConfig:
    """Model-based search (Optuna): budget, seed, where the study persists."""

    n_trials: int = 30
    seed: int = 0
    # Any SQLAlchemy URL; null = sqlite:///<directory you started from>/optuna.db
    storage: str | None = None
    # Run the engine's defaults first (marked autotune.baseline=true): every study
    # reports its gain over defaults.
    baseline: bool = True
    # Trials of one sweep process that run at once (on distinct GPUs).
    n_jobs: int = 1
    # Several sweep processes on one study (docs/team.md): this process's name, unique
    # in the study and the same when it is re-run (e.g. "gpu-host-1" or "host1-gpu0").
    # It gets its own sampler seed (from `seed` and the name) and its own budget
    # (`n_trials` counts the trials it ran). null = the only worker of the study.
    worker: str | None = None
    # Re-run the best configurations and the defaults, and state the gain's interval.
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    # Optuna pruner told each level's intermediate value: none | median | hyperband
    # (docs/search.md); not none runs levels one at a time.
    pruner: str = "none"

    # Score the space on the virtual-clock simulator before deploying anything
    # (autotune/study/prescreen.py, docs/search.md): none | sim.
    prescreen: str = "none"
    # At most this many configurations are scored (the whole space when smaller).
    prescreen_budget: int = 1000
    # The simulated GPU; null = the sim target's deploy.gpu (required on real targets).
    prescreen_gpu: str | None = None
    # Excluded: predicted to fail start-up, or to miss the SLOs by more than this
    # (summed relative violation; 0.25 = e.g. p99 TTFT 25 % over its bound).
    prescreen_margin: float = 0.25
    # The best predicted configurations (distinct in >= 2 flags) enqueued first.
    prescreen_enqueue: int = 8
    # Requests per concurrency level when screening (null: the benchmark's own).
    prescreen_requests: int | None = None
    # Processes that score it (null: one per CPU this process may use).
    prescreen_workers: int | None = None


@dataclass
class PricingConfig:
    """GPU prices for cost_usd_per_mtok (conf/config.yaml has the dated list prices).

    ``deploy.gpu_hour_usd`` wins; else the price of ``deploy.gpu_type`` (the
    simulator: ``deploy.gpu``) in this table.
    """

    # GPU type -> USD per GPU-hour (on demand).
    gpu_hour_usd: dict[str, float] = field(default_factory=dict)
    # Where the table's numbers come from and when they were read.
    source: str = ""


@dataclass
class ExportConfig:
    # Multi-objective studies: which Pareto-optimal trial goes to best/ ("max:<metric>"
    # or "min:<metric>"); null = the best on the first objective.
    pick: str | None = None


@dataclass
class AutotuneConfig:
    model: ModelConfig = MISSING
    runtime: RuntimeConfig = MISSING
    deploy: Any = MISSING
    benchmark: BenchmarkConfig = MISSING
    objective: ObjectiveConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    # The trial's engine flags under native names (aliases allowed), e.g. {mem: 0.8}.
    params: dict[str, Any] = field(default_factory=dict)
    # Render what would be launched, contact nothing, exit 0.
    dry_run: bool = False
    seed: int = 0
    # Run the doctor's checks at study start; a blocking problem stops the study.
    preflight: bool = True


def _directions(*, _root_: Any) -> list[str]:
    """``${autotune_directions:}``: the objective's directions, for the Optuna sweeper."""
    return [str(t.direction) for t in _root_.objective.terms]


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (called before Hydra composes)."""
    OmegaConf.register_resolver("autotune_directions", _directions, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="autotune_schema", node=AutotuneConfig, replace=True)
    # `params` must accept keys that the schema cannot know (each engine has its own
    # flags), so it is left open; autotune.params validates it against the runtime.
    # So is `objective.slo`: a bound on any metric the benchmark reports
    # (`objective.slo.ttft_p99_ms=500`, no "+"); autotune.study.validation names an
    # unknown metric with the closest known ones.
    open_params = OmegaConf.create({"params": {}, "objective": {"slo": {}}})
    OmegaConf.set_struct(open_params.params, False)
    OmegaConf.set_struct(open_params.objective.slo, False)
    cs.store(name="autotune_open_params", node=open_params, replace=True)
    cs.store(group="model", name="model_schema", node=ModelConfig, replace=True)
    cs.store(group="runtime", name="runtime_schema", node=RuntimeConfig, replace=True)
    cs.store(group="benchmark", name="benchmark_schema", node=BenchmarkConfig, replace=True)
    cs.store(group="objective", name="objective_schema", node=ObjectiveConfig, replace=True)
    # Each deploy target's own Config (autotune.launchers.*, and other packages' targets).
    from autotune.deploy.plugins import register_schemas

    register_schemas()
