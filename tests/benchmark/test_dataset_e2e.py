"""A dataset study end to end: real genai-bench sends a prompt file's entries to the
real-time simulated engine, which reuses the documents the prompts share (slow: ~1 min)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from study_runner import run_study, runs, study_env

pytestmark = pytest.mark.slow

DOCS, QUESTIONS = 3, 6


def shared_document_dataset(path: Path) -> list[str]:
    """Each prompt: one of a few long documents, then a question about it (RAG-like)."""
    prompts = []
    for d in range(DOCS):
        doc = " ".join(f"Section {d}.{i}: the archive keeps record {i * 7 + d}." for i in range(40))
        for q in range(QUESTIONS):
            prompts.append(f"{doc}\n\nQuestion {q}: what does section {d}.{q} keep?")
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in prompts))
    return prompts


def test_dataset_study_on_the_realtime_simulator(tmp_path):
    data = tmp_path / "docs.jsonl"
    prompts = shared_document_dataset(data)
    study = run_study(
        tmp_path,
        "benchmark=dataset",
        f"benchmark.dataset.path={data}",
        "benchmark.dataset.prompt_column=text",
        "benchmark.dataset.max_tokens=24",
        "benchmark.concurrency=[3]",
        "benchmark.max_requests_per_run=18",
        "benchmark.max_time_per_run_min=1",
        "benchmark.warmup_requests=0",
        "search=none",
        env=study_env(tmp_path),
        timeout=400,
    )
    assert study.returncode == 0, study.output[-4000:]
    study.assert_nothing_left()
    study.assert_loopback_only()
    _, trials = runs(tmp_path)
    assert (trials["tags.autotune.status"] == "ok").all()
    run_id = trials.iloc[0]["run_id"]
    # genai-bench ran in dataset mode on the file autotune wrote from the user's JSONL.
    meta = json.loads(study.artifact(run_id, "genai-bench/experiment_metadata.json"))
    assert meta["traffic_scenario"] == ["dataset"]
    sent = json.loads(Path(meta["dataset_path"]).read_text())
    assert sent == prompts
    result = next(
        json.loads(study.artifact(run_id, f"genai-bench/{name}"))
        for name in _artifact_names(tmp_path, run_id)
        if name.startswith("dataset_text-to-text_num_concurrency_3")
    )
    records = [r for r in result["individual_request_metrics"] if not r.get("error_code")]
    assert len(records) >= 12
    assert {r["num_output_tokens"] for r in records} == {24}  # benchmark.dataset.max_tokens
    # The engine saw the prompts' shared documents: later prefills reuse them.
    log = study.artifact(run_id, "logs/engine.log")
    cached = [int(n) for n in re.findall(r"#cached-token: (\d+)", log)]
    assert sum(cached) > 0.5 * sum(r["num_input_tokens"] for r in records), cached


def _artifact_names(tmp_path: Path, run_id: str) -> list[str]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return [Path(a.path).name for a in client.list_artifacts(run_id, "genai-bench")]
