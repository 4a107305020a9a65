"""benchmarks/search_efficiency.py: its scoring is the tuner's, its bookkeeping is sound."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.distributions import CategoricalDistribution

ROOT = Path(__file__).resolve().parents[2]
# A small workload keeps each evaluation in the tens of milliseconds.
SMALL = [
    "benchmark.concurrency=[16]",
    "benchmark.max_requests_per_run=32",
    'benchmark.scenarios=["D(512,128)"]',
]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "search_efficiency", ROOT / "benchmarks" / "search_efficiency.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


se = _load_benchmark()


@pytest.fixture(scope="module")
def small_study():
    return se.compose_study("tpe", SMALL)


def test_example_restates_the_reference_space():
    """The example's commented space is conf/search/space/sglang.yaml, value for value."""
    example, _ = se.search_space(se.compose_study("tpe"))
    reference, _ = se.search_space(se.compose_study("tpe", study=()))
    assert example == reference
    assert len(se.grid_keys(example)) == 480


def test_sub_grid_scores_like_a_trial(small_study, tmp_path):
    space, fixed = se.search_space(small_study)
    keys = [
        (0.7, 2048, 32, "fcfs", 64),
        (0.9, 8192, 256, "lpm", 256),
        (0.9, 8192, 256, "fcfs", 256),
    ]
    table = se.evaluate_grid(small_study, space, fixed, keys)
    assert all(o.feasible and o.value == o.throughput > 0 for o in table.values())
    # No shared prefixes in the workload: lpm schedules exactly like fcfs.
    assert table[keys[1]] == table[keys[2]]
    assert table[keys[0]].value < table[keys[1]].value
    # A fraction that cannot hold the weights fails start-up: a FAIL trial.
    failed = se.evaluate(small_study, {"mem-fraction-static": 0.05}, tmp_path / "oom")
    assert failed.failed and "memory" in failed.error.lower()


def test_missed_slo_scores_the_objectives_penalty(tmp_path):
    cfg = se.compose_study("tpe", [*SMALL, "objective.slo.ttft_p99_ms=1"])
    out = se.evaluate(cfg, {"mem-fraction-static": 0.8}, tmp_path)
    # Ranked below every feasible trial by how far it missed: -(relative miss).
    assert not out.feasible and out.value == pytest.approx(-(out.ttft_p99_ms - 1) / 1)
    assert out.throughput > 0


def test_strategy_runs_fail_trials_and_counts_repeats():
    space = {
        "params.a": CategoricalDistribution([1, 2]),
        "params.b": CategoricalDistribution(["x", "y"]),
    }
    table = {
        (1, "x"): se.Outcome(None, error="oom"),
        (1, "y"): se.Outcome(-0.5, feasible=False),
        (2, "x"): se.Outcome(50.0, feasible=True),
        (2, "y"): se.Outcome(100.0, feasible=True),
    }
    runs = [
        se.run_strategy(optuna.samplers.RandomSampler(seed=s), space, table, 8) for s in range(5)
    ]
    assert all(len(r) == 8 for r in runs)
    rec = se.summarize("random", runs, table, optimum=100.0, n_trials=8)
    assert rec["budget_fraction"] == 2.0 and rec["seeds"] == 5
    assert 0.5 <= rec["min_fraction_of_optimum"] <= rec["median_fraction_of_optimum"] <= 1.0
    assert se.best_feasible([(1, "x"), (1, "y")], table) is None
    assert se.best_feasible([(1, "x"), (2, "x")], table) == 50.0


def test_sampler_is_built_from_the_search_config(small_study):
    space, _ = se.search_space(small_study)
    sampler = se.make_sampler(small_study, 3, space)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    grid = se.make_sampler(se.compose_study("optuna_grid", SMALL), 3, space)
    assert isinstance(grid, optuna.samplers.GridSampler)


@pytest.mark.slow
def test_benchmark_objective_equals_the_real_trials(tmp_path, small_study):
    """One configuration through `python -m autotune ... hydra.mode=RUN`: same objective."""
    params = {
        "mem-fraction-static": 0.8,
        "chunked-prefill-size": 4096,
        "max-running-requests": 64,
        "schedule-policy": "lpm",
        "cuda-graph-max-bs": 128,
    }
    env = {**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotune",
            "+experiment=sglang-slo-search",
            "deploy.noise=0",
            "search.confirm.enabled=false",
            "hydra.mode=RUN",
            *SMALL,
            *(f"params.{k}={v}" for k, v in params.items()),
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    trial = runs[runs["tags.autotune.role"] == "trial"].iloc[0]
    ours = se.evaluate(small_study, params, tmp_path / "bench")
    assert trial["metrics.objective"] == pytest.approx(ours.value, rel=1e-12)
    assert trial["metrics.slo_feasible"] == (1.0 if ours.feasible else 0.0)
