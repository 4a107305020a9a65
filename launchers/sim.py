"""deploy=sim: the simulated SGLang engine (see docs/simulator.md).

clock=realtime starts ``python -m autotune.sim.server`` as a child process with
SGLang's own flags, exactly like deploy=local starts real SGLang, and genai-bench
drives it over HTTP. clock=virtual starts nothing: the trial's benchmark is replayed
on the simulator's virtual clock (same scenarios, concurrency levels and metrics).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from autotune.failures import classify
from autotune.launcher import Endpoint, Failure, LaunchSpec, TrialFailure
from launchers.local import LocalLauncher

SIM_TOKENIZER = Path(__file__).resolve().parents[1] / "autotune" / "sim" / "tokenizer"


class SimLauncher(LocalLauncher):
    name = "sim"
    simulated = True

    def __init__(
        self,
        gpu: str = "h200_sxm",
        clock: str = "realtime",
        seed: int = 0,
        startup_s: float = 1.0,
        faults: list[str] | None = None,
        noise: float = 0.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if clock not in ("realtime", "virtual"):
            raise ValueError(f"deploy.clock={clock!r}: use realtime or virtual")
        self.gpu = gpu
        self.clock = clock
        self.seed = seed
        self.startup_s = startup_s
        self.faults = list(faults or [])
        self.noise = float(noise)
        self.instant = clock == "virtual"

    def noise_key(self, spec: LaunchSpec) -> str:
        """Seeds this deployment's run-to-run noise: the seed and the run's name in the
        study (each trial and each confirmation run is its own deployment); not the
        study's name, which carries a timestamp for a grid."""
        run = spec.trial_name.removeprefix(f"{spec.study}-") if spec.study else spec.trial_name
        return f"{self.seed}/{run}"

    def tokenizer(self, spec: LaunchSpec) -> str:
        return str(spec.model.tokenizer or SIM_TOKENIZER)

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
                    "noise": self.noise,
                    "noise_key": self.noise_key(spec),
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
            )
        except SimStartupError as e:
            with open(log_path, "a") as f:
                f.write(f"RuntimeError: {e}\n")
            found = classify(str(e), spec.runtime.failure_patterns) or Failure.CRASH.value
            raise TrialFailure(
                Failure(found) if found in Failure._value2member_map_ else Failure.CRASH,
                f"the simulated engine fails at start-up: {e}",
            ) from None

    def poll(self, endpoint: Endpoint) -> int | None:
        return None if endpoint.virtual else super().poll(endpoint)

    def stop(self, endpoint: Endpoint) -> None:
        if not endpoint.virtual:
            super().stop(endpoint)
