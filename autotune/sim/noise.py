"""Run-to-run noise of the simulated engine (``deploy.noise``; docs/simulator.md).

A real engine measured twice gives two numbers: a restart lands on other clocks,
kernels and memory layout (per deployment), every forward step jitters (per
step, so per request), and a fresh engine's first batches are slower (clock
ramp-up, lazy kernel set-up; what a benchmark's warm-up hides). :class:`StepNoise`
scales the step times the scheduler computes by those three factors, seeded from
the deployment's key (``<deploy.seed>/<trial or confirmation run name>``), so a
study is reproducible for its seed and two runs of one configuration differ as on
hardware. ``scale`` multiplies every magnitude: 1 = the defaults below (sourced in
docs/simulator.md), 0 = none at all (step times exactly as without this module).

    noise = StepNoise(1.0, "0/trial-003")
    duration_ms = noise(step_ms, steps)     # in SimEngine, where it costs a step
"""

from __future__ import annotations

import math
import random

# Per-deployment spread of step times (sd of the log-factor): a restart's share.
DEPLOYMENT_CV = 0.010
# Per-step jitter (sd of the log-factor of one forward step).
STEP_CV = 0.02
# A fresh engine's first step costs this much more, decaying over COLD_STEPS steps.
COLD_EXTRA = 1.0
COLD_STEPS = 16.0


class StepNoise:
    """Multiplicative noise on step times for one deployment; ``scale=0`` is exact."""

    def __init__(self, scale: float, key: str) -> None:
        if scale < 0:
            raise ValueError(f"deploy.noise={scale}: use 0 (none) or more (1 = as measured)")
        self.scale = float(scale)
        self.key = key
        self._rng = random.Random(f"autotune-sim-noise/{key}")
        sd = self.scale * DEPLOYMENT_CV
        # Mean-one lognormal: noise does not shift the expected step time.
        self.factor = math.exp(self._rng.gauss(-sd * sd / 2.0, sd)) if sd else 1.0
        self.steps_done = 0

    def __call__(self, ms: float, steps: int = 1) -> float:
        """``ms`` of ``steps`` fused forward steps, with this deployment's noise."""
        if self.scale == 0:
            return ms
        # Fused steps get one draw with the spread of their average, as if drawn per step.
        sd = self.scale * STEP_CV / math.sqrt(max(steps, 1))
        jitter = math.exp(self._rng.gauss(-sd * sd / 2.0, sd))
        cold = 1.0 + self.scale * COLD_EXTRA * self._cold_share(steps)
        self.steps_done += steps
        return ms * self.factor * jitter * cold

    def _cold_share(self, steps: int) -> float:
        """Mean of exp(-i / COLD_STEPS) over the steps this call covers."""
        a = self.steps_done / COLD_STEPS
        if steps == 1:
            return math.exp(-a)
        r = math.exp(-1.0 / COLD_STEPS)
        return math.exp(-a) * (1.0 - r**steps) / ((1.0 - r) * steps)


def noise_for(scale: float | None, key: str | None) -> StepNoise | None:
    """The noise of a deployment, or None when there is none (scale 0 or unset)."""
    if not scale:
        return None
    return StepNoise(float(scale), key or "")
