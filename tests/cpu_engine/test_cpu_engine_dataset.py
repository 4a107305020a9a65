"""A dataset study on a real engine: genai-bench sends the shipped sample's prompts to
vLLM's CPU build serving the tiny local model (slow: one engine start-up, ~2 min)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import pytest
from study_runner import CPU_ENGINE_STUDY, run_study, runs, study_env

from autotune.benchmark.dataset import load_prompts

pytestmark = [pytest.mark.slow, pytest.mark.cpu_engine]

SAMPLE = "pkg://autotune.benchmark/datasets/chat.jsonl"

# The tiny model's context is 1024 tokens of a 512-token vocabulary: the sample's
# shorter prompts (up to 1500 characters) fit with room for the answer.
MAX_CHARS = 1500
DATASET = [
    "benchmark=dataset",
    "benchmark.dataset.max_tokens=16",
    "benchmark.concurrency=[2]",
    "benchmark.max_requests_per_run=8",
    "benchmark.max_time_per_run_min=1",
    "benchmark.timeout_s=300",
]


def test_dataset_study_on_a_real_cpu_vllm(tmp_path, engine_python, tiny_model):
    # CPU_ENGINE_STUDY's scenario and levels are replaced by the dataset workload.
    base = [a for a in CPU_ENGINE_STUDY if not a.startswith("benchmark.")]
    prompts = [p for p in load_prompts(SAMPLE) if len(p) <= MAX_CHARS]
    data = tmp_path / "short.csv"
    with data.open("w", newline="") as f:  # a CSV this time: another of the formats
        writer = csv.writer(f)
        writer.writerow(["id", "question"])
        writer.writerows(enumerate(prompts))
    study = run_study(
        tmp_path,
        *base,
        *DATASET,
        f"benchmark.dataset.path={data}",
        "benchmark.dataset.prompt_column=question",
        env=study_env(tmp_path, AUTOTUNE_TINY_MODEL=str(tiny_model)),
        timeout=1200,
    )
    assert study.returncode == 0, study.output[-5000:]
    study.assert_nothing_left()
    _, trials = runs(tmp_path)
    assert (trials["tags.autotune.status"] == "ok").all(), study.output[-3000:]
    assert (trials["tags.autotune.runtime"] == "vllm-cpu").all()
    run_id = trials.iloc[0]["run_id"]
    meta = json.loads(study.artifact(run_id, "genai-bench/experiment_metadata.json"))
    assert meta["traffic_scenario"] == ["dataset"]
    assert json.loads(Path(meta["dataset_path"]).read_text()) == prompts
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    name = next(
        Path(a.path).name
        for a in client.list_artifacts(run_id, "genai-bench")
        if Path(a.path).name.startswith("dataset_text-to-text_num_concurrency_2")
    )
    result = json.loads(study.artifact(run_id, f"genai-bench/{name}"))
    agg = result["aggregated_metrics"]
    assert agg["num_completed_requests"] >= 4 and agg["num_error_requests"] == 0
    # vLLM honours the one max_tokens genai-bench sends (a random model rarely hits EOS).
    assert 1 <= agg["stats"]["num_output_tokens"]["max"] <= 16
    assert trials.iloc[0]["metrics.output_throughput_tok_s"] > 0
