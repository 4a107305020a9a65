"""deploy=sim: the simulated SGLang engine (see docs/simulator.md).

clock=realtime starts ``python -m autotune.sim.server`` as a child process with
SGLang's own flags, exactly like deploy=local starts real SGLang, and genai-bench
drives it over HTTP. clock=virtual starts nothing: the trial's benchmark is replayed
on the simulator's virtual clock (same scenarios, concurrency levels and metrics).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autotune.launchers.local import LocalConfig, LocalLauncher

import autotune.sim
from autotune.deploy.base import BenchmarkRequest, BenchmarkRun, Endpoint, LaunchSpec
from autotune.deploy.failures import Failure, TrialFailure, failure_in
from autotune.sim.calibration import Calibration

SIM_TOKENIZER = Path(autotune.sim.__file__).resolve().parent / "tokenizer"


@dataclass
class SimConfig(LocalConfig):
    _target_: str = "autotune.launchers.sim.SimLauncher"
    name: str = "sim"
    simulated: bool = True
    gpu: str = "h200_sxm"  # h100_sxm | h200_sxm (`python -m autotune.sim predict --help`)
    # realtime: an HTTP server driven by genai-bench; virtual: no HTTP, metrics from
    # the simulator's virtual clock replaying the same benchmark (thousands of trials/min).
    clock: str = "realtime"
    seed: int = 0
    startup_s: float = 1.0
    # Fault knobs passed to the simulated server (`--sim-fault`), for failure tests,
    # e.g. [crash-after=5] (autotune/sim/faults.py).
    faults: list[str] = field(default_factory=list)
    startup_timeout_s: float = 60.0
    # Run-to-run noise, as a multiple of the default magnitude (autotune/sim/noise.py,
    # docs/simulator.md): 1 = as measured on real GPUs, 0 = exactly deterministic.
    noise: float = 1.0
    # The SGLang release whose defaults the simulator imitates (0.4.0 ... 0.5.10);
    # null = the runtime's image tag (runtime.image_tag), else the simulator's default.
    sglang_version: str | None = None
    # The simulator's calibration constants (autotune/sim/calibration.py); other values
    # than the stock ones make a deliberately mis-calibrated engine (benchmarks/gpu_hours.py).
    calibration: Calibration = field(default_factory=Calibration)


class SimLauncher(LocalLauncher):
    Config = SimConfig
    # The simulator is no place to deploy a best configuration to.
    export_as: ClassVar[dict[str, str]] = {}
    name = "sim"
    simulated = True

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if self.clock not in ("realtime", "virtual"):
            raise ValueError(f"deploy.clock={self.clock!r}: use realtime or virtual")
        self.instant = self.clock == "virtual"

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        from autotune.doctor import targets

        return targets.sim(cfg)

    def noise_key(self, spec: LaunchSpec) -> str:
        """Seeds this deployment's run-to-run noise: the seed and the run's name in the
        study (each trial and each confirmation run is its own deployment); not the
        study's name, which carries a timestamp for a grid."""
        run = spec.trial_name.removeprefix(f"{spec.study}-") if spec.study else spec.trial_name
        return f"{self.seed}/{run}"

    def tokenizer(self, spec: LaunchSpec) -> str:
        return str(spec.model.tokenizer or SIM_TOKENIZER)

    def version(self, spec: LaunchSpec) -> str | None:
        """The SGLang version simulated: deploy.sglang_version, else the image tag's."""
        from autotune.sim.versions import version_from_image_tag

        return self.sglang_version or version_from_image_tag(spec.runtime.get("image_tag"))

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        argv = super().command(spec, port)
        # Same argv as real SGLang after the launch prefix; the simulator's own options
        # (profile, GPU, faults) come last and are prefixed --sim-.
        launch_len = len(spec.runtime.launch)
        argv[:launch_len] = [self.python, "-m", "autotune.sim.server"]
        argv += ["--tokenizer-path", self.tokenizer(spec)]
        argv += [
            "--sim-model",
            str(spec.model.sim_profile),
            "--sim-gpu",
            self.gpu,
            "--sim-dtype",
            str(spec.model.dtype),
            "--sim-seed",
            str(self.seed),
            "--sim-startup-s",
            str(self.startup_s),
            "--sim-noise",
            str(self.noise),
            "--sim-noise-key",
            self.noise_key(spec),
        ]
        if version := self.version(spec):
            argv += ["--sim-sglang-version", version]
        argv += self.calibration.as_args()
        for fault in self.faults:
            argv += ["--sim-fault", str(fault)]
        return argv

    def render(self, spec: LaunchSpec, port: int | None = None) -> dict[str, str]:
        if self.clock == "virtual":
            flags = " ".join(f"--{k}={v}" for k, v in spec.params.items())
            return {
                "command.sh": (
                    "#!/bin/sh\n# deploy=sim clock=virtual: no server; the benchmark is "
                    "replayed on the simulator's virtual clock, equivalent to\n"
                    f"{sys.executable} -m autotune.sim predict --model {spec.model.sim_profile} "
                    f"--gpu {self.gpu} --dtype {spec.model.dtype} --tp {spec.params.get('tp-size', 1)} "
                    f"--sglang-version {self.version(spec) or 'default'} "
                    f"{flags} --json  # per scenario and concurrency\n"
                )
            }
        return super().render(spec, port)

    def start(self, spec: LaunchSpec) -> Endpoint:
        if self.clock == "realtime":
            endpoint = super().start(spec)
            endpoint.info["tokenizer"] = self.tokenizer(spec)
            return endpoint
        spec.workdir.mkdir(parents=True, exist_ok=True)
        log_path = spec.workdir / "engine.log"
        log_path.write_text(
            "SIMULATED engine, virtual clock: no process was started.\n"
            f"profile={spec.model.sim_profile} gpu={self.gpu} dtype={spec.model.dtype} "
            f"flags={spec.params}\n"
        )
        self._check_startup(spec, log_path)
        return Endpoint(
            base_url="virtual://sim",
            model_name=spec.served_name,
            log_path=log_path,
            handle=None,
            info={
                "tokenizer": self.tokenizer(spec),
                "sim": {
                    "model": spec.model.sim_profile,
                    "gpu": self.gpu,
                    "dtype": spec.model.dtype,
                    "seed": self.seed,
                    "flags": dict(spec.params),
                    "sglang_version": self.version(spec),
                    "noise": self.noise,
                    "noise_key": self.noise_key(spec),
                    # Dataset prompts are tokenised with what genai-bench is given.
                    "tokenizer": str(self.tokenizer(spec)),
                    "calibration": self.calibration.changed(),
                },
            },
        )

    def _check_startup(self, spec: LaunchSpec, log_path: Path) -> None:
        """Fail like the real server would at start-up (e.g. KV pool too small)."""
        from autotune.sim.settings import build_engine
        from autotune.sim.types import SimStartupError

        try:
            build_engine(
                dict(spec.params),
                model=str(spec.model.sim_profile),
                gpu=self.gpu,
                dtype=str(spec.model.dtype),
                seed=self.seed,
                sglang_version=self.version(spec),
                calibration=self.calibration,
            )
        except (SimStartupError, ValueError) as e:
            # SimStartupError: what SGLang fails with at start-up (e.g. a KV pool too
            # small); ValueError: a layout or flag value SGLang refuses to load.
            with open(log_path, "a") as f:
                f.write(f"RuntimeError: {e}\n")
            default = Failure.CRASH if isinstance(e, SimStartupError) else Failure.BAD_FLAG
            raise TrialFailure(
                failure_in(str(e), spec.runtime.failure_patterns, default),
                f"the simulated engine fails at start-up: {e}",
            ) from None

    def poll(self, endpoint: Endpoint) -> int | None:
        return None if endpoint.virtual else super().poll(endpoint)

    def benchmark(self, endpoint: Endpoint, request: BenchmarkRequest) -> BenchmarkRun:
        if not endpoint.virtual:
            return super().benchmark(endpoint, request)
        from autotune.benchmark.virtual import run_virtual, run_virtual_levels

        if request.on_progress:
            request.on_progress("benchmarking (virtual clock)")
        sim, workload, folder = endpoint.info["sim"], request.workload, request.out_dir
        series: dict[str, list[tuple[float, float]]] = {}
        sampling = {"metrics_interval_s": request.metrics_interval_s, "series": series}
        if request.policy is not None:
            levels = run_virtual_levels(sim, workload, folder, request.policy, **sampling)
            return BenchmarkRun(folder, levels=levels, engine_series=series or None)
        run_virtual(sim, workload, folder, **sampling)
        return BenchmarkRun(folder, engine_series=series or None)

    def server_info(self, endpoint: Endpoint, path: str | None) -> dict[str, Any] | None:
        return None if endpoint.virtual else super().server_info(endpoint, path)

    def stop(self, endpoint: Endpoint) -> None:
        if not endpoint.virtual:
            super().stop(endpoint)
