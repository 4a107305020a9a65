"""The simulated SGLang HTTP server, started as a child process like the tuner does.

Most tests use the real engine (``autotune.sim.settings.build_engine``); a few use
a tiny test double with known step times (``FakeEngine``, installed by
``install_fake_engine`` in the child) to check the real-time loop's timing exactly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
SIM_TOKENIZER = REPO / "autotune" / "sim" / "tokenizer"


# ---------------------------------------------------------------------------
# Test double: a clock-free engine with known step times (test-only).
# ---------------------------------------------------------------------------


class FakeEngine:
    """FCFS: one prefill step for everything waiting, then decode steps."""

    PREFILL_BASE = 0.010
    PREFILL_PER_TOKEN = 20e-6
    DECODE_BASE = 0.005
    DECODE_PER_REQ = 50e-6

    def __init__(self, flags: dict[str, Any]) -> None:
        from autotune.sim.types import EngineStats

        self._Stats = EngineStats
        self.flags = flags
        self.waiting: deque = deque()
        self.running: dict[str, list] = {}  # rid -> [req, generated]
        self.retracted = 0

    def add(self, req) -> None:
        self.waiting.append(req)

    def abort(self, rid: str) -> None:
        self.waiting = deque(r for r in self.waiting if r.rid != rid)
        self.running.pop(rid, None)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def step(self, now: float):
        from autotune.sim.types import StepOutcome, TokenEvent

        if self.waiting:
            batch = list(self.waiting)
            self.waiting.clear()
            tokens = sum(r.input_len for r in batch)
            dur = self.PREFILL_BASE + self.PREFILL_PER_TOKEN * tokens
            events = []
            for r in batch:
                if r.output_len <= 1:
                    events.append(TokenEvent(r.rid, "first_token", 1, now + dur))
                    events.append(TokenEvent(r.rid, "finished", 1, now + dur))
                else:
                    self.running[r.rid] = [r, 1]
                    events.append(TokenEvent(r.rid, "first_token", 1, now + dur))
            return StepOutcome(dur, events, "prefill", len(batch), tokens, 0)
        dur = self.DECODE_BASE + self.DECODE_PER_REQ * len(self.running)
        events = []
        for rid, entry in list(self.running.items()):
            entry[1] += 1
            if entry[1] >= entry[0].output_len:
                del self.running[rid]
                events.append(TokenEvent(rid, "finished", entry[1], now + dur))
            else:
                events.append(TokenEvent(rid, "tokens", entry[1], now + dur))
        return StepOutcome(dur, events, "decode")

    def stats(self):
        return self._Stats(
            num_running_reqs=len(self.running),
            num_queue_reqs=len(self.waiting),
            max_total_num_tokens=100_000,
        )

    def server_info(self) -> dict:
        return {
            "max_total_num_tokens": 100_000,
            "context_len": 8192,
            "max_running_requests": 256,
            "chunked_prefill_size": 8192,
            "max_prefill_tokens": 16384,
            "mem_fraction_static": self.flags.get("mem-fraction-static", 0.9),
            "schedule_policy": self.flags.get("schedule-policy", "fcfs"),
            "ignored_flags": sorted(
                set(self.flags) - {"mem-fraction-static", "schedule-policy", "tp-size"}
            ),
        }


def install_fake_engine() -> None:
    """Make ``autotune.sim.settings.build_engine`` return a FakeEngine (child process only)."""
    import types

    from autotune.sim.types import SimStartupError

    def build_engine(flags, *, model, gpu, dtype="bf16", seed=0, sglang_version=None, noise=None):
        if flags.get("mem-fraction-static", 0.9) < 0.2:
            raise SimStartupError(
                "Not enough memory. Please try to increase --mem-fraction-static. "
                f"Current value: self.server_args.mem_fraction_static={flags['mem-fraction-static']}"
            )
        return FakeEngine(flags)

    mod = types.ModuleType("autotune.sim.settings")
    mod.build_engine = build_engine
    sys.modules["autotune.sim.settings"] = mod


_FAKE_BOOT = (
    "import sys; sys.path.insert(0, {tests!r}); "
    "from test_server import install_fake_engine; install_fake_engine(); "
    "from autotune.sim.server import main; sys.exit(main())"
)


# SIM_SERVER_TESTS_FAKE=1 runs every server test against the double (debugging the server alone).
FORCE_FAKE = os.environ.get("SIM_SERVER_TESTS_FAKE") == "1"


def has_real_engine() -> bool:
    return FORCE_FAKE or (REPO / "autotune" / "sim" / "settings.py").exists()


# ---------------------------------------------------------------------------
# Harness: start / probe / stop a server process by its PID.
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port != 8443
    return port


class ServerProc:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log
        self.base = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return http("GET", self.base + path, timeout=timeout)

    def post(self, path: str, body: dict, timeout: float = 30.0) -> tuple[int, bytes]:
        return http("POST", self.base + path, body, timeout=timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}:\n{self.log()}"
            try:
                if self.get("/health", timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready after {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.log()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def http(
    method: str, url: str, body: dict | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def launch(
    tmp_path: Path, *flags: str, fake: bool = False, model: str = "meta-llama/Llama-3.1-8B-Instruct"
) -> ServerProc:
    port = free_port()
    argv = ["--model-path", model, "--host", "127.0.0.1", "--port", str(port), *flags]
    if "--sim-startup-s" not in flags:
        argv += ["--sim-startup-s", "0.3"]
    if fake or FORCE_FAKE:
        cmd = [PY, "-c", _FAKE_BOOT.format(tests=str(Path(__file__).parent)), *argv]
    else:
        cmd = [PY, "-m", "autotune.sim.server", *argv]
    log = tmp_path / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    return ServerProc(proc, port, log)


@pytest.fixture
def server_factory(tmp_path):
    started: list[ServerProc] = []

    def make(*flags: str, fake: bool = False, ready: bool = True, **kw: Any) -> ServerProc:
        srv = launch(tmp_path, *flags, fake=fake, **kw)
        started.append(srv)
        if ready:
            srv.wait_ready()
        return srv

    yield make
    for srv in started:
        srv.stop()


def sse_chunks(raw: bytes) -> list[Any]:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def count_tokens(text: str, special: bool) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(SIM_TOKENIZER / "tokenizer.json"))
    return len(tok.encode(text, add_special_tokens=special).ids)


def chat_prompt_tokens(messages: list[dict]) -> int:
    from jinja2 import Template

    cfg = json.loads((SIM_TOKENIZER / "tokenizer_config.json").read_text())
    text = Template((SIM_TOKENIZER / "chat_template.jinja").read_text()).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=cfg["bos_token"],
        eos_token=cfg["eos_token"],
    )
    return count_tokens(text, special=False)


# ---------------------------------------------------------------------------
# Fast unit tests (no server process)
# ---------------------------------------------------------------------------


def test_parser_prefixes_and_types():
    from autotune.sim.server_args import build_parser, engine_flags, explicit_flags

    p = build_parser()
    ns = p.parse_args(
        ["--model-path", "m", "--mem-frac", "0.7", "--tp", "2", "--enable-mixed-chunk"]
    )
    assert ns.mem_fraction_static == 0.7 and ns.tp_size == 2 and ns.enable_mixed_chunk is True
    assert ns.schedule_policy == "fcfs" and ns.decode_log_interval == 40
    argv = ["--model", "m", "--enable-lora", "--watchdog-timeout", "60", "--tp-size", "1"]
    given = explicit_flags(argv)
    assert given == {"model_path", "enable_lora", "watchdog_timeout", "tp_size"}
    flags = engine_flags(p.parse_args(argv), given)
    assert flags == {"enable-lora": True, "watchdog-timeout": 60.0, "tp-size": 1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pp", "2"], "ambiguous option: --pp could match"),
        (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
        (["--schedule-policy", "nope"], "argument --schedule-policy: invalid choice"),
        (["--sim-fault", "explode"], "invalid --sim-fault"),
        (["--sglang-version", "0.3.0"], "SGLang 0.3.0 is not simulated"),
    ],
)
def test_bad_flags_exit_2(argv, message, capsys):
    from autotune.sim.server import main

    with pytest.raises(SystemExit) as exc:
        main(["--model-path", "m", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_faults_parse():
    from autotune.sim.faults import parse_faults

    f = parse_faults(["crash-after=1.5", "hang-start", "fail-start=cuda-graph", "no-tokens",
                      "error-rate=0.25", "kill-after-requests=3"])  # fmt: skip
    assert (f.crash_after_s, f.hang_start, f.fail_start, f.no_tokens) == (
        1.5,
        True,
        "cuda-graph",
        True,
    )
    assert (f.error_rate, f.kill_after_requests) == (0.25, 3)
    assert "error-rate=0.25" in f.describe()
    for bad in ["error-rate=2", "fail-start=disk", "crash-after=x", "hang-start=1"]:
        with pytest.raises(ValueError):
            parse_faults([bad])


def test_chunk_bounds():
    from autotune.sim.http_api import chunk_bounds

    assert chunk_bounds(1, 6) == [1]
    assert chunk_bounds(2, 6) == [1, 2]
    assert chunk_bounds(128, 6) == [1, 26, 52, 77, 103, 128]
    assert len(chunk_bounds(10_000, 6)) == 6


def test_prompt_counter_matches_tokenizer():
    from autotune.sim.prompt_tokens import SIM_TOKENIZER_DIR, PromptCounter

    pc = PromptCounter(SIM_TOKENIZER_DIR)
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there, world"},
    ]
    assert pc.count_chat(msgs) == chat_prompt_tokens(msgs)
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello there, world"}]}]
    assert pc.count_chat(parts) == chat_prompt_tokens(
        [{"role": "user", "content": "hello there, world"}]
    )
    assert pc.count_text("hello world") == count_tokens("hello world", special=True)


def test_metrics_exposition_names():
    from autotune.sim.metrics import SimMetrics
    from autotune.sim.types import EngineStats

    m = SimMetrics("mod")
    m.on_first_token(0.05)
    m.on_chunk(0.1, 10)
    m.on_request_finished(prompt_tokens=10, output_tokens=5, cached_tokens=2, e2e_s=0.3)
    text = m.render(EngineStats(num_running_reqs=3, token_usage=0.5)).decode()
    assert (
        'sglang:num_running_reqs{engine_type="unified",model_name="mod",pp_rank="0",tp_rank="0"} 3.0'
        in text
    )
    assert 'sglang:prompt_tokens_total{model_name="mod"} 10.0' in text
    assert 'sglang:time_to_first_token_seconds_count{model_name="mod"} 1.0' in text


# ---------------------------------------------------------------------------
# Server process tests with the test double (exact timing)
# ---------------------------------------------------------------------------


def test_health_503_then_200_and_ready_line(server_factory):
    srv = server_factory("--sim-startup-s", "1.5", fake=True, ready=False)
    seen_503 = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            code = srv.get("/health", timeout=1)[0]
        except OSError:
            time.sleep(0.05)
            continue
        if code == 503:
            seen_503 = True
            assert "The server is fired up and ready to roll!" not in srv.log()
        if code == 200:
            break
        time.sleep(0.05)
    assert seen_503
    assert srv.get("/health")[0] == 200
    log = srv.log()
    assert "The server is fired up and ready to roll!" in log
    assert "SIMULATED" in log
    for milestone in (
        "Load weight end. type=",
        "Memory pool end. avail mem=",
        "max_total_num_tokens=100000, chunked_prefill_size=",
    ):
        assert milestone in log
    # SGLang's log format: [YYYY-mm-dd HH:MM:SS] message
    ready = next(line for line in log.splitlines() if "fired up" in line)
    assert ready.startswith("[") and ready.endswith(
        "] The server is fired up and ready to roll!"[-41:]
    )


def test_stream_first_token_at_ttft_fake(server_factory):
    """With known step times, the first chunk arrives at the simulated TTFT (± a few ms)."""
    srv = server_factory(fake=True)
    messages = [{"role": "user", "content": "word " * 400}]
    n_prompt = chat_prompt_tokens(messages)
    expected_ttft = 0.010 + 20e-6 * n_prompt
    expected_decode = 31 * (0.005 + 50e-6)
    import http.client

    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        body = json.dumps({"model": "x", "messages": messages, "max_tokens": 32, "stream": True,
                           "stream_options": {"include_usage": True}})  # fmt: skip
        t0 = time.monotonic()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        first = None
        while True:
            line = resp.fp.readline()
            if not line:
                break
            if line.startswith(b"data: {") and b'"content"' in line and first is None:
                first = time.monotonic() - t0
            if line.startswith(b"data: [DONE]"):
                break
        e2e = time.monotonic() - t0
        conn.close()
        assert first is not None
        # Never early; late only by scheduling noise (a loaded 2-core CI box can add
        # tens of ms): a server that ignored the step times would fail either bound.
        assert expected_ttft - 0.002 < first < expected_ttft + 0.040, (first, expected_ttft)
        decode = e2e - first
        assert expected_decode - 0.005 < decode < expected_decode + 0.040, (decode, expected_decode)


# ---------------------------------------------------------------------------
# Server process tests with the real engine
# ---------------------------------------------------------------------------

real_engine = pytest.mark.skipif(
    not has_real_engine(), reason="autotune.sim.settings not there yet"
)


def stream_chat(
    srv: ServerProc, messages: list[dict], max_tokens: int, usage: bool = True
) -> list[Any]:
    body = {"model": "x", "messages": messages, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": usage}, "temperature": 0.0, "ignore_eos": True}  # fmt: skip
    code, raw = srv.post("/v1/chat/completions", body)
    assert code == 200, raw
    return sse_chunks(raw)


@real_engine
def test_stream_chat_usage_and_chunks(server_factory):
    srv = server_factory("--served-model-name", "sim-llama", "--sim-max-chunks", "5")
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "tell me a story " * 40},
    ]
    chunks = stream_chat(srv, messages, max_tokens=100)
    assert chunks[-1] == "[DONE]"
    usage_chunk, content = chunks[-2], chunks[:-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == chat_prompt_tokens(messages)
    assert usage_chunk["usage"]["completion_tokens"] == 100
    assert usage_chunk["usage"]["total_tokens"] == 100 + chat_prompt_tokens(messages)
    assert 2 <= len(content) <= 5
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content[0]["choices"][0]["delta"]["content"]
    assert all(
        c["model"] == "sim-llama" and c["object"] == "chat.completion.chunk" for c in content
    )
    assert [c["choices"][0]["finish_reason"] for c in content] == [None] * (len(content) - 1) + [
        "length"
    ]
    # Without include_usage: no usage chunk.
    chunks = stream_chat(srv, messages, max_tokens=3, usage=False)
    assert chunks[-1] == "[DONE]" and chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"] for c in chunks[:-1])


@real_engine
def test_non_stream_and_completions(server_factory):
    srv = server_factory()
    code, raw = srv.post(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
    )
    body = json.loads(raw)
    assert code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 7
    assert body["usage"]["prompt_tokens"] == chat_prompt_tokens([{"role": "user", "content": "hi"}])

    prompt = "The quick brown fox jumps over the lazy dog. " * 10
    code, raw = srv.post("/v1/completions", {"prompt": prompt, "max_tokens": 12})
    body = json.loads(raw)
    assert code == 200 and body["object"] == "text_completion"
    assert body["usage"] == body["usage"] | {
        "prompt_tokens": count_tokens(prompt, True),
        "completion_tokens": 12,
    }
    code, raw = srv.post("/v1/completions", {"prompt": prompt, "max_tokens": 12, "stream": True,
                                             "stream_options": {"include_usage": True}})  # fmt: skip
    chunks = sse_chunks(raw)
    assert chunks[-2]["usage"]["completion_tokens"] == 12 and chunks[0]["choices"][0]["text"]
    code, raw = srv.post("/v1/completions", {"prompt": [1, 2, 3, 4], "max_tokens": 2})
    assert code == 200 and json.loads(raw)["usage"]["prompt_tokens"] == 4
    # Bad requests are answered like SGLang's OpenAI layer.
    code, raw = srv.post("/v1/chat/completions", {"messages": [], "max_tokens": 2})
    assert code == 400 and json.loads(raw)["object"] == "error"
    code, raw = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 10_000_000})
    assert code == 400 and b"maximum context length" in raw


@real_engine
def test_models_model_info_server_info(server_factory):
    srv = server_factory("--served-model-name", "sim-llama", "--mem-fraction-static", "0.8",
                         "--enable-lora", "--watchdog-timeout", "60", "--schedule-pol", "lpm")  # fmt: skip
    code, raw = srv.get("/v1/models")
    models = json.loads(raw)
    assert code == 200 and models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == "sim-llama" and card["root"] and card["max_model_len"] > 0
    info = json.loads(srv.get("/get_server_info")[1])
    assert info == json.loads(srv.get("/server_info")[1]) | {
        "internal_states": info["internal_states"]
    }
    assert info["simulated"] is True and info["version"]
    assert info["mem_fraction_static"] == 0.8 and info["schedule_policy"] == "lpm"
    assert info["ignored_flags"] == ["enable-lora", "watchdog-timeout"]
    assert info["sim_model"] == "llama-3.1-8b" and info["api_key"] is None
    assert info["max_total_num_tokens"] > 0
    assert "--enable-lora=True" in srv.log() and "--watchdog-timeout=60.0" in srv.log()
    mi = json.loads(srv.get("/get_model_info")[1])
    assert mi["model_path"] == "meta-llama/Llama-3.1-8B-Instruct" and mi["is_generation"] is True
    assert srv.get("/metrics")[0] == 404  # not mounted without --enable-metrics
    assert srv.get("/health_generate", timeout=10)[0] == 200


@real_engine
def test_metrics_endpoint(server_factory):
    srv = server_factory("--enable-metrics", "--served-model-name", "m1")
    stream_chat(srv, [{"role": "user", "content": "hello " * 20}], max_tokens=20)
    code, raw = srv.get("/metrics")
    text = raw.decode()
    assert code == 200
    for name in ("num_running_reqs", "num_queue_reqs", "num_used_tokens", "token_usage", "gen_throughput",
                 "cache_hit_rate", "num_retracted_reqs", "new_token_ratio", "is_cuda_graph",
                 "prompt_tokens_total", "generation_tokens_total", "cached_tokens_total",
                 "num_requests_total", "num_aborted_requests_total",
                 "time_to_first_token_seconds_bucket", "inter_token_latency_seconds_bucket",
                 "e2e_request_latency_seconds_bucket"):  # fmt: skip
        assert f"sglang:{name}" in text, name
    assert 'sglang:generation_tokens_total{model_name="m1"} 20.0' in text
    assert 'sglang:num_requests_total{model_name="m1"} 1.0' in text


@real_engine
def test_not_enough_memory_fails_startup(server_factory):
    srv = server_factory("--mem-fraction-static", "0.02", ready=False)
    assert srv.wait_exit(30) == 1
    log = srv.log()
    assert "Not enough memory. Please try to increase --mem-fraction-static." in log
    last = log.rstrip().splitlines()[-1]
    assert last.startswith("RuntimeError: Not enough memory."), last
    assert "fired up" not in log


def test_unknown_flag_exits_2(server_factory):
    srv = server_factory("--no-such-flag", "3", ready=False)
    assert srv.wait_exit(30) == 2
    assert "launch_server.py: error: unrecognized arguments: --no-such-flag 3" in srv.log()


@real_engine
def test_sigterm_stops_quickly_with_streams_in_flight(server_factory):
    import threading

    srv = server_factory()
    results: list[Any] = []

    def long_request() -> None:
        try:
            results.append(srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                    "max_tokens": 5000, "stream": True}, timeout=10))  # fmt: skip
        except Exception as err:  # noqa: BLE001 - the server goes away mid-stream
            results.append(err)

    threads = [threading.Thread(target=long_request) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.wait_exit(5)
    assert time.monotonic() - t0 < 1.0
    for t in threads:
        t.join(5)
    assert len(results) == 3


@real_engine
def test_client_disconnect_aborts(server_factory):
    import http.client

    srv = server_factory("--enable-metrics")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    body = json.dumps(
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000, "stream": True}
    )
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.readline().startswith(b"data: {")  # first token arrived
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = json.loads(srv.get("/get_server_info")[1])
        if info["internal_states"][0]["num_running_reqs"] == 0:
            break
        time.sleep(0.1)
    assert info["internal_states"][0]["num_running_reqs"] == 0
    assert (
        'sglang:num_aborted_requests_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0'
        in srv.get("/metrics")[1].decode()
    )


# -- fault knobs --------------------------------------------------------------


@real_engine
def test_fault_crash_after(server_factory):
    srv = server_factory("--sim-fault", "crash-after=0.5")
    assert srv.wait_exit(10) == 1
    log = srv.log()
    assert "Scheduler hit an exception" in log and "fired up" in log
    assert "Received sigquit from a child process" in log


@real_engine
def test_fault_hang_start(server_factory):
    srv = server_factory("--sim-fault", "hang-start", ready=False)
    time.sleep(2.0)
    assert srv.proc.poll() is None
    assert srv.get("/health")[0] == 503
    assert "fired up" not in srv.log() and "Load weight end" in srv.log()


@real_engine
@pytest.mark.parametrize(
    ("kind", "code", "text"),
    [
        ("oom", 1, "torch.OutOfMemoryError: CUDA out of memory."),
        ("cuda-graph", 1, "Capture cuda graph failed"),
        ("bad-flag", 2, "error: ambiguous option: --pp could match"),
    ],
)
def test_fault_fail_start(server_factory, kind, code, text):
    srv = server_factory("--sim-fault", f"fail-start={kind}", ready=False)
    assert srv.wait_exit(30) == code
    assert text in srv.log() and "fired up" not in srv.log()


@real_engine
def test_fault_no_tokens(server_factory):
    srv = server_factory("--sim-fault", "no-tokens")
    assert srv.get("/health")[0] == 200
    with pytest.raises(OSError):  # socket timeout: nothing ever streamed
        srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
                                          "stream": True}, timeout=1.5)  # fmt: skip


@real_engine
def test_fault_error_rate(server_factory):
    srv = server_factory("--sim-fault", "error-rate=0.5", "--sim-seed", "1")
    codes = [srv.post("/v1/completions", {"prompt": "x", "max_tokens": 1})[0] for _ in range(20)]
    assert set(codes) == {200, 500}
    assert 3 <= codes.count(500) <= 17
    srv = server_factory("--sim-fault", "error-rate=1")
    code, raw = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 1})
    assert code == 500 and b"error-rate" in raw


@real_engine
def test_fault_kill_after_requests(server_factory):
    srv = server_factory("--sim-fault", "kill-after-requests=2")
    for _ in range(2):
        assert srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200
    with pytest.raises(OSError):
        srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert srv.wait_exit(5) == -signal.SIGKILL


@real_engine
def test_api_key(server_factory):
    srv = server_factory("--api-key", "sekret")
    assert srv.get("/health")[0] == 200
    assert srv.get("/v1/models")[0] == 401
    req = urllib.request.Request(
        srv.base + "/v1/models", headers={"Authorization": "Bearer sekret"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


# ---------------------------------------------------------------------------
# genai-bench against the real-time server vs. the virtual clock (predict)
# ---------------------------------------------------------------------------


# TTFT well above what genai-bench's client adds per request on 2 cores (~5-12 ms):
# the comparison measures the simulator, not the client.
CROSSCHECK_WORKLOAD = dict(
    model="llama-3.1-70b", gpu="h100_sxm", dtype="bf16", tp=4, isl=2048, osl=256
)


@pytest.mark.slow
@real_engine
@pytest.mark.parametrize(
    ("concurrency", "num_requests", "ttft_tolerance"),
    [
        (1, 4, 0.10),
        (8, 32, 0.10),
        # Two rounds of 64 users. genai-bench's own client time on 2 cores adds 0.4-0.6 s
        # to each TTFT here (the server's own TTFT stays within 0.1 % of the virtual
        # clock): measured +4.6 %, +7.8 % and, once during a full CI run, +10.6 %.
        (64, 128, 0.15),
    ],
)
def test_genai_bench_matches_predict(tmp_path, concurrency, num_requests, ttft_tolerance):
    """genai-bench at concurrency 1, 8 and 64 against the real-time server reports
    TTFT and TPOT close to ``predict`` for the same workload (within 10 %, but for
    the client's own time at 64: ``python -m autotune.sim crosscheck``,
    docs/simulator.md). The server's own per-request timings equal the virtual clock
    fed with the same arrivals (the real-time loop reproduces the engine's schedule)."""
    from autotune.sim.crosscheck import crosscheck

    res = crosscheck(
        **CROSSCHECK_WORKLOAD,
        concurrency=concurrency,
        num_requests=num_requests,
        workdir=tmp_path,
    )
    print(json.dumps(res))
    assert res["errors"] == 0 and res["requests"] >= num_requests, res
    # The real-time loop's own sleeps on a loaded 2-core machine: server TTFT vs the
    # virtual clock measured -2.1, +1.1, +1.1 and -4.9 % at concurrency 8 in isolated
    # runs, -7.0 % once during a full local test run (2026-12-04).
    assert abs(res["server_ttft_err"]) <= 0.09, res
    assert abs(res["server_tpot_err"]) <= 0.05, res
    assert abs(res["ttft_err"]) <= ttft_tolerance, res
    assert abs(res["tpot_err"]) <= 0.10, res


@real_engine
def test_unknown_sim_model_exits_1(server_factory):
    srv = server_factory("--sim-model", "no-such-model", ready=False)
    assert srv.wait_exit(30) == 1
    assert "ValueError: unknown simulated model 'no-such-model'" in srv.log()


@real_engine
def test_prompt_larger_than_kv_pool_is_rejected(server_factory):
    srv = server_factory("--max-total-tokens", "1000", "--log-requests")
    info = json.loads(srv.get("/get_server_info")[1])
    assert info["max_total_num_tokens"] == 1000 and "max-total-tokens" not in info["ignored_flags"]
    code, raw = srv.post("/v1/completions", {"prompt": "hello " * 400, "max_tokens": 4})
    assert code == 400 and b"exceeds the maximum allowed length" in raw
    code, raw = srv.post("/v1/completions", {"prompt": "hello " * 100, "max_tokens": 4})
    assert code == 200 and json.loads(raw)["usage"]["completion_tokens"] == 4
    assert "Finish: rid=" in srv.log()


@real_engine
def test_moe_server_with_expert_parallelism_dp_attention_and_an_older_version(server_factory):
    srv = server_factory("--sim-model", "qwen3-235b-a22b", "--sim-dtype", "fp8", "--tp", "8",
                         "--ep-size", "8", "--enable-dp-attention", "--dp-size", "8",
                         "--sglang-version", "0.5.1.post1", model="Qwen/Qwen3-235B-A22B-FP8")  # fmt: skip
    info = json.loads(srv.get("/get_server_info")[1])
    assert (info["ep_size"], info["dp_size"], info["enable_dp_attention"]) == (8, 8, True)
    assert info["version"] == "0.5.1.post1 (simulated)" and info["ignored_flags"] == []
    # 0.5.1's rule on 143771 MiB: reserved (12 + 8/2) GiB + 4 GiB for dp-attention
    assert info["mem_fraction_static"] == 0.858
    code, raw = srv.post(
        "/v1/completions", {"model": "m", "prompt": "hello", "max_tokens": 4, "stream": False}
    )
    assert code == 200 and json.loads(raw)["usage"]["completion_tokens"] == 4
    assert "Qwen3MoeForCausalLM" in srv.log()
