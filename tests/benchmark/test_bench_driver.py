"""The genai-bench driver: command, environment, scrubbing, progress, process handling.

Process handling is tested against a stand-in "interpreter" that behaves like
genai-bench (prints its log lines, writes real run JSONs from the fixtures,
hangs or fails on request), so these tests take seconds; the real thing runs in
test_bench_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from autotune.benchmark.genai_bench import (
    CONSOLE_LOG,
    MASK,
    Workload,
    _Progress,
    benchmark_env,
    build_command,
    run_genai_bench,
    scrub_secrets,
)

KEY = "sk-test-0123456789abcdef"
URL = "http://127.0.0.1:30123"


def _workload(**kw) -> Workload:
    args = dict(
        scenarios=["D(64,32)"], concurrency=[1, 4], max_requests_per_run=12, max_time_per_run_min=2
    )
    args.update(kw)
    return Workload(**args)


# ---------------------------------------------------------------- command


def test_command_starts_with_the_option_order_genai_bench_needs(tmp_path):
    cmd = build_command(URL, "served", "/tok", _workload(), tmp_path / "run", KEY)
    assert cmd[:4] == [sys.executable, "-m", "autotune.benchmark.genai_bench_child", "benchmark"]
    with_reports = build_command(URL, "served", "/tok", _workload(), "/r", KEY, reports=True)
    assert with_reports[:4] == [sys.executable, "-m", "genai_bench.cli.cli", "benchmark"]
    # click callbacks read earlier options: backend, base, key, task come first.
    assert cmd[4:12] == [
        "--api-backend",
        "sglang",
        "--api-base",
        URL,
        "--api-key",
        KEY,
        "--task",
        "text-to-text",
    ]
    assert all(isinstance(a, str) for a in cmd)  # an argv list, never a shell string


def test_command_lists_minutes_folder_and_extra_args(tmp_path):
    wl = _workload(
        scenarios=["D(64, 32)", "N(100,10)/(50,5)"],
        max_time_per_run_min=3,
        additional_args=["--metrics-time-unit", "ms"],
    )
    out = tmp_path / "trial" / "bench"
    cmd = build_command(URL + "/", "served", Path("/tok"), wl, out, KEY)

    def values(opt):
        return [cmd[i + 1] for i, a in enumerate(cmd) if a == opt]

    assert values("--traffic-scenario") == ["D(64,32)", "N(100,10)/(50,5)"]
    assert values("--num-concurrency") == ["1", "4"]
    assert values("--max-requests-per-run") == ["12"]
    assert values("--max-time-per-run") == ["3"]  # minutes, as genai-bench wants
    assert values("--api-base") == [URL]
    assert values("--api-model-name") == ["served"]
    assert values("--model-tokenizer") == ["/tok"]
    assert values("--experiment-base-dir") == [str(out.parent)]
    assert values("--experiment-folder-name") == ["bench"]
    assert cmd[-2:] == ["--metrics-time-unit", "ms"]
    assert "--ignore-eos" not in " ".join(cmd)


def test_command_rejects_v1_and_empty_key(tmp_path):
    with pytest.raises(ValueError, match="/v1"):
        build_command(URL + "/v1", "m", "/tok", _workload(), tmp_path, KEY)
    with pytest.raises(ValueError, match="api_key"):
        build_command(URL, "m", "/tok", _workload(), tmp_path, "")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scenarios": ["D(10,10"]}, "D\\(10,10"),
        ({"scenarios": []}, "empty"),
        ({"scenarios": ["D(1,2)", "D(1, 2)"]}, "duplicates"),
        ({"concurrency": [0]}, "concurrency"),
        ({"concurrency": [1, 1]}, "duplicates"),
        ({"max_requests_per_run": 0}, "max_requests_per_run"),
        ({"max_time_per_run_min": 0.5}, "minutes"),
        ({"task": "text-to-embeddings"}, "text-to-text"),
        ({"additional_args": ["--api-key", "x"]}, "--api-key"),
        ({"additional_args": ["--num-concurrency=8"]}, "--num-concurrency"),
        ({"additional_args": ["--warmup-ratio", "0.1"]}, "halving throughput"),
        ({"additional_args": ["--upload-results"]}, "network"),
        (
            {"additional_args": ["--additional-request-params", '{"ignore_eos": false}']},
            "ignore_eos",
        ),
    ],
)
def test_workload_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _workload(**kwargs)


def test_workload_runs_in_genai_bench_order():
    wl = _workload(scenarios=["D(1,2)", "D(3,4)"], concurrency=[2, 1])
    assert wl.runs() == [("D(1,2)", 2), ("D(1,2)", 1), ("D(3,4)", 2), ("D(3,4)", 1)]


def test_env_is_offline_uiless_and_free_of_genai_bench_secrets():
    base = {
        "PATH": "/usr/bin",
        "MODEL_API_KEY": "leak1",
        "AWS_SECRET_ACCESS_KEY": "leak2",
        "GITHUB_TOKEN": "leak3",
        "NO_PROXY": "example.org",
        "ENABLE_UI": "true",
    }
    env = benchmark_env("http://10.1.2.3:8000", base)
    assert env["ENABLE_UI"] == "false"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["TRANSFORMERS_VERBOSITY"] == "error"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert not {"MODEL_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"} & env.keys()
    assert env["NO_PROXY"].split(",")[0] == "example.org"
    assert {"127.0.0.1", "localhost", "10.1.2.3"} <= set(env["no_proxy"].split(","))
    assert env["PATH"] == "/usr/bin"


# ---------------------------------------------------------------- scrubbing


def _all_bytes(folder: Path) -> bytes:
    out = b""
    for p in folder.rglob("*"):
        if p.is_file():
            out += p.read_bytes()
            if zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    out += b"".join(z.read(n) for n in z.namelist())
    return out


def test_scrub_secrets_everywhere(tmp_path):
    quoted = 'k"ey\\x'  # appears JSON-escaped inside JSON files
    (tmp_path / "experiment_metadata.json").write_text(
        json.dumps({"cmd": f"genai-bench --api-key {KEY} --x {quoted}"})
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "genai_bench.log").write_text(f"api_key: {KEY}\nok\n")
    (tmp_path / "clean.json").write_text("{}")
    with zipfile.ZipFile(tmp_path / "summary.xlsx", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/sharedStrings.xml", f"<t>{KEY}</t>" * 50)
        z.writestr("other.xml", "<t>nothing</t>")

    changed = scrub_secrets(tmp_path, [KEY, quoted, ""])

    assert sorted(p.name for p in changed) == [
        "experiment_metadata.json",
        "genai_bench.log",
        "summary.xlsx",
    ]
    blob = _all_bytes(tmp_path)
    assert KEY.encode() not in blob
    assert json.dumps(quoted)[1:-1].encode() not in blob
    meta = json.loads((tmp_path / "experiment_metadata.json").read_text())
    assert meta["cmd"] == f"genai-bench --api-key {MASK} --x {MASK}"
    with zipfile.ZipFile(tmp_path / "summary.xlsx") as z:
        assert z.read("other.xml") == b"<t>nothing</t>"
    assert scrub_secrets(tmp_path, [KEY]) == []  # idempotent
    assert scrub_secrets(tmp_path, []) == []


# ---------------------------------------------------------------- progress


def _progress_messages(workload: Workload, log: Path) -> list[str]:
    seen: list[str] = []
    progress = _Progress(workload, seen.append)
    for line in log.read_text().splitlines():
        progress.line(line)
    return seen


def test_progress_from_real_genai_bench_output(fixture_dir):
    log = fixture_dir("healthy_2level") / CONSOLE_LOG
    assert _progress_messages(_workload(), log) == ["benchmarking c1", "benchmarking c4"]


def test_progress_names_the_scenario_when_there_are_several(fixture_dir):
    wl = _workload(scenarios=["D(64,32)", "D(64,16)"], concurrency=[1, 2])
    log = fixture_dir("level_all_failed") / CONSOLE_LOG
    assert _progress_messages(wl, log) == [
        "benchmarking D(64,32) c1",
        "benchmarking D(64,32) c2",
        "benchmarking D(64,16) c1",
    ]


def test_a_failing_progress_callback_does_not_break_the_run():
    def boom(msg):
        raise RuntimeError(msg)

    progress = _Progress(_workload(), boom)
    progress.line("INFO - Starting benchmark with concurrency=1, spawn_rate=1")
    assert progress.started == 1


# ---------------------------------------------------------------- process handling

FAKE = r"""
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
assert args[:3] == ["-m", "autotune.benchmark.genai_bench_child", "benchmark"], args
opt = lambda name: args[args.index(name) + 1]
folder = os.path.join(opt("--experiment-base-dir"), opt("--experiment-folder-name"))
key, mode, src = opt("--api-key"), os.environ["FAKE_MODE"], os.environ["FAKE_SRC"]
assert os.environ["ENABLE_UI"] == "false" and not os.isatty(0)
print(f"INFO - api_key: {key}", flush=True)
meta = {"cmd": f"cli.py --api-key {key}", "traffic_scenario": ["D(64,32)"], "num_concurrency": [1, 4]}
json.dump(meta, open(os.path.join(folder, "experiment_metadata.json"), "w"))
open(os.path.join(folder, "genai_bench.log"), "w").write(f"INFO - api_key: {key}\n")
runs = sorted(f for f in os.listdir(src) if f.startswith("D64"))
print("INFO - Starting benchmark with concurrency=1, spawn_rate=1", flush=True)
open(os.path.join(folder, runs[0]), "w").write(open(os.path.join(src, runs[0])).read())
print("INFO - Starting benchmark with concurrency=4, spawn_rate=4", flush=True)
if mode in ("hang", "stubborn"):
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(os.path.join(folder, "helper.pid"), "w").write(str(helper.pid))
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(300)
if mode == "exit1":
    print("Traceback: ValueError: No values found for metric 'ttft'", file=sys.stderr, flush=True)
    sys.exit(1)
open(os.path.join(folder, runs[1]), "w").write(open(os.path.join(src, runs[1])).read())
"""


@pytest.fixture
def fake_python(tmp_path, monkeypatch, fixture_dir):
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n{FAKE}")
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_SRC", str(fixture_dir("healthy_2level")))

    def _mode(mode: str) -> str:
        monkeypatch.setenv("FAKE_MODE", mode)
        return str(script)

    return _mode


def _run(tmp_path, python, **kw):
    seen: list[str] = []
    kw.setdefault("timeout_s", 30)
    run = run_genai_bench(
        URL,
        "served",
        "/tok",
        _workload(),
        tmp_path / "out" / "bench",
        api_key=KEY,
        on_progress=seen.append,
        python=python,
        **kw,
    )
    return run, seen


def _assert_dead(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} survived")


def test_run_complete(tmp_path, fake_python):
    run, seen = _run(tmp_path, fake_python("ok"))
    assert run.ok and not run.partial and not run.timed_out
    assert run.returncode == 0
    assert seen == ["benchmarking c1", "benchmarking c4"]
    assert [p.name for p in run.run_files] == [
        "D64_32_text-to-text_num_concurrency_1_time_3s.json",
        "D64_32_text-to-text_num_concurrency_4_time_1s.json",
    ]
    assert run.missing_runs == []
    assert KEY not in " ".join(run.command) and MASK in run.command
    assert KEY.encode() not in _all_bytes(run.folder)
    assert f"api_key: {MASK}" in run.log_path.read_text()
    # genai_bench.log duplicates the console log: only one copy is kept.
    assert not (run.folder / "genai_bench.log").exists()


def test_run_exit_1_with_results_is_partial(tmp_path, fake_python):
    run, _ = _run(tmp_path, fake_python("exit1"))
    assert run.returncode == 1 and not run.ok and run.partial and not run.timed_out
    assert run.missing_runs == [("D(64,32)", 4)]
    assert "No values found" in run.log_tail(5)


def test_run_timeout_kills_the_group_and_keeps_partial_results(tmp_path, fake_python):
    started = time.monotonic()
    run, seen = _run(tmp_path, fake_python("hang"), timeout_s=1.5, grace_s=5)
    assert time.monotonic() - started < 5  # SIGTERM suffices: no grace wait
    assert run.timed_out and run.partial and not run.ok
    assert run.returncode == -15
    assert seen == ["benchmarking c1", "benchmarking c4"]
    assert [p.name for p in run.run_files] == ["D64_32_text-to-text_num_concurrency_1_time_3s.json"]
    _assert_dead(int((run.folder / "helper.pid").read_text()))
    assert KEY.encode() not in _all_bytes(run.folder)


def test_run_escalates_to_sigkill(tmp_path, fake_python):
    started = time.monotonic()
    run, _ = _run(tmp_path, fake_python("stubborn"), timeout_s=1, grace_s=0.5)
    assert 1.5 <= time.monotonic() - started < 5
    assert run.timed_out and run.returncode == -9 and run.partial
    _assert_dead(int((run.folder / "helper.pid").read_text()))


def test_run_refuses_a_folder_with_old_results(tmp_path, fake_python):
    out = tmp_path / "out" / "bench"
    out.mkdir(parents=True)
    shutil.copy(Path(os.environ["FAKE_SRC"]) / "experiment_metadata.json", out)
    with pytest.raises(FileExistsError):
        _run(tmp_path, fake_python("ok"))


def test_extra_secrets_are_masked_too(tmp_path, fake_python, monkeypatch):
    # The fake writes the key; pretend part of the key is also an HF token.
    run, _ = _run(tmp_path, fake_python("ok"), secrets=["0123456789abcdef"])
    blob = _all_bytes(run.folder)
    assert b"0123456789abcdef" not in blob and b"sk-test-" not in blob
