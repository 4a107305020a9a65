"""Per-GPU throughput, goodput and cost, checked against hand counts on real genai-bench output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from autotune.benchmark.derived import (
    Deployment,
    RequestBounds,
    derived_metrics,
    gpu_price,
    serving_context,
)
from autotune.benchmark.parse import parse_experiment

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "genai_bench"


def hand_count(folder: Path, ttft_ms: float, tpot_ms: float) -> dict[int, tuple[int, int, float]]:
    """Written apart from the code under test: concurrency -> (good, sent, duration s)."""
    out = {}
    for path in sorted(folder.glob("D*.json")):
        data = json.loads(path.read_text())
        scale = 1.0 if data["_time_unit"] == "ms" else 1000.0
        good = 0
        for r in data["individual_request_metrics"]:
            if r["error_code"] is not None and r["error_code"] != 200:
                continue
            if r["ttft"] * scale <= ttft_ms and r["tpot"] * scale <= tpot_ms:
                good += 1
        agg = data["aggregated_metrics"]
        sent = len(data["individual_request_metrics"])
        out[agg["num_concurrency"]] = (good, sent, agg["run_duration"])
    return out


def test_goodput_matches_a_hand_count_on_captured_genai_bench_output():
    # some_failures_ms: ~25 % of requests failed (HTTP 500), times in ms.
    folder = FIXTURES / "some_failures_ms"
    bounds = RequestBounds(ttft_ms=30.0, tpot_ms=4.8)
    got = derived_metrics(parse_experiment(folder), bounds, Deployment(gpus=1))

    counted = hand_count(folder, 30.0, 4.8)
    # Counted by reading the records: c1 has 12 successes of 14, one with TPOT 10.99 ms;
    # c4 has 20 of 26, 6 of them within TTFT <= 30 ms and TPOT <= 4.8 ms.
    assert {c: (g, n) for c, (g, n, _) in counted.items()} == {1: (11, 14), 4: (6, 26)}
    for level, (good, sent, duration) in counted.items():
        assert got[f"c{level}.goodput_req_s"] == pytest.approx(good / duration)
        assert got[f"c{level}.goodput_fraction"] == pytest.approx(good / sent)
    durations = sum(d for _, _, d in counted.values())
    assert got["goodput_req_s"] == pytest.approx(17 / durations)
    assert got["goodput_fraction"] == pytest.approx(17 / 40)


def test_goodput_reads_seconds_and_bounds_end_to_end_latency():
    folder = FIXTURES / "healthy_2level"  # times in seconds
    records = [
        r
        for p in sorted(folder.glob("D*.json"))
        for r in json.loads(p.read_text())["individual_request_metrics"]
    ]
    e2e_ms = sorted(r["e2e_latency"] * 1000 for r in records)
    bound = e2e_ms[len(e2e_ms) // 2]  # the median request: about half are good
    good = sum(1 for v in e2e_ms if v <= bound)
    got = derived_metrics(parse_experiment(folder), RequestBounds(e2e_ms=bound), Deployment())
    assert 0 < good < len(records)
    assert got["goodput_fraction"] == pytest.approx(good / len(records))
    # No bounds: every successful request is good, so goodput is the request rate.
    every = derived_metrics(parse_experiment(folder), RequestBounds(), Deployment())
    assert every["goodput_req_s"] == pytest.approx(
        parse_experiment(folder).aggregate["requests_per_s"]
    )


def test_per_gpu_throughput_and_cost_follow_from_gpus_and_the_price_table():
    parsed = parse_experiment(FIXTURES / "healthy_2level")
    cfg = OmegaConf.create(
        {
            "objective": {"slo": {}, "request_slo": {}},
            "runtime": {"gpu_flag": "tp-size", "parallel_flags": ["tp-size", "dp-size", "pp-size"]},
            "deploy": {"gpu": "h200_sxm", "gpu_hour_usd": None, "gpu_type": None},
            "pricing": {"gpu_hour_usd": {"h200_sxm": 4.0, "h100_sxm": 3.0}},
        }
    )
    bounds, deployment = serving_context(cfg, {"tp-size": 2, "dp-size": 2})
    assert deployment == Deployment(gpus=4, gpu_hour_usd=4.0)
    got = derived_metrics(parsed, bounds, deployment)
    for prefix in ("", "c1.", "c4."):
        tok_s = (parsed.aggregate if not prefix else parsed.metrics())[
            f"{prefix}output_throughput_tok_s"
        ]
        assert got[f"{prefix}output_throughput_tok_s_per_gpu"] == pytest.approx(tok_s / 4)
        # 4 GPUs x $4/h = $16/h for tok_s tokens/s: dollars per million tokens.
        assert got[f"{prefix}cost_usd_per_mtok"] == pytest.approx(16 / 3600 / tok_s * 1e6)

    cfg.deploy.gpu_type = "h100_sxm"  # an explicit GPU type wins over the simulator's GPU
    assert gpu_price(cfg) == (3.0, "pricing.gpu_hour_usd.h100_sxm")
    cfg.deploy.gpu_hour_usd = 2.5  # the deployment's own price wins over the table
    assert gpu_price(cfg) == (2.5, "deploy.gpu_hour_usd")
    cfg.deploy.gpu_hour_usd, cfg.deploy.gpu_type = None, "b200"
    price, why = gpu_price(cfg)
    assert price is None and "pricing.gpu_hour_usd.b200=" in why
    assert "cost_usd_per_mtok" not in derived_metrics(parsed, bounds, Deployment(gpus=1))


def test_request_bounds_come_from_the_latency_slos_unless_given():
    objective = OmegaConf.create(
        {
            "slo": {"ttft_p99_ms": 800, "ttft_mean_ms": 500, "tpot_p90_ms": 40, "error_rate": 0.1},
            "request_slo": {"ttft_ms": None, "tpot_ms": None, "e2e_ms": None},
        }
    )
    assert RequestBounds.from_objective(objective) == RequestBounds(ttft_ms=500, tpot_ms=40)
    objective.request_slo.e2e_ms = 9000
    assert RequestBounds.from_objective(objective) == RequestBounds(e2e_ms=9000)


def test_study_validation_names_the_missing_price_and_bad_bounds(compose_cfg):
    from autotune.study.validation import validate_study

    def price_errors(*overrides: str) -> list[str]:
        return [e for e in validate_study(compose_cfg(*overrides)) if "price" in e]

    assert price_errors("objective=cost") == []  # deploy=sim: h200_sxm is in the table
    (error,) = price_errors("objective=cost", "deploy=local")  # no GPU type, no price
    assert "deploy.gpu_hour_usd=" in error and "deploy.gpu_type=" in error
    assert price_errors("objective=cost", "deploy=local", "deploy.gpu_type=h100_sxm") == []
    assert price_errors("objective=cost", "deploy.gpu_hour_usd=0") == [
        "deploy.gpu_hour_usd=0.0: a GPU price must be > 0 (USD per GPU-hour)."
    ]
    errors = validate_study(compose_cfg("objective=goodput", "objective.request_slo.ttft_ms=0"))
    assert errors == ["objective.request_slo.ttft_ms=0.0: a bound must be > 0 ms."]


def test_gpus_follow_each_runtimes_parallelism_flags(compose_cfg):
    vllm = compose_cfg("runtime=vllm")
    params = {"tensor-parallel-size": 2, "data-parallel-size": 2, "pipeline-parallel-size": 2}
    assert Deployment.from_config(vllm, params).gpus == 8
    sglang = compose_cfg()
    assert Deployment.from_config(sglang, {"tp-size": 4, "dp-size": 2}).gpus == 8
    # SGLang's attention data parallelism runs the dp ranks on the tp GPUs.
    assert (
        Deployment.from_config(
            sglang, {"tp-size": 4, "dp-size": 4, "enable-dp-attention": True}
        ).gpus
        == 4
    )
    assert Deployment.from_config(compose_cfg("runtime=vllm_cpu"), {}).gpus == 1


def test_a_goodput_slo_is_a_lower_bound():
    from autotune.objective import Objective

    obj = Objective(["output_throughput_tok_s"], ["maximize"], slo={"goodput_req_s": 4.0})
    assert obj.slack({"goodput_req_s": 5.0}) == {"goodput_req_s": 0.25}
    assert not obj.score({"output_throughput_tok_s": 1.0, "goodput_req_s": 3.0}).feasible
