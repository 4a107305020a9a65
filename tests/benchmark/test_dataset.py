"""Prompt datasets: formats, errors that name the file, line and fix, genai-bench options,
the workload checks run before a study deploys, and the virtual clock's replay."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import autotune.benchmark.dataset
import autotune.benchmark.workload_checks
from autotune.benchmark.dataset import DatasetError, load_prompts, resolve_path
from autotune.benchmark.genai_bench import Workload, build_command
from autotune.benchmark.parse import parse_experiment
from autotune.benchmark.virtual import run_virtual
from autotune.benchmark.workload_checks import check_workload
from autotune.sim.prompt_tokens import SIM_TOKENIZER_DIR, PromptCounter

SAMPLE = "pkg://autotune.benchmark/datasets/chat.jsonl"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_sample_loads():
    prompts = load_prompts(SAMPLE)
    assert len(prompts) == 120 and all(p.strip() for p in prompts)
    assert resolve_path(SAMPLE).name == "chat.jsonl"


@pytest.mark.parametrize(
    ("name", "text", "kw"),
    [
        ("a.jsonl", '{"q": "one"}\n\n"two"\n', {"prompt_column": "q"}),
        ("a.csv", 'id,text\n1,one\n2,"tw\no"\n', {"prompt_column": "text"}),
        ("a.json", '["one", {"prompt": "two"}]', {}),
        ("a.txt", "one\n\ntwo\n", {}),
        (
            "a.json",
            json.dumps(
                [
                    {"conversations": [{"from": "human", "value": "one"}, {"from": "gpt"}]},
                    {
                        "conversations": [
                            {"from": "system", "value": "s"},
                            {"from": "human", "value": "two"},
                        ]
                    },
                ]
            ),
            {},
        ),
    ],
)
def test_formats(tmp_path, name, text, kw):
    prompts = load_prompts(write(tmp_path, name, text), **kw)
    assert prompts == ["one", "tw\no" if name == "a.csv" else "two"]  # newlines kept


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("d.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n', "d.jsonl line 2: not JSON"),
        ("d.jsonl", '{"prompt": "a"}\n{"text": "b"}\n', "line 2: no 'prompt' key (keys: text)"),
        ("d.jsonl", '{"prompt": "a"}\n{"prompt": 3}\n', "line 2: 'prompt' is a int, not text"),
        ("d.jsonl", '{"prompt": " "}\n', "line 1: the prompt is empty"),
        (
            "d.csv",
            "id,text\n1,a\n",
            "d.csv line 1: no 'prompt' column in the header (columns: id, text)",
        ),
        ("d.csv", "prompt,x\na,1\n,2\n", "d.csv line 3: the prompt is empty"),
        ("d.json", '[{"prompt": "a"}, {"p": "b"}]', "d.json entry 2: no 'prompt' key"),
        ("d.json", '{"prompt": "a"}', "expected a JSON list"),
        ("d.parquet", "x", "cannot tell the format from the extension '.parquet'"),
        ("d.jsonl", "", "no prompts"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path, name, text, message):
    with pytest.raises(
        DatasetError, match="prompt_column|format|remove|one JSON|list|at least|fill|text"
    ) as err:
        load_prompts(write(tmp_path, name, text))
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_missing_file_says_what_to_give(tmp_path):
    with pytest.raises(DatasetError, match="does not exist: set benchmark.dataset.path"):
        load_prompts(tmp_path / "nope.jsonl")


def test_genai_bench_gets_the_prompt_list_and_max_tokens(tmp_path):
    wl = Workload(["dataset"], [4], 16, 1, dataset_file=str(tmp_path / "p.json"), max_tokens=32)
    cmd = build_command("http://127.0.0.1:9", "m", "/tok", wl, tmp_path / "run", "k")
    assert cmd[cmd.index("--traffic-scenario") + 1] == "dataset"
    assert cmd[cmd.index("--dataset-path") + 1] == str(tmp_path / "p.json")
    assert json.loads(cmd[cmd.index("--additional-request-params") + 1]) == {"max_tokens": 32}
    assert cmd.index("--task") < cmd.index("--dataset-path")  # its callback reads --task
    prefix = Workload(["D(1024,64)"], [4], 16, 1, prefix_len=800)
    cmd = build_command("http://127.0.0.1:9", "m", "/tok", prefix, tmp_path / "run", "k")
    assert cmd[cmd.index("--prefix-len") + 1] == "800" and "--dataset-path" not in cmd
    with pytest.raises(ValueError, match="no shared prefix in dataset mode"):
        Workload(["dataset"], [4], 16, 1, dataset_file="p.json", prefix_len=8)


def bench(**kw):
    base = {
        "scenarios": ["D(1024,64)"],
        "prefix_len": 0,
        "prefix_ratio": 0.0,
        "dataset": {"path": None},
    }
    return OmegaConf.create({**base, **kw})


def test_workload_checks(tmp_path):
    assert check_workload(bench()) == []
    assert check_workload(bench(prefix_len=800)) == []
    assert check_workload(bench(prefix_ratio=0.5)) == []
    assert "longer than the shortest prompt" in check_workload(bench(prefix_len=2000))[0]
    assert "exclude each other" in check_workload(bench(prefix_len=8, prefix_ratio=0.5))[0]
    assert (
        "needs deterministic"
        in check_workload(bench(scenarios=["N(300,30)/(10,2)"], prefix_ratio=0.5))[0]
    )
    assert "needs benchmark.dataset.path" in check_workload(bench(scenarios=["dataset"]))[0]
    bad = write(tmp_path, "d.jsonl", '{"prompt": "a"}\n{oops}\n')
    errors = check_workload(bench(scenarios=["dataset"], dataset={"path": str(bad)}))
    assert errors == [
        f"benchmark.dataset: {bad} line 2: not JSON (Expecting property name enclosed in "
        "double quotes at column 2); one JSON object per line"
    ]
    errors = check_workload(bench(dataset={"path": SAMPLE}, prefix_len=8))
    assert "must be ['dataset']" in errors[0] and "do not apply to a dataset" in errors[1]


def test_the_virtual_clock_replays_the_prompts_tokenised(tmp_path):
    prompts = ["short question", "a much longer prompt " * 40]
    data = tmp_path / "prompts.json"
    data.write_text(json.dumps(prompts))
    counter = PromptCounter(SIM_TOKENIZER_DIR)
    lengths = {counter.count_chat([{"role": "user", "content": p}]) for p in prompts}
    sim = {"model": "llama-3.1-8b", "gpu": "h200_sxm", "dtype": "fp8", "flags": {}}
    wl = Workload(["dataset"], [2], 12, 1, dataset_file=str(data), max_tokens=16)
    parsed = parse_experiment(run_virtual(sim, wl, tmp_path / "out"))
    assert parsed.metrics()["num_completed_requests"] == 12
    raw = json.loads(next((tmp_path / "out").glob("dataset_*.json")).read_text())
    seen = {r["num_input_tokens"] for r in raw["individual_request_metrics"]}
    assert seen == lengths
    assert {r["num_output_tokens"] for r in raw["individual_request_metrics"]} == {16}


@pytest.mark.parametrize("module", [autotune.benchmark.dataset, autotune.benchmark.workload_checks])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_a_study_with_a_broken_dataset_stops_before_deploying(compose_cfg, tmp_path):
    from autotune.study.validation import validate_study

    assert validate_study(compose_cfg("benchmark=dataset")) == []
    bad = write(tmp_path, "p.jsonl", '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c",}\n')
    errors = validate_study(compose_cfg("benchmark=dataset", f"benchmark.dataset.path={bad}"))
    assert len(errors) == 1 and f"{bad} line 3: not JSON" in errors[0]
    errors = validate_study(compose_cfg("benchmark.prefix_len=2000"))  # quick: D(1024,256)
    assert (
        "benchmark.prefix_len=2000 is longer than the shortest prompt of D(1024,256)" in errors[0]
    )
