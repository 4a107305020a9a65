"""The one interface every deploy target implements: start → endpoint, logs, stop.

    launcher = create_launcher(cfg.deploy)              # autotune.launchers.sim.SimLauncher, ...
    endpoint = launcher.start(spec)                     # returns at once; not ready yet
    ...                                                 # autotune.deploy.readiness.wait_ready
    launcher.stop(endpoint)                             # always; idempotent; never raises

Guarantees every target gives: the full engine log in ``endpoint.log_path``, nothing
left running after ``stop``, and a classified :class:`TrialFailure` for anything that
prevents a trial from producing numbers.

A deploy target is one module (its config dataclass as ``Launcher.Config``, the
launcher, leftover reaping, the files it exports) registered under the entry-point
group ``autotune.launchers`` (:mod:`autotune.deploy.plugins`), plus its
``deploy/<name>.yaml``. docs/architecture.md has the recipe.
"""

from __future__ import annotations

import abc
import dataclasses
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import MISSING

from autotune.deploy.failures import Failure, TrialFailure  # noqa: F401 - re-exported


@dataclass
class LaunchSpec:
    """Everything a launcher needs to start one engine for one trial."""

    trial_name: str
    runtime: Any  # RuntimeConfig (DictConfig)
    model: Any  # ModelConfig (DictConfig)
    params: dict[str, Any]  # normalized native flags
    workdir: Path
    gpus: list[int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    study: str | None = None

    @classmethod
    def for_trial(
        cls,
        cfg: Any,
        params: dict[str, Any],
        *,
        study: str,
        trial: str,
        workdir: Path,
        gpus: list[int] | None = None,
    ) -> LaunchSpec:
        """The spec of trial ``trial`` of ``study`` from a composed study config."""
        return cls(
            trial_name=f"{study}-{trial}",
            runtime=cfg.runtime,
            model=cfg.model,
            params=params,
            workdir=workdir,
            gpus=gpus,
            study=study,
        )

    @property
    def served_name(self) -> str:
        return self.model.served_name or self.model.name


@dataclass
class Endpoint:
    """A started engine. ``base_url`` has no ``/v1``; ``virtual://`` for the virtual clock."""

    base_url: str
    model_name: str
    log_path: Path
    handle: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def virtual(self) -> bool:
        return self.base_url.startswith("virtual://")


@dataclass
class DeployConfig:
    """Where the engine runs: what every target has. Each target's ``Launcher.Config``
    subclasses it with its own fields, and states every default once, there."""

    _target_: str = MISSING
    name: str = MISSING
    host: str = "127.0.0.1"
    startup_timeout_s: float = 600.0
    stop_timeout_s: float = 15.0
    # GPUs on this host that trials may use (leased per trial, tp-size each, never
    # shared by trials running at once); null = no assignment (the engine sees all).
    gpus: list[int] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The engine is the simulator: results are labelled simulated everywhere.
    simulated: bool = False
    # What one GPU-hour costs here (USD), for cost_usd_per_mtok; null = the price of
    # gpu_type in the `pricing` table.
    gpu_hour_usd: float | None = None
    # The GPU model, a key of pricing.gpu_hour_usd (h100_sxm, h200_sxm …); null = unknown.
    gpu_type: str | None = None


class Launcher(abc.ABC):
    """Base class of deploy targets (``launchers/<name>.py``).

    ``Launcher(config)`` or ``Launcher(**overrides)``: every field of ``Config``
    becomes an attribute of the launcher (``self.host``, ``self.gpus`` …).
    """

    Config: ClassVar[type[DeployConfig]] = DeployConfig
    # The files this target contributes to a study's export (best/): the name
    # render() gives a file -> the name it gets there. Targets that are no place to
    # deploy to (the simulator) export nothing.
    export_as: ClassVar[dict[str, str]] = {}
    # Kinds of entries this target writes to the leftovers registry (reap() clears them).
    leftover_kinds: ClassVar[tuple[str, ...]] = ()
    name: str = "base"
    simulated: bool = False
    startup_timeout_s: float = 600.0
    # Trials finish in milliseconds (no live progress worth reporting).
    instant: bool = False
    # start() may block for long (pulls an image, waits for a rollout): it is not run
    # with Ctrl-C held, and must stop what it started if it is interrupted.
    start_blocks: bool = False

    def __init__(self, config: DeployConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else self.Config()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        for f in dataclasses.fields(config):
            if not f.name.startswith("_"):
                setattr(self, f.name, getattr(config, f.name))

    @abc.abstractmethod
    def render(self, spec: LaunchSpec, port: int | None = None) -> dict[str, str]:
        """What would be launched, as artifacts: file name -> text (no secrets)."""

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> Endpoint:
        """Start the engine and return at once; readiness is checked separately."""

    @abc.abstractmethod
    def poll(self, endpoint: Endpoint) -> int | None:
        """None while the engine runs; its exit code once it has stopped."""

    @abc.abstractmethod
    def stop(self, endpoint: Endpoint) -> None:
        """Stop the engine and release everything it holds. Idempotent; never raises."""

    def benchmark(self, endpoint: Endpoint, request: BenchmarkRequest) -> BenchmarkRun:
        """Drive the started engine with the workload: genai-bench over HTTP.

        A target whose engine is not reached over HTTP (the simulator's virtual clock)
        answers the same request its own way.
        """
        from autotune.benchmark.genai_bench import run_genai_bench
        from autotune.benchmark.warmup import warm_up

        workload = request.workload
        if request.on_progress:
            request.on_progress("warming up")
        # Unmeasured requests first (genai-bench's own --warmup-ratio halves throughput).
        # The warm-up and genai-bench share benchmark.timeout_s: a hung engine costs
        # the limit once, not twice.
        started = time.monotonic()
        warm_up(
            endpoint.base_url,
            endpoint.model_name,
            requests=workload.warmup_requests,
            users=max(workload.concurrency),
            scenario=workload.scenarios[0],
            api_key=request.api_key,
            timeout_s=request.timeout_s,
        )
        left_s = max(1.0, request.timeout_s - (time.monotonic() - started))
        tokenizer = endpoint.info.get("tokenizer") or request.tokenizer
        if request.policy is not None:
            # Level by level: a policy looks at each level before the next.
            from autotune.benchmark.stepwise import genai_bench_levels

            return genai_bench_levels(endpoint, request, str(tokenizer), left_s)
        bench = run_genai_bench(
            endpoint.base_url,
            endpoint.model_name,
            str(tokenizer),
            request.workload,
            request.out_dir,
            timeout_s=left_s,
            api_key=request.api_key,
            on_progress=request.on_progress,
        )
        note = f"genai-bench exit {bench.returncode}{' (timed out)' if bench.timed_out else ''}"
        return BenchmarkRun(bench.folder, bench.partial, note, bench.timed_out)

    def server_info(self, endpoint: Endpoint, path: str | None) -> dict[str, Any] | None:
        """The engine's effective settings (SGLang's /get_server_info), when it has them."""
        if not path:
            return None
        import httpx

        try:
            return httpx.get(endpoint.base_url + path, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None

    @classmethod
    def export_config(cls, own: dict[str, Any], trial_cfg: Any) -> dict[str, Any]:
        """This target's deploy config for rendering the export of a trial that ran
        elsewhere (``own`` = its composed defaults)."""
        return own

    @classmethod
    def reap(cls) -> list[str]:
        """Stop what a killed tuner left of this target (containers, services); their names."""
        return []

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        """This target's doctor checks for study ``cfg``: zero-argument callables that
        return an ``autotune.doctor.Check`` (or a list of them); see autotune/doctor/."""
        return []


@dataclass
class BenchmarkRequest:
    """What the trial asks of a benchmark: the workload, where to write, the limits."""

    workload: Any  # autotune.benchmark.genai_bench.Workload
    out_dir: Path
    tokenizer: str | None
    timeout_s: float
    api_key: str | None = None
    on_progress: Any = None  # Callable[[str], None]: "benchmarking c<N>" phases
    # What runs next after each level (autotune.benchmark.levels); None: every level
    # in one go (one genai-bench process).
    policy: Any = None
    # A target that measures the engine itself (the virtual clock) samples its metrics
    # this often (seconds of its clock) into BenchmarkRun.engine_series; 0 = never.
    metrics_interval_s: float = 0.0


@dataclass
class BenchmarkRun:
    """Where a benchmark left its results (genai-bench's folder layout) and how it ended."""

    folder: Path
    partial: bool = False
    note: str = ""
    timed_out: bool = False
    # Levels run one at a time: which, and why the policy stopped early
    # (autotune.benchmark.levels.LevelsOutcome).
    levels: Any = None
    # Engine metric series a target measured itself (the simulator's virtual clock):
    # engine.<name> -> [(seconds since the benchmark started, value)].
    engine_series: dict[str, list[tuple[float, float]]] | None = None


def create_launcher(deploy_cfg: Any) -> Launcher:
    """The deploy target ``deploy_cfg`` names, configured by it.

    ``deploy._target_`` must be a launcher registered as a plug-in (entry-point group
    ``autotune.launchers``): a config file cannot make autotune import anything else.
    """
    from omegaconf import OmegaConf

    from autotune.deploy.plugins import launcher_for_target

    cls = launcher_for_target(str(deploy_cfg["_target_"]))
    node = OmegaConf.merge(OmegaConf.structured(cls.Config), deploy_cfg)
    return cls(OmegaConf.to_object(node))


# Ports other services on users' machines rely on; never handed to an engine.
RESERVED_PORTS = frozenset({8443})


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (never a reserved one)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise RuntimeError(f"no free port on {host}")
