"""The simulator pre-screen: what it excludes, what it enqueues, how a study uses it."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from study_runner import SMALL, optuna_study, run_cli, runs, search_space

from autotune.study.prescreen import (
    ENQUEUED_ATTR,
    EXCLUDED_ATTR,
    Prediction,
    check_settings,
    diverse_top,
    make_plan,
    screening_keys,
)
from autotune.study.prescreen_stage import SKIPPED_ATTR, answer_stale_enqueued
from autotune.study.team import REPEAT_ATTR

SPACE = {
    "params.a": CategoricalDistribution([1, 2, 3]),
    "params.b": CategoricalDistribution(["x", "y"]),
}


def test_the_plan_excludes_start_up_failures_and_clear_slo_misses():
    preds = [
        Prediction((1, "x"), [100.0], feasible=True),
        Prediction((1, "y"), [99.0], feasible=True),  # a neighbour of the best
        Prediction((2, "y"), [90.0], feasible=True),
        Prediction((2, "x"), [-0.1], violation=0.1),  # within the margin: kept
        Prediction((3, "x"), [-0.6], violation=0.6),  # beyond it: excluded
        Prediction((3, "y"), None, failure="oom", startup_failed=True),
    ]
    plan = make_plan(preds, SPACE, ["maximize"], margin=0.25, enqueue=3)
    assert plan.excluded[(3, "y")].startswith("start-up")
    assert plan.excluded[(3, "x")].startswith("slo: predicted miss 0.600 > margin 0.25")
    assert len(plan.excluded) == 2 and plan.reasons() == {"start-up": 1, "slo": 1}
    # Best first, then the next that differs in two flags (not the best's neighbour),
    # then the least infeasible kept one.
    assert plan.enqueue == [(1, "x"), (2, "y")]
    assert "6 configurations scored" in plan.summary() and "2 excluded" in plan.summary()


def test_diverse_top_skips_neighbours():
    ranked = [(1, "x"), (1, "y"), (2, "x"), (2, "y"), (3, "x")]
    assert diverse_top(ranked, 3) == [(1, "x"), (2, "y")]
    assert diverse_top(ranked, 3, min_distance=1) == ranked[:3]
    # At most half of them share a flag's value: a wrong prediction about one value
    # (a memory fraction that fails on the real GPU) cannot sink every enqueued trial.
    assert diverse_top([(1, "x"), (2, "x"), (3, "y")], 2, min_distance=1) == [(1, "x"), (3, "y")]


def _enqueued_study(plan):
    study = optuna.create_study(direction="maximize")
    for key in plan.enqueue:
        study.enqueue_trial(plan.params(key), user_attrs={ENQUEUED_ATTR: True})
    return study


@pytest.mark.parametrize("first_slack", [0.05, -0.02])
def test_enqueued_predictions_are_skipped_once_the_engine_contradicts_one(first_slack):
    preds = [
        Prediction((1, "x"), [100.0], feasible=True),
        Prediction((2, "y"), [90.0], feasible=True),
    ]
    plan = make_plan(preds, SPACE, ["maximize"], margin=0.25, enqueue=2)
    assert plan.enqueue == [(1, "x"), (2, "y")]
    study = _enqueued_study(plan)
    first = study.ask(SPACE)
    assert not answer_stale_enqueued(plan, first)  # nothing measured yet
    first.set_constraint("slo.ttft_p99_ms", -first_slack)  # as the engine measured it
    study.tell(first, 95.0)
    second = study.ask(SPACE)
    assert (second.params["params.a"], second.params["params.b"]) == (2, "y")
    skipped = answer_stale_enqueued(plan, second)
    # Predicted feasible, measured 2 % over the bound: the rest of the bets are skipped
    # without a deployment (FAIL: the sampler learns nothing from them); met: kept.
    assert skipped == (first_slack < 0)
    if skipped:
        frozen = study.get_trials()[second.number]
        assert frozen.state == optuna.trial.TrialState.FAIL
        assert "trial 0" in frozen.user_attrs[SKIPPED_ATTR]
    # A trial the sampler proposes itself is never skipped.
    assert not answer_stale_enqueued(plan, study.ask(SPACE))


def test_screening_keys_are_the_grid_or_a_sample_of_it():
    assert len(screening_keys(SPACE, 1000)) == 6
    sample = screening_keys(SPACE, 4, seed=1)
    assert len(sample) == len(set(sample)) == 4


def test_bad_settings_fail_before_anything_deploys():
    from omegaconf import OmegaConf

    def cfg(**search):
        base = {"prescreen": "sim", "prescreen_budget": 10, "prescreen_margin": 0.2,
                "prescreen_enqueue": 2, "prescreen_gpu": None}  # fmt: skip
        return OmegaConf.create({
            "search": {**base, **search},
            "deploy": {"name": "ome", "simulated": False},
            "runtime": {"name": "sglang"},
            "model": {"name": "m", "sim_profile": "llama-3.1-8b"},
            "benchmark": {},
            "objective": {},
        })  # fmt: skip

    assert check_settings(cfg(prescreen="none")) == []
    assert "use one of none, sim" in check_settings(cfg(prescreen="gpu"))[0]
    (err,) = check_settings(cfg())
    assert "deploy=ome: set search.prescreen_gpu" in err
    assert (
        "margin must be >= 0"
        in check_settings(cfg(prescreen_margin=-1, prescreen_gpu="h100_sxm"))[0]
    )


STUDY = [
    "search=tpe",
    "search.prescreen=sim",
    "search.prescreen_enqueue=2",
    "search.prescreen_margin=0",
    "deploy.clock=virtual",
    "deploy.gpu=h100_sxm",
    "model=qwen3-32b",
    "objective=throughput_slo",
    "objective.concurrency=4",
    *SMALL,
]
TINY = """# @package hydra.sweeper.params
params.mem-fraction-static: choice(0.3, 0.85, 0.9)
params.max-running-requests: choice(1, 4)
params.chunked-prefill-size: choice(2048, 4096)
"""


@pytest.mark.slow
def test_a_prescreened_study_enqueues_the_best_and_never_deploys_an_excluded_one(tmp_path):
    proc = run_cli(tmp_path, *STUDY, *search_space(tmp_path, TINY), "search.n_trials=3",
                   "search.baseline=false", check=True)  # fmt: skip
    assert "pre-screen: 12 configurations scored" in proc.stderr
    trials = optuna_study(tmp_path).trials
    answered = (EXCLUDED_ATTR, REPEAT_ATTR)  # told without a deployment
    deployed = [t for t in trials if not any(a in t.user_attrs for a in answered)]
    assert len(deployed) == 3
    assert all(t.params["params.mem-fraction-static"] != 0.3 for t in deployed)
    for t in trials:
        if EXCLUDED_ATTR in t.user_attrs:
            assert t.constraints["prescreen"] > 0
    parent, children = runs(tmp_path)
    assert len(children) == 3
    row = parent.iloc[0]
    enqueued = int(row["metrics.prescreen.enqueued"])
    assert 1 <= enqueued <= 2  # search.prescreen_enqueue=2, fewer if not diverse enough
    # The enqueued configurations run first.
    flags = [t.user_attrs.get("autotune_prescreen_enqueued") for t in deployed]
    assert flags[:enqueued] == [True] * enqueued and True not in flags[enqueued:]
    assert row["metrics.prescreen.scored"] == 12
    assert row["metrics.prescreen.excluded_startup"] == 4  # every mem 0.3 configuration
    assert row["metrics.prescreen.excluded"] >= 4
    assert "excluded" in row["tags.autotune.prescreen"]


@pytest.mark.slow
def test_a_dry_run_prints_what_the_prescreen_kept_and_dropped(tmp_path):
    proc = run_cli(tmp_path, *STUDY, *search_space(tmp_path, TINY), "dry_run=true", check=True)
    out = proc.stderr
    assert "pre-screen: 12 configurations scored" in out
    assert "start-up: predicted to fail" in out and "enqueued" in out
    assert "kept" in out and "dropped" in out


@pytest.mark.slow
def test_a_real_target_screens_on_the_gpu_it_is_told(tmp_path):
    """deploy=ome: the pre-screen needs search.prescreen_gpu (the cluster's GPU model is
    nowhere in the config), then screens on the simulator and renders the manifest."""
    args = [a for a in STUDY if not a.startswith("deploy.")] + ["deploy=ome", "dry_run=true"]
    space = search_space(tmp_path, TINY)
    missing = run_cli(tmp_path, *args, *space)
    assert missing.returncode == 2
    assert "deploy=ome: set search.prescreen_gpu" in missing.stderr
    proc = run_cli(tmp_path, *args, *space, "search.prescreen_gpu=h100_sxm", check=True)
    assert "pre-screen: 12 configurations scored" in proc.stderr
    assert "kind: InferenceService" in proc.stdout
