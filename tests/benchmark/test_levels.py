"""Levels one at a time: the early-abort rule, the capacity ladder, and the trial
executor driving them on the simulator's virtual clock (no HTTP, exact seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.benchmark.capacity import CapacityLadder, capacity_from_levels
from autotune.benchmark.levels import doomed
from autotune.benchmark.parse import parse_experiment
from autotune.objective import Objective
from autotune.trial.executor import run_trial
from autotune.trial.spec import TrialObserver, TrialSpec


def _objective(**slo_kw) -> Objective:
    slo = slo_kw.pop("slo", {"ttft_p99_ms": 100.0})
    return Objective(["output_throughput_tok_s"], ["maximize"], slo=slo, **slo_kw)


def test_a_latency_miss_below_the_slo_level_aborts_only_beyond_the_margin():
    obj = _objective(slo_concurrency=64)
    assert doomed(obj, {"c8.ttft_p99_ms": 109.0}, [8], [64], 0.1) is None  # within 10 %
    reason = doomed(obj, {"c8.ttft_p99_ms": 111.0}, [8], [64], 0.1)
    assert reason and "c8" in reason and "grows with concurrency" in reason
    # At the SLO's own level the number is final: any miss.
    assert doomed(obj, {"c8.ttft_p99_ms": 50, "c64.ttft_p99_ms": 100.5}, [8, 64], [128], 0.1)


def test_a_throughput_bound_is_judged_only_at_its_own_level():
    obj = _objective(slo={"output_throughput_tok_s": 1000.0}, slo_concurrency=64)
    # Throughput rises with concurrency: a low number at c8 says nothing about c64.
    assert doomed(obj, {"c8.output_throughput_tok_s": 10.0}, [8], [64], 0.1) is None
    assert doomed(obj, {"c64.output_throughput_tok_s": 900.0}, [8, 64], [128], 0.1)


def test_across_levels_max_is_final_and_pooled_needs_rising_levels():
    worst = _objective(across_levels="max")
    assert doomed(worst, {"c8.ttft_p99_ms": 101.0}, [8], [4], 0.1)  # any level, any order
    pooled = _objective()
    metrics = {"c8.ttft_p99_ms": 200.0, "ttft_p99_ms": 200.0}
    assert doomed(pooled, metrics, [8], [64], 0.1)
    assert doomed(pooled, metrics, [8], [4], 0.1) is None  # a lower level may pull it down


def _ladder_metrics(capacity: int, ladder: list[int]) -> dict[str, float]:
    """Latency that meets a 100 ms SLO exactly up to ``capacity``."""
    return {f"c{c}.ttft_p99_ms": 50.0 if c <= capacity else 150.0 for c in ladder}


LADDER = [4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256]


@pytest.mark.parametrize("capacity", [0, *LADDER])
def test_the_ladder_bisects_to_the_exhaustive_answer_in_log_probes(capacity):
    obj = _objective()
    truth = _ladder_metrics(capacity, LADDER)
    ladder, done, seen = CapacityLadder(LADDER, obj), [], {}
    while (level := ladder.next_level(seen, done)) is not None:
        done.append(level)
        seen[f"c{level}.ttft_p99_ms"] = truth[f"c{level}.ttft_p99_ms"]
    assert ladder.capacity == capacity == capacity_from_levels(obj, truth, LADDER)
    assert len(done) <= 4  # ceil(log2(12)) of the 11 levels
    assert ladder.extra_metrics(seen)["capacity_concurrency"] == capacity


def test_capacity_per_gpu_divides_by_the_trials_gpus():
    truth = _ladder_metrics(64, LADDER)
    ladder, done = CapacityLadder(LADDER, _objective(), gpus=4), []
    while (level := ladder.next_level(truth, done)) is not None:
        done.append(level)
    extra = ladder.extra_metrics(truth)
    assert extra["capacity_concurrency"] == 64 and extra["capacity_concurrency_per_gpu"] == 16


def test_the_ladder_needs_slos():
    with pytest.raises(ValueError, match="objective.slo"):
        CapacityLadder(LADDER, Objective(["capacity_concurrency"], ["maximize"]))


# --- the executor on the virtual clock ---------------------------------------------------

LEVELS = ["benchmark.concurrency=[8,64,256]", "benchmark.max_requests_per_run=256"]
# Mean TPOT on the simulated H200: ~7 ms at c8, ~15 ms at c64, ~30 ms at c256 (the
# test checks the shape itself); a 5 ms bound at c256 is missed by far already at c8.
# (The TTFT bound of objective=throughput_slo is made one nothing misses.)
TIGHT = ["objective=throughput_slo", "objective.concurrency=256", "objective.slo.ttft_p99_ms=1e9",
         "objective.slo.tpot_mean_ms=5"]  # fmt: skip


class Heard(TrialObserver):
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.phases: list[str] = []

    def metrics(self, metrics):  # type: ignore[override]
        self.seen.update(metrics)

    def phase(self, name):  # type: ignore[override]
        self.phases.append(name)


def _trial(cfg, tmp_path: Path, folder: str, **kw):
    """The trial is always named "t": the same deployment noise for every call."""
    heard = Heard()
    spec = TrialSpec(cfg, {}, name="t", study="s", workdir=tmp_path / folder, **kw)
    return run_trial(spec, [heard]), heard


def _durations(folder: Path) -> dict[int, float]:
    return {r.concurrency: r.duration_s for r in parse_experiment(folder).runs}


def test_early_abort_stops_a_doomed_trial_and_keeps_what_it_measured(compose_cfg, tmp_path):
    base = ["deploy.clock=virtual", "deploy.noise=0", *LEVELS, *TIGHT]
    full, _ = _trial(compose_cfg(*base, "benchmark.early_abort=false"), tmp_path, "full")
    cut, heard = _trial(compose_cfg(*base), tmp_path, "cut")

    all_levels = _durations(tmp_path / "full" / "genai-bench")
    assert sorted(all_levels) == [8, 64, 256] and full.pruned is None
    tpot = [full.metrics[f"c{c}.tpot_mean_ms"] for c in (8, 64, 256)]
    assert tpot == sorted(tpot) and tpot[0] > 5 * 1.1  # rises; c8 already misses by > 10 %

    assert cut.ok and cut.pruned and "tpot_mean_ms" in cut.pruned and cut.levels == [8]
    assert "pruned" in heard.phases
    run = _durations(tmp_path / "cut" / "genai-bench")
    assert list(run) == [8] and run[8] == pytest.approx(all_levels[8])
    # Engine seconds saved: the benchmark time of the levels not run (virtual clock).
    saved = all_levels[64] + all_levels[256]
    print(
        f"benchmark s: full {sum(all_levels.values()):.1f}, aborted {run[8]:.1f}, saved {saved:.1f}"
    )
    # Measured: 28.9 of 101.4 benchmark-s (c8 runs longest: a 40-request cap at low load).
    assert saved > 0.25 * sum(all_levels.values())
    # Partial metrics recorded: level 8 and the pooled numbers over what ran.
    assert heard.seen["c8.tpot_mean_ms"] == pytest.approx(tpot[0])
    assert "c64.tpot_mean_ms" not in heard.seen
    # Infeasible, scored from what was measured: the miss at c8 stands in for c256.
    assert not cut.score.feasible and cut.value == pytest.approx(-(tpot[0] - 5) / 5)
    assert full.value < cut.value < 0  # the full trial's miss at c256 is larger


def test_levels_one_at_a_time_reproduce_the_single_run(compose_cfg, tmp_path):
    """Same noise stream, same order: per-level replay = all levels in one go."""
    base = ["deploy.clock=virtual", "deploy.noise=1", *LEVELS]
    one, _ = _trial(compose_cfg(*base, "benchmark.early_abort=false"), tmp_path, "one")
    # A feasible SLO engages the per-level mode without stopping anything.
    feasible = ["objective=throughput_slo", "objective.concurrency=256",
                "objective.slo.ttft_p99_ms=1e9"]  # fmt: skip
    each, _ = _trial(compose_cfg(*base, *feasible), tmp_path, "each")
    assert each.levels == [8, 64, 256] and one.levels == []
    for key in ("c8.ttft_p99_ms", "c256.output_throughput_tok_s", "tpot_mean_ms"):
        assert each.metrics[key] == one.metrics[key]
    meta = json.loads((tmp_path / "each" / "genai-bench" / "experiment_metadata.json").read_text())
    assert meta["num_concurrency"] == [8, 64, 256] and not each.partial


def test_capacity_objective_records_the_ladders_answer(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "deploy.clock=virtual",
        "deploy.noise=0",
        "objective=capacity",
        "objective.slo.tpot_mean_ms=20",
        "~objective.slo.ttft_p99_ms",
        "benchmark.max_requests_per_run=256",
    )
    result, heard = _trial(cfg, tmp_path, "cap")
    capacity = result.metrics["capacity_concurrency"]
    assert result.ok and result.score.feasible and result.value == capacity
    assert len(result.levels) <= 4 and capacity in result.levels
    obj = Objective.from_config(cfg.objective)
    # Every probe agrees with the answer: met at or below it, missed above.
    for c in result.levels:
        assert (result.metrics[f"c{c}.tpot_mean_ms"] <= 20) == (c <= capacity)
    assert heard.seen["capacity_output_throughput_tok_s"] == pytest.approx(
        result.metrics[f"c{int(capacity)}.output_throughput_tok_s"]
    )
    assert capacity_from_levels(obj, result.metrics, result.levels) <= capacity


REALTIME = [
    "deploy.clock=realtime",
    'benchmark.scenarios=["D(128,32)"]',
    "benchmark.max_time_per_run_min=1",
]


@pytest.mark.slow
def test_real_genai_bench_is_stopped_between_levels(compose_cfg, tmp_path):
    """Early abort watches one genai-bench process (no start-up per level) and stops it
    once a level's file dooms the trial; the engine is stopped right after."""
    cfg = compose_cfg(
        *REALTIME,
        "benchmark.concurrency=[2,4,8]",
        "benchmark.max_requests_per_run=8",
        "objective=throughput_slo",
        "objective.concurrency=8",
        "objective.slo.ttft_p99_ms=0.001",
    )
    result, heard = _trial(cfg, tmp_path, "rt")
    folder = tmp_path / "rt" / "genai-bench"
    assert result.pruned and result.levels == [2] and not result.score.feasible
    assert 8 not in _durations(folder) and heard.seen["c2.ttft_p99_ms"] > 0.001
    assert (
        "Starting benchmark with concurrency=8"
        not in (folder / "genai_bench.console.log").read_text()
    )
    assert not result.partial and result.endpoint.handle[0].poll() is not None  # stopped


@pytest.mark.slow
def test_real_genai_bench_probes_the_capacity_ladder_one_process_per_level(compose_cfg, tmp_path):
    cfg = compose_cfg(
        *REALTIME,
        "benchmark.max_requests_per_run=16",
        "objective=capacity",
        "objective.ladder=[1,2,4,8]",
        "objective.slo.ttft_p99_ms=1e9",  # every level meets it: the ladder climbs
        "~objective.slo.tpot_mean_ms",
    )
    result, _ = _trial(cfg, tmp_path, "cap")
    folder = tmp_path / "cap" / "genai-bench"
    assert result.ok and result.value == 8 and result.levels == [4, 8]
    assert sorted(_durations(folder)) == [4, 8]
    assert sorted(p.name for p in (folder / "levels").iterdir()) == ["c4", "c8"]
    assert result.metrics["capacity_output_throughput_tok_s"] > 0


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["benchmark.abort_margin=1.5"], "benchmark.abort_margin=1.5"),
        (["search=tpe", "search.pruner=sometimes"], "search.pruner='sometimes'"),
        (["search.pruner=median"], "needs an Optuna search"),
        (
            ["objective=capacity", "~objective.slo.ttft_p99_ms", "~objective.slo.tpot_mean_ms"],
            "objective=capacity needs SLOs",
        ),
        (["objective=capacity", "objective.ladder=[8]"], ">= 2 distinct levels"),
        (["objective=capacity"], "benchmark.max_requests_per_run=64"),
        (["objective.ladder=[4,8]"], "only read by objective=capacity"),
    ],
)
def test_bad_level_settings_are_named_before_anything_deploys(compose_cfg, overrides, needle):
    from autotune.study.validation import validate_study

    assert needle in "\n".join(validate_study(compose_cfg(*overrides)))


def test_valid_level_settings_pass(compose_cfg):
    from autotune.study.validation import validate_study

    cfg = compose_cfg("objective=capacity", "benchmark.max_requests_per_run=512")
    assert validate_study(cfg) == []
    assert validate_study(compose_cfg("search=tpe", "search.pruner=hyperband")) == []


@pytest.mark.slow
def test_an_aborted_trial_is_recorded_in_mlflow_as_pruned_and_infeasible(tmp_path):
    from study_runner import run_cli, runs

    run_cli(tmp_path, "search=none", "deploy.clock=virtual", *LEVELS, *TIGHT, check=True)
    _, trials = runs(tmp_path)
    (t,) = trials.to_dict("records")
    assert t["tags.autotune.pruned"] == "true" and t["tags.autotune.levels_run"] == "8"
    assert "tpot_mean_ms" in t["tags.autotune.pruned_reason"]
    assert t["tags.autotune.status"] == "ok" and t["tags.autotune.feasible"] == "false"
    assert t["metrics.c8.tpot_mean_ms"] > 5 and t["metrics.objective"] < 0
    assert "metrics.c64.tpot_mean_ms" not in t  # no level beyond the abort was run


@pytest.mark.slow
def test_the_capacity_benchmark_runs(capsys):
    """benchmarks/capacity.py on two configurations, exact: the two methods agree."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import capacity

    assert capacity.main(["--json", "--configs", "2", "--noise", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["configs"] == 2 and out["agreement"] == 1.0 and out["disagreements"] == []
    assert out["probes_mean"] <= 4 and out["ladder_levels"] == 11


def test_the_watch_judges_each_run_file_once_it_parses(tmp_path):
    """How early abort follows one genai-bench process (autotune.benchmark.stepwise)."""
    from autotune.benchmark.levels import EarlyAbort
    from autotune.benchmark.stepwise import _Watch
    from autotune.benchmark.writer import RequestRecord, RunRecords, write_experiment

    def level(c: int, ttft_s: float) -> RunRecords:
        reqs = [RequestRecord(i, i + ttft_s, i + ttft_s + 1, 100, 10) for i in range(4)]
        return RunRecords("D(100,10)", c, reqs)

    obj = _objective(slo_concurrency=64)  # p99 TTFT <= 100 ms at c64
    watch = _Watch(EarlyAbort([8, 16, 64], obj, 0.1), tmp_path)
    (c8,) = write_experiment(tmp_path, [level(8, 0.05)])
    assert not watch() and watch.done == [8]
    (c16,) = write_experiment(tmp_path, [level(16, 0.5)])
    text = c16.read_text()
    c16.write_text(text[: len(text) // 2])  # genai-bench is still writing it
    assert not watch() and watch.done == [8]
    c16.write_text(text)
    assert watch() and watch.done == [8, 16]  # 500 ms at c16 dooms c64: stop
    assert "c16" in watch.policy.stopped
