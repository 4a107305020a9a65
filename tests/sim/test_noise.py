"""Run-to-run noise of the simulator: exact at 0, seeded, shared by both clocks, and
what a warm-up hides (a fresh deployment's first requests are slower)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from autotune.benchmark.genai_bench import Workload
from autotune.benchmark.parse import parse_experiment
from autotune.benchmark.virtual import run_virtual
from autotune.sim import noise as sim_noise
from autotune.sim.noise import StepNoise, noise_for

SIM = {"model": "llama-3.1-8b", "gpu": "h200_sxm", "dtype": "bf16", "seed": 0, "flags": {}}


def throughput(tmp: Path, noise: float, key: str, warmup: int, name: str) -> dict[str, float]:
    w = Workload(["D(1024,256)"], [8, 32], 64, 2, warmup_requests=warmup)
    folder = run_virtual(dict(SIM, noise=noise, noise_key=key), w, tmp / name)
    return parse_experiment(folder).metrics()


def test_scale_zero_is_no_noise_at_all():
    assert noise_for(0, "k") is None and noise_for(None, None) is None
    n = StepNoise(0.0, "k")
    assert [n(3.25, s) for s in (1, 4, 1)] == [3.25, 3.25, 3.25]
    with pytest.raises(ValueError):
        StepNoise(-1.0, "k")


def test_cold_start_then_jitter_around_the_deployment_factor():
    n = StepNoise(1.0, "0/trial-001")
    first = n(10.0) / (10.0 * n.factor)
    assert first == pytest.approx(1 + sim_noise.COLD_EXTRA, rel=0.1)  # twice as slow
    n.steps_done = 10_000  # long warm: only the deployment factor and the step jitter
    later = [n(10.0) / (10.0 * n.factor) for _ in range(4000)]
    assert statistics.fmean(later) == pytest.approx(1.0, abs=0.002)
    assert statistics.stdev(later) == pytest.approx(sim_noise.STEP_CV, rel=0.1)
    # 16 fused steps: one draw with the spread of their average.
    fused = [n(160.0, 16) / (160.0 * n.factor) for _ in range(4000)]
    assert statistics.stdev(fused) == pytest.approx(sim_noise.STEP_CV / 4, rel=0.1)


def test_deployment_factors_spread_as_configured_and_are_seeded():
    factors = [StepNoise(1.0, f"0/trial-{i}").factor for i in range(3000)]
    assert statistics.fmean(factors) == pytest.approx(1.0, abs=0.001)
    assert statistics.stdev(factors) == pytest.approx(sim_noise.DEPLOYMENT_CV, rel=0.1)
    assert StepNoise(1.0, "0/trial-7").factor == StepNoise(1.0, "0/trial-7").factor
    assert StepNoise(2.0, "0/trial-7").factor != StepNoise(1.0, "0/trial-7").factor


def test_virtual_runs_exact_at_zero_and_seeded_above(tmp_path):
    exact = [throughput(tmp_path, 0.0, f"0/trial-{i}", 8, f"z{i}") for i in range(2)]
    plain = run_virtual(SIM, Workload(["D(1024,256)"], [8, 32], 64, 2), tmp_path / "plain")
    assert exact[0] == exact[1] == parse_experiment(plain).metrics()  # bit for bit
    a = throughput(tmp_path, 1.0, "0/trial-1", 32, "a")
    assert a == throughput(tmp_path, 1.0, "0/trial-1", 32, "a2")  # same deployment key
    b = throughput(tmp_path, 1.0, "0/trial-2", 32, "b")
    assert a["output_throughput_tok_s"] != b["output_throughput_tok_s"]


def test_warm_up_excludes_the_cold_first_requests(tmp_path):
    exact = throughput(tmp_path, 0.0, "", 0, "exact")["output_throughput_tok_s"]
    cold, warm = [], []
    for i in range(6):
        key = f"0/trial-{i}"
        cold.append(throughput(tmp_path, 1.0, key, 0, f"c{i}")["output_throughput_tok_s"])
        warm.append(throughput(tmp_path, 1.0, key, 32, f"w{i}")["output_throughput_tok_s"])
    # Same deployment (same factor, same jitter stream): only the warm-up differs.
    assert all(w > c for w, c in zip(warm, cold, strict=True))
    assert statistics.fmean(cold) / exact < 0.99  # the cold start costs > 1 %
    assert statistics.fmean(warm) / exact == pytest.approx(1.0, abs=0.01)
    cv = statistics.stdev(warm) / statistics.fmean(warm)
    assert 0.002 < cv < 0.03 and not math.isnan(cv)


def test_launcher_passes_the_same_noise_to_the_server_and_the_virtual_clock(tmp_path, compose_cfg):
    from autotune.deploy import LaunchSpec, create_launcher

    cfg = compose_cfg("deploy.noise=0.5", "deploy.seed=7")
    spec = LaunchSpec.for_trial(
        cfg, {}, study="study-x", trial="confirm-trial-003-r2", workdir=tmp_path
    )
    argv = create_launcher(cfg.deploy).command(spec, 30000)
    key = "7/confirm-trial-003-r2"  # the seed and the run, not the study's (timestamped) name
    assert argv[argv.index("--sim-noise") + 1] == "0.5"
    assert argv[argv.index("--sim-noise-key") + 1] == key
    cfg = compose_cfg("deploy.noise=0.5", "deploy.seed=7", "deploy.clock=virtual")
    sim = create_launcher(cfg.deploy).start(spec).info["sim"]
    assert (sim["noise"], sim["noise_key"]) == (0.5, key)
