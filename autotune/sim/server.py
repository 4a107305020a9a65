"""A real-time, OpenAI-compatible HTTP front for the simulated SGLang engine.

It is started like a real SGLang server, with SGLang's own flags, and behaves like
one on the wire and in its log, but the forward passes are simulated: an asyncio
loop asks the clock-free scheduler (``autotune.sim.types.Engine``) for one step at
a time, sleeps for the step's simulated duration on the real clock (absolute
deadlines, so the schedule does not drift) and then streams the step's token
events to the waiting HTTP handlers. The first token leaves exactly at the
simulated TTFT; the rest is streamed in a few coarse chunks (``--sim-max-chunks``)
so that two CPU cores keep up at high concurrency, and ``usage`` reports the
simulated token counts (genai-bench derives TPOT from e2e, TTFT and the count).

    python -m autotune.sim.server --model-path meta-llama/Llama-3.1-8B-Instruct \\
        --host 127.0.0.1 --port 30000 --enable-metrics --mem-fraction-static 0.8 \\
        --sim-model llama-3.1-8b --sim-gpu h200_sxm --sim-fault error-rate=0.05

Flags real SGLang accepts but the simulator does not model are accepted and listed
as ignored (log line and ``/get_server_info``); unknown flags fail like SGLang's
argparse (exit 2). Start-up failures the engine predicts (``SimStartupError``,
e.g. "Not enough memory. Please try to increase --mem-fraction-static.") are
printed as SGLang prints them and exit 1. The simulator's own options start with
``--sim-``; the fault knobs (``--sim-fault``) are described in
``autotune.sim.faults``.

Endpoints: POST /v1/chat/completions, /v1/completions (stream or not),
/flush_cache; GET /v1/models, /health, /health_generate, /get_server_info,
/server_info, /get_model_info, /model_info, /metrics (with --enable-metrics).

Timing: a request's simulated life starts when its handler is entered; prompts
are tokenised in a worker thread (the tokenizer releases the GIL) while the
engine's schedule goes on. When the CPU falls behind the schedule, steps run back
to back until it catches up (a warning is logged; beyond 1 s the clock is
re-synchronised instead). ``--log-requests`` logs each request's server-side
arrival, queueing, TTFT and e2e latency ("Finish: rid=..."), which lets the
real-time schedule be checked against the virtual clock fed the same arrivals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import re
import signal
import sys
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from autotune.sim.faults import (
    CUDA_GRAPH_TRACEBACK,
    OOM_TRACEBACK,
    SCHEDULER_CRASH,
    STARTUP_FAILURE_TRACEBACK,
    Faults,
    parse_faults,
)
from autotune.sim.types import Engine, EngineStats, SimRequest, SimStartupError, StepOutcome

logger = logging.getLogger("sglang.srt.entrypoints.http_server")
sched_logger = logging.getLogger("sglang.srt.managers.scheduler")

SIM_TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
SGLANG_VERSION = "0.5.5.post3"
READY_LINE = "The server is fired up and ready to roll!"
# Behind the simulated schedule (CPU busy), the loop runs steps back to back to
# catch up, so a burst of work does not shift later timings; beyond MAX_LAG_S the
# debt is dropped instead (the clock re-synchronised, timings stretched).
WARN_LAG_S = 0.05
MAX_LAG_S = 1.0
DEFAULT_MAX_TOKENS = 128  # the simulator has no EOS: an unset max_tokens generates this many
FILLER = " the"  # one simulated token of streamed text; its content does not matter

# ---------------------------------------------------------------------------
# Command line: SGLang 0.5.5.post3's flag names and types.
# ---------------------------------------------------------------------------

# Flags the HTTP front itself honours; every other flag given on the command line
# goes to ``build_engine``, which models it or lists it in ``ignored_flags``.
SERVER_FLAGS = frozenset(
    {
        "model_path",
        "tokenizer_path",
        "host",
        "port",
        "served_model_name",
        "enable_metrics",
        "enable_cache_report",
        "api_key",
        "decode_log_interval",
        "log_level",
        "skip_server_warmup",
        "weight_version",
        "log_requests",
    }
)

_SCHEDULE_POLICIES = ["lpm", "random", "fcfs", "dfs-weight", "lof", "priority"]
_KV_DTYPES = ["auto", "fp8_e5m2", "fp8_e4m3", "bf16", "bfloat16", "fp4_e2m1"]
_ATTN_BACKENDS = [
    "triton", "torch_native", "flex_attention", "nsa", "cutlass_mla", "fa3", "fa4",
    "flashinfer", "flashmla", "trtllm_mla", "trtllm_mha", "dual_chunk_flash_attn", "aiter",
    "wave", "intel_amx", "ascend", "intel_xpu",
]  # fmt: skip
_QUANTS = [
    "awq", "fp8", "gptq", "marlin", "gptq_marlin", "awq_marlin", "bitsandbytes", "gguf",
    "modelopt", "modelopt_fp8", "modelopt_fp4", "petit_nvfp4", "w8a8_int8", "w8a8_fp8",
    "moe_wna16", "qoq", "w4afp8", "mxfp4", "auto-round", "compressed-tensors",
]  # fmt: skip

# (flags, kind, default, extra argparse kwargs). kind: int|float|str|bool|list.
# Flags the simulator ignores are still declared: a real server accepts them, and
# they keep argparse's prefix matching as (un)ambiguous as in SGLang (--pp errors).
# fmt: off
_FLAGS: list[tuple[tuple[str, ...], str, Any, dict[str, Any]]] = [
    (("--model-path", "--model"), "str", None, {"required": True}),
    (("--tokenizer-path",), "str", None, {}),
    (("--tokenizer-mode",), "str", "auto", {"choices": ["auto", "slow"]}),
    (("--tokenizer-worker-num",), "int", 1, {}),
    (("--skip-tokenizer-init",), "bool", False, {}),
    (("--load-format",), "str", "auto", {}),
    (("--model-loader-extra-config",), "str", "{}", {}),
    (("--trust-remote-code",), "bool", False, {}),
    (("--context-length",), "int", None, {}),
    (("--is-embedding",), "bool", False, {}),
    (("--enable-multimodal",), "bool", None, {}),
    (("--revision",), "str", None, {}),
    (("--model-impl",), "str", "auto", {}),
    (("--host",), "str", "127.0.0.1", {}),
    (("--port",), "int", 30000, {}),
    (("--skip-server-warmup",), "bool", False, {}),
    (("--warmups",), "str", None, {}),
    (("--nccl-port",), "int", None, {}),
    (("--dtype",), "str", "auto", {"choices": ["auto", "half", "float16", "bfloat16", "float", "float32"]}),
    (("--quantization",), "str", None, {"choices": _QUANTS}),
    (("--quantization-param-path",), "str", None, {}),
    (("--kv-cache-dtype",), "str", "auto", {"choices": _KV_DTYPES}),
    (("--enable-fp32-lm-head",), "bool", False, {}),
    (("--mem-fraction-static",), "float", None, {}),
    (("--max-running-requests",), "int", None, {}),
    (("--max-queued-requests",), "int", None, {}),
    (("--max-total-tokens",), "int", None, {}),
    (("--chunked-prefill-size",), "int", None, {}),
    (("--max-prefill-tokens",), "int", 16384, {}),
    (("--schedule-policy",), "str", "fcfs", {"choices": _SCHEDULE_POLICIES}),
    (("--enable-priority-scheduling",), "bool", False, {}),
    (("--schedule-low-priority-values-first",), "bool", False, {}),
    (("--priority-scheduling-preemption-threshold",), "int", 10, {}),
    (("--schedule-conservativeness",), "float", 1.0, {}),
    (("--page-size",), "int", None, {}),
    (("--hybrid-kvcache-ratio",), "float", None, {}),
    (("--swa-full-tokens-ratio",), "float", 0.8, {}),
    (("--disable-hybrid-swa-memory",), "bool", False, {}),
    (("--radix-eviction-policy",), "str", "lru", {"choices": ["lru", "lfu"]}),
    (("--device",), "str", None, {}),
    (("--tp-size", "--tensor-parallel-size"), "int", 1, {}),
    (("--pp-size", "--pipeline-parallel-size"), "int", 1, {}),
    (("--pp-max-micro-batch-size",), "int", None, {}),
    (("--stream-interval",), "int", 1, {}),
    (("--stream-output",), "bool", False, {}),
    (("--random-seed",), "int", None, {}),
    (("--constrained-json-whitespace-pattern",), "str", None, {}),
    (("--watchdog-timeout",), "float", 300.0, {}),
    (("--dist-timeout",), "int", None, {}),
    (("--download-dir",), "str", None, {}),
    (("--base-gpu-id",), "int", 0, {}),
    (("--gpu-id-step",), "int", 1, {}),
    (("--sleep-on-idle",), "bool", False, {}),
    (("--log-level",), "str", "info", {}),
    (("--log-level-http",), "str", None, {}),
    (("--log-requests",), "bool", False, {}),
    (("--log-requests-level",), "int", 2, {"choices": [0, 1, 2, 3]}),
    (("--crash-dump-folder",), "str", None, {}),
    (("--show-time-cost",), "bool", False, {}),
    (("--enable-metrics",), "bool", False, {}),
    (("--enable-metrics-for-all-schedulers",), "bool", False, {}),
    (("--tokenizer-metrics-custom-labels-header",), "str", "x-custom-labels", {}),
    (("--bucket-time-to-first-token",), "list_float", None, {}),
    (("--bucket-inter-token-latency",), "list_float", None, {}),
    (("--bucket-e2e-request-latency",), "list_float", None, {}),
    (("--collect-tokens-histogram",), "bool", False, {}),
    (("--decode-log-interval",), "int", 40, {}),
    (("--enable-request-time-stats-logging",), "bool", False, {}),
    (("--kv-events-config",), "str", None, {}),
    (("--enable-trace",), "bool", False, {}),
    (("--otlp-traces-endpoint",), "str", "localhost:4317", {}),
    (("--api-key",), "str", None, {}),
    (("--served-model-name",), "str", None, {}),
    (("--weight-version",), "str", "default", {}),
    (("--chat-template",), "str", None, {}),
    (("--completion-template",), "str", None, {}),
    (("--file-storage-path",), "str", "sglang_storage", {}),
    (("--enable-cache-report",), "bool", False, {}),
    (("--reasoning-parser",), "str", None, {}),
    (("--tool-call-parser",), "str", None, {}),
    (("--tool-server",), "str", None, {}),
    (("--sampling-defaults",), "str", "model", {"choices": ["openai", "model"]}),
    (("--dp-size", "--data-parallel-size"), "int", 1, {}),
    (("--load-balance-method",), "str", "round_robin", {}),
    (("--dist-init-addr", "--nccl-init-addr"), "str", None, {}),
    (("--nnodes",), "int", 1, {}),
    (("--node-rank",), "int", 0, {}),
    (("--json-model-override-args",), "str", "{}", {}),
    (("--preferred-sampling-params",), "str", None, {}),
    (("--enable-lora",), "bool", None, {}),
    (("--max-lora-rank",), "int", None, {}),
    (("--lora-target-modules",), "list_str", None, {}),
    (("--lora-paths",), "list_str", None, {}),
    (("--max-loras-per-batch",), "int", 8, {}),
    (("--max-loaded-loras",), "int", None, {}),
    (("--lora-backend",), "str", "triton", {}),
    (("--attention-backend",), "str", None, {"choices": _ATTN_BACKENDS}),
    (("--prefill-attention-backend",), "str", None, {"choices": _ATTN_BACKENDS}),
    (("--decode-attention-backend",), "str", None, {"choices": _ATTN_BACKENDS}),
    (("--sampling-backend",), "str", None, {"choices": ["flashinfer", "pytorch"]}),
    (("--grammar-backend",), "str", None, {}),
    (("--mm-attention-backend",), "str", None, {}),
    (("--speculative-algorithm",), "str", None, {"choices": ["EAGLE", "EAGLE3", "NEXTN", "STANDALONE", "NGRAM"]}),
    (("--speculative-draft-model-path", "--speculative-draft-model"), "str", None, {}),
    (("--speculative-draft-model-revision",), "str", None, {}),
    (("--speculative-num-steps",), "int", None, {}),
    (("--speculative-eagle-topk",), "int", None, {}),
    (("--speculative-num-draft-tokens",), "int", None, {}),
    (("--speculative-accept-threshold-single",), "float", 1.0, {}),
    (("--speculative-accept-threshold-acc",), "float", 1.0, {}),
    (("--speculative-token-map",), "str", None, {}),
    (("--speculative-attention-mode",), "str", "prefill", {"choices": ["prefill", "decode"]}),
    (("--ep-size", "--expert-parallel-size", "--ep"), "int", 1, {}),
    (("--moe-a2a-backend",), "str", "none", {}),
    (("--moe-runner-backend",), "str", "auto", {}),
    (("--enable-eplb",), "bool", False, {}),
    (("--ep-num-redundant-experts",), "int", 0, {}),
    (("--enable-hierarchical-cache",), "bool", False, {}),
    (("--hicache-ratio",), "float", 2.0, {}),
    (("--hicache-size",), "int", 0, {}),
    (("--hicache-write-policy",), "str", "write_through", {}),
    (("--hicache-io-backend",), "str", "kernel", {}),
    (("--hicache-storage-backend",), "str", None, {}),
    (("--cpu-offload-gb",), "int", 0, {}),
    (("--offload-group-size",), "int", -1, {}),
    (("--disable-radix-cache",), "bool", False, {}),
    (("--cuda-graph-max-bs",), "int", None, {}),
    (("--cuda-graph-bs",), "list_int", None, {}),
    (("--disable-cuda-graph",), "bool", False, {}),
    (("--disable-cuda-graph-padding",), "bool", False, {}),
    (("--enable-profile-cuda-graph",), "bool", False, {}),
    (("--enable-cudagraph-gc",), "bool", False, {}),
    (("--enable-nccl-nvls",), "bool", False, {}),
    (("--enable-symm-mem",), "bool", False, {}),
    (("--enable-tokenizer-batch-encode",), "bool", False, {}),
    (("--disable-outlines-disk-cache",), "bool", False, {}),
    (("--disable-custom-all-reduce",), "bool", False, {}),
    (("--enable-mscclpp",), "bool", False, {}),
    (("--disable-overlap-schedule",), "bool", False, {}),
    (("--enable-mixed-chunk",), "bool", False, {}),
    (("--enable-dp-attention",), "bool", False, {}),
    (("--enable-dp-lm-head",), "bool", False, {}),
    (("--enable-two-batch-overlap",), "bool", False, {}),
    (("--enable-torch-compile",), "bool", False, {}),
    (("--torch-compile-max-bs",), "int", 32, {}),
    (("--torchao-config",), "str", "", {}),
    (("--enable-nan-detection",), "bool", False, {}),
    (("--enable-p2p-check",), "bool", False, {}),
    (("--triton-attention-reduce-in-fp32",), "bool", False, {}),
    (("--triton-attention-num-kv-splits",), "int", 8, {}),
    (("--num-continuous-decode-steps",), "int", 1, {}),
    (("--delete-ckpt-after-loading",), "bool", False, {}),
    (("--enable-memory-saver",), "bool", False, {}),
    (("--allow-auto-truncate",), "bool", False, {}),
    (("--enable-custom-logit-processor",), "bool", False, {}),
    (("--disable-shared-experts-fusion",), "bool", False, {}),
    (("--disable-chunked-prefix-cache",), "bool", False, {}),
    (("--disable-fast-image-processor",), "bool", False, {}),
    (("--enable-return-hidden-states",), "bool", False, {}),
    (("--scheduler-recv-interval",), "int", 1, {}),
    (("--numa-node",), "list_int", None, {}),
    (("--enable-deterministic-inference",), "bool", False, {}),
    (("--debug-tensor-dump-output-folder",), "str", None, {}),
    (("--disaggregation-mode",), "str", "null", {"choices": ["null", "prefill", "decode"]}),
    (("--disaggregation-transfer-backend",), "str", "mooncake", {}),
    (("--disaggregation-bootstrap-port",), "int", 8998, {}),
    (("--disaggregation-ib-device",), "str", None, {}),
    (("--num-reserved-decode-tokens",), "int", 512, {}),
    (("--custom-weight-loader",), "list_str", None, {}),
    (("--weight-loader-disable-mmap",), "bool", False, {}),
    (("--config",), "str", None, {}),
]
# fmt: on


def build_parser(*, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """SGLang's argparse front (prog ``launch_server.py``) plus the ``--sim-*`` options.

    ``suppress_defaults`` leaves unset options out of the namespace, which tells which
    flags were given explicitly.

        >>> build_parser().parse_args(["--model-path", "m", "--mem-frac", "0.7"]).mem_fraction_static
        0.7
    """
    p = argparse.ArgumentParser(prog="launch_server.py")
    for names, kind, default, extra in _FLAGS:
        kw: dict[str, Any] = dict(extra)
        if suppress_defaults:
            kw.pop("required", None)
            kw["default"] = argparse.SUPPRESS
        else:
            kw.setdefault("default", default)
        if kind == "bool":
            kw["action"] = "store_true"
        elif kind.startswith("list_"):
            kw["nargs"] = "+"
            kw["type"] = {"int": int, "float": float, "str": str}[kind[5:]]
        else:
            kw["type"] = {"int": int, "float": float, "str": str}[kind]
        p.add_argument(*names, **kw)
    sim = p.add_argument_group("simulator (autotune.sim)")

    def simarg(*names: str, **kw: Any) -> None:
        if suppress_defaults:
            kw["default"] = argparse.SUPPRESS
        sim.add_argument(*names, **kw)

    simarg("--sim-model", default="llama-3.1-8b", help="simulated model profile")
    simarg("--sim-gpu", default="h200_sxm", help="simulated GPU (h200_sxm, h100_sxm, ...)")
    simarg("--sim-dtype", default="bf16", choices=["bf16", "fp8"], help="weight/compute dtype")
    simarg("--sim-seed", type=int, default=0, help="seed of the simulator's randomness")
    simarg("--sim-noise", type=float, default=0.0, help="run-to-run noise (autotune.sim.noise)")
    simarg("--sim-noise-key", default="", help="seed key of this deployment's noise")
    simarg("--sim-startup-s", type=float, default=1.0, help="simulated load time (seconds)")
    simarg("--sim-max-chunks", type=int, default=4, help="streamed chunks per response (>=2)")
    simarg(
        "--sim-fault",
        action="append",
        default=[] if not suppress_defaults else argparse.SUPPRESS,
        help="fault knob, repeatable (see autotune.sim.faults)",
    )
    return p


def explicit_flags(argv: list[str]) -> set[str]:
    """ServerArgs field names given on the command line (defaults excluded)."""
    ns, _ = build_parser(suppress_defaults=True).parse_known_args(argv)
    return set(vars(ns))


def engine_flags(args: argparse.Namespace, given: set[str]) -> dict[str, Any]:
    """The explicitly given flags (SGLang's dash names) for ``build_engine``.

    >>> engine_flags(build_parser().parse_args(["--model", "m", "--tp", "2"]), {"model_path", "tp_size"})
    {'tp-size': 2}
    """
    return {
        name.replace("_", "-"): getattr(args, name)
        for name in sorted(given)
        if not name.startswith("sim_") and name not in SERVER_FLAGS
    }


# ---------------------------------------------------------------------------
# Prompt token counting
# ---------------------------------------------------------------------------


class PromptCounter:
    """Counts prompt tokens like SGLang's tokenizer manager (chat template for chat).

    >>> pc = PromptCounter(SIM_TOKENIZER_DIR)
    >>> pc.count_chat([{"role": "user", "content": "hi"}]) > pc.count_text("hi")
    True
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        cfg: dict[str, Any] = {}
        if (path / "tokenizer_config.json").exists():
            cfg = json.loads((path / "tokenizer_config.json").read_text())
        self.model_max_length = cfg.get("model_max_length")
        self._encode = self._load_encoder(path)
        template = None
        if (path / "chat_template.jinja").exists():
            template = (path / "chat_template.jinja").read_text()
        elif isinstance(cfg.get("chat_template"), str):
            template = cfg["chat_template"]
        elif isinstance(cfg.get("chat_template"), list):
            named = {t.get("name"): t.get("template") for t in cfg["chat_template"]}
            template = named.get("default") or next(iter(named.values()), None)
        self._template = None
        self._special = {k: _token_text(cfg.get(k)) for k in ("bos_token", "eos_token")}
        if template:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.filters["tojson"] = lambda x, **kw: json.dumps(x, **kw)
            env.globals["raise_exception"] = _raise_template_error
            self._template = env.from_string(template)

    @staticmethod
    def _load_encoder(path: Path):
        if (path / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path / "tokenizer.json"))
            return lambda text, special: len(tok.encode(text, add_special_tokens=special).ids)
        from transformers import AutoTokenizer  # slow import: only for non-"fast" tokenizer dirs

        hf = AutoTokenizer.from_pretrained(str(path))
        return lambda text, special: len(hf.encode(text, add_special_tokens=special))

    def count_text(self, text: str) -> int:
        return self._encode(text, True)

    def count_chat(self, messages: list[dict[str, Any]]) -> int:
        msgs = [{**m, "content": _content_text(m.get("content"))} for m in messages]
        if self._template is None:
            return self._encode("\n".join(m["content"] for m in msgs), True)
        text = self._template.render(messages=msgs, add_generation_prompt=True, **self._special)
        return self._encode(text, False)


def _token_text(tok: Any) -> str:
    if isinstance(tok, dict):
        return str(tok.get("content", ""))
    return tok or ""


def _raise_template_error(msg: str) -> None:
    raise ValueError(msg)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class _Req:
    """One in-flight request: the driver updates it, its HTTP handler waits on it."""

    __slots__ = (
        "rid",
        "prompt_tokens",
        "output_len",
        "created",
        "t_start",
        "t_first",
        "t_queued",
        "tokens",
        "cached",
        "finished",
        "aborted",
        "next_emit",
        "event",
    )

    def __init__(self, rid: str, prompt_tokens: int, output_len: int, t_start: float) -> None:
        self.rid = rid
        self.prompt_tokens = prompt_tokens
        self.output_len = output_len
        self.created = int(time.time())
        self.t_start = t_start
        self.t_first = 0.0
        self.t_queued = t_start
        self.tokens = 0
        self.cached = 0
        self.finished = False
        self.aborted = False
        self.next_emit = 1  # wake the handler when this many tokens exist
        self.event = asyncio.Event()


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _error_response(status: int, message: str, kind: str) -> web.Response:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status)


def _chunk_bounds(n: int, max_chunks: int) -> list[int]:
    """Token counts after which a chunk is streamed: 1, then evenly up to ``n``.

    >>> _chunk_bounds(128, 5)
    [1, 32, 64, 96, 128]
    """
    if n <= 1:
        return [n]
    k = max(1, min(max_chunks - 1, n - 1))
    return [1] + sorted({max(2, math.ceil(n * i / k)) for i in range(1, k + 1)})


class SimServer:
    """Owns the engine, the driver loop and the HTTP routes of one simulated server."""

    def __init__(self, args: argparse.Namespace, given: set[str], faults: Faults) -> None:
        self.args = args
        self.given = given
        self.faults = faults
        self.served_name = args.served_model_name or args.model_path
        self.engine: Engine | None = None
        self.engine_info: dict[str, Any] = {}
        self.ready = False
        self.stopping = False
        self.counter = PromptCounter(_tokenizer_dir(args))
        self.context_len = args.context_length or self.counter.model_max_length or 131072
        self._reqs: dict[str, _Req] = {}
        self._wake = asyncio.Event()
        self._max_arrival = 0.0
        self._t0 = 0.0
        self._rng = random.Random(args.sim_seed)
        self._num_gen_requests = 0
        self._decode_steps = 0
        self._driver: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenizer")
        self._retracted_seen = 0
        self._last_lag_log = -1e9
        self.metrics = None
        if args.enable_metrics:
            from autotune.sim.metrics import SimMetrics

            self.metrics = SimMetrics(self.served_name)

    # -- engine clock ------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _add(self, req: _Req) -> None:
        assert self.engine is not None
        self._reqs[req.rid] = req
        # Stamped at the handler's entry: parsing and tokenising overlap the
        # simulated schedule instead of delaying it (see drive()).
        arrival = req.t_start - self._t0
        req.t_queued = time.monotonic()
        self.engine.add(
            SimRequest(
                rid=req.rid,
                input_len=req.prompt_tokens,
                output_len=req.output_len,
                arrival=arrival,
            )
        )
        self._max_arrival = max(self._max_arrival, arrival)
        self._wake.set()

    def _abort(self, req: _Req) -> None:
        if self._reqs.pop(req.rid, None) is not None and self.engine is not None:
            self.engine.abort(req.rid)
            if self.metrics:
                self.metrics.on_request_aborted(
                    prompt_tokens=req.prompt_tokens, output_tokens=req.tokens
                )

    async def drive(self) -> None:
        """Step the engine on absolute deadlines of the real clock; deliver events at step end.

        ``vnow`` is the engine's clock (seconds since start). Each step ends at
        ``t0 + vnow``; oversleeping one step shortens the next sleep, so timer
        jitter does not accumulate. The mean lateness of the event loop's timer
        (~1 ms: epoll rounds up to whole milliseconds) is learnt and slept off
        early. A step never starts before the arrival of a request already queued
        (arrival = the handler's entry, so parsing and tokenising overlap the step
        in flight); an idle engine restarts at the waking request's arrival.
        """
        assert self.engine is not None
        engine = self.engine
        vnow = 0.0
        late = 0.0  # moving average of how late the timer fires (s)
        while True:
            if not engine.has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            # Causality: behind schedule (catching up), a step must not serve a request
            # before it arrived; this drops the part of the debt its arrival overlaps.
            vnow = max(vnow, self._max_arrival)
            real = self._now()
            lag = real - vnow
            if lag > WARN_LAG_S and vnow > 0 and real - self._last_lag_log > 10.0:
                self._last_lag_log = real
                sched_logger.warning(
                    "Simulator fell behind real time by %.0f ms (CPU overloaded); %s.",
                    lag * 1e3,
                    "timings are stretched" if lag > MAX_LAG_S else "catching up",
                )
            if lag > MAX_LAG_S:
                vnow = real
            out = engine.step(vnow)
            vnow += out.duration_s
            target = self._t0 + vnow
            delay = target - time.monotonic() - late
            if delay > 0:
                await asyncio.sleep(delay)
                late = min(0.003, max(0.0, late + 0.1 * (time.monotonic() - target)))
            else:  # behind schedule: still let the handlers run between steps
                await asyncio.sleep(0.001 if out.duration_s <= 0 and not out.events else 0)
            self._deliver(out)
            if out.events:
                await asyncio.sleep(0)  # let the woken handlers write before we log
            self._log_step(out)

    def _deliver(self, out: StepOutcome) -> None:
        reqs = self._reqs
        for ev in out.events:
            req = reqs.get(ev.rid)
            if req is None:
                continue
            kind = ev.kind
            if ev.output_tokens > req.tokens:
                req.tokens = ev.output_tokens
            if kind == "first_token":
                req.cached = ev.cached_tokens
                req.event.set()
            elif kind == "tokens":
                if req.tokens >= req.next_emit:
                    req.event.set()
            elif kind == "finished":
                req.finished = True
                reqs.pop(ev.rid, None)
                req.event.set()
            elif kind == "aborted":
                req.aborted = True
                reqs.pop(ev.rid, None)
                req.event.set()

    def _log_step(self, out: StepOutcome) -> None:
        kind = out.kind
        retracted = getattr(self.engine, "num_retracted_total", None)
        if retracted is None or retracted > self._retracted_seen:  # cheap check per step
            self._check_retraction(self._stats())
        if kind in ("prefill", "mixed"):
            st = self._stats()
            sched_logger.info(
                "Prefill batch, #new-seq: %d, #new-token: %d, #cached-token: %d, token usage: %.2f, "
                "#running-req: %d, #queue-req: %d",
                out.new_seqs,
                out.new_tokens,
                out.cached_tokens,
                st.token_usage,
                st.num_running_reqs,
                st.num_queue_reqs,
            )
        if kind in ("decode", "mixed"):
            self._decode_steps += 1
            if self._decode_steps % max(1, self.args.decode_log_interval) == 0:
                st = self._stats()
                sched_logger.info(
                    "Decode batch, #running-req: %d, #token: %d, token usage: %.2f, cuda graph: %s, "
                    "gen throughput (token/s): %.2f, #queue-req: %d",
                    st.num_running_reqs,
                    st.num_used_tokens,
                    st.token_usage,
                    st.is_cuda_graph,
                    st.gen_throughput,
                    st.num_queue_reqs,
                )

    def _check_retraction(self, st: EngineStats) -> None:
        if st.num_retracted_reqs_total > self._retracted_seen:
            n = st.num_retracted_reqs_total - self._retracted_seen
            self._retracted_seen = st.num_retracted_reqs_total
            sched_logger.warning(
                "KV cache pool is full. Retract requests. #retracted_reqs: %d, #new_token_ratio: %.4f",
                n,
                st.new_token_ratio,
            )

    def _stats(self) -> EngineStats:
        return self.engine.stats() if self.engine is not None else EngineStats()

    # -- HTTP --------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_post("/v1/completions", self.completions)
        r.add_get("/v1/models", self.models)
        r.add_get("/health", self.health)
        r.add_get("/health_generate", self.health_generate)
        for path in ("/get_server_info", "/server_info"):
            r.add_get(path, self.server_info)
        for path in ("/get_model_info", "/model_info"):
            r.add_get(path, self.model_info)
        r.add_route("*", "/flush_cache", self.flush_cache)
        if self.args.enable_metrics:
            r.add_get("/metrics", self.prom_metrics)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        key = self.args.api_key
        if (
            key
            and not request.path.startswith(("/health", "/metrics"))
            and request.headers.get("Authorization", "") != f"Bearer {key}"
        ):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready and not self.stopping else 503)

    async def health_generate(self, request: web.Request) -> web.Response:
        if not self.ready or self.stopping:
            return web.Response(status=503)
        req = _Req(f"HEALTH_CHECK_{uuid.uuid4().hex}", 1, 1, time.monotonic())
        req.next_emit = 1 << 62
        if not self.faults.no_tokens:
            self._add(req)
        timeout = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))
        try:
            await asyncio.wait_for(req.event.wait(), timeout)
            while not req.finished:
                req.event.clear()
                await asyncio.wait_for(req.event.wait(), timeout)
            return web.Response(status=200)
        except TimeoutError:
            logger.error(
                "Health check failed. Server couldn't get a response from detokenizer for last %d seconds.",
                int(timeout),
            )
            return web.Response(status=503)
        finally:
            self._reqs.pop(req.rid, None)

    async def models(self, request: web.Request) -> web.Response:
        card = {
            "id": self.served_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "sglang",
            "root": self.served_name,
            "max_model_len": self.context_len,
        }
        return web.json_response({"object": "list", "data": [card]})

    def server_info_dict(self) -> dict[str, Any]:
        """All ServerArgs, overlaid with the engine's effective settings (SGLang's keys)."""
        info = {k: v for k, v in vars(self.args).items() if not k.startswith("sim_")}
        info.update(self.engine_info)
        info["model_path"] = self.args.model_path
        info["served_model_name"] = self.served_name
        info["tokenizer_path"] = str(_tokenizer_dir(self.args))
        info["api_key"] = None  # never echoed
        if self.engine is not None:
            states = self.engine_info.get("internal_states") or [{}]
            info["internal_states"] = [{**states[0], **asdict(self.engine.stats())}]
        info.setdefault("version", f"{SGLANG_VERSION} (simulated)")
        info["simulated"] = True
        info["sim_model"] = self.args.sim_model
        info["sim_gpu"] = self.args.sim_gpu
        info["sim_dtype"] = self.args.sim_dtype
        info["sim_seed"] = self.args.sim_seed
        info["sim_faults"] = self.faults.describe()
        info.setdefault("ignored_flags", [])
        return info

    async def server_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.server_info_dict(), dumps=_dumps_default_str)

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_path": self.args.model_path,
                "tokenizer_path": str(_tokenizer_dir(self.args)),
                "served_model_name": self.served_name,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": self.args.weight_version,
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "simulated": True,
            }
        )

    async def flush_cache(self, request: web.Request) -> web.Response:
        flush = getattr(self.engine, "flush_cache", None)
        if callable(flush):
            flush()
        return web.Response(
            text="Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n"
        )

    async def prom_metrics(self, request: web.Request) -> web.Response:
        from autotune.sim.metrics import CONTENT_TYPE

        assert self.metrics is not None
        body = self.metrics.render(self._stats())
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        t_start = time.monotonic()
        if not self.ready or self.stopping:
            return _error_response(503, "The server is not ready.", "ServiceUnavailableError")
        self._num_gen_requests += 1
        kill_after = self.faults.kill_after_requests
        if kill_after is not None and self._num_gen_requests > kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.faults.error_rate and self._rng.random() < self.faults.error_rate:
            return _error_response(
                500,
                f"Internal server error (simulated fault error-rate={self.faults.error_rate:g})",
                "InternalServerError",
            )
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise _HTTPError(400, "The request body must be a JSON object.")
            # Tokenising releases the GIL: off the event loop, the steps stay on time.
            prompt_tokens = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._count_prompt, body, chat
            )
            output_len = self._output_len(body, prompt_tokens)
        except _HTTPError as err:
            return _error_response(err.status, str(err), err.kind)
        except (ValueError, TypeError) as err:
            return _error_response(400, f"Invalid request: {err}", "BadRequestError")

        req = _Req(uuid.uuid4().hex, prompt_tokens, output_len, t_start)
        stream = bool(body.get("stream"))
        if not stream:
            req.next_emit = 1 << 62  # only the finish matters
        if not self.faults.no_tokens:
            self._add(req)
        try:
            if stream:
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await self._stream(request, req, chat, usage)
            return await self._respond(req, chat)
        finally:
            if not req.finished:
                self._abort(req)  # client went away (handler cancelled) or engine aborted

    def _count_prompt(self, body: dict[str, Any], chat: bool) -> int:
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _HTTPError(400, "messages must be a non-empty list.")
            return self.counter.count_chat(messages)
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) == 1 and isinstance(prompt[0], (str, list)):
                prompt = prompt[0]
            elif prompt and all(isinstance(t, int) for t in prompt):
                return len(prompt)
            else:
                raise _HTTPError(400, "Batched prompts are not supported by the simulator.")
        if isinstance(prompt, list):
            return len(prompt)
        if not isinstance(prompt, str):
            raise _HTTPError(400, "prompt must be a string or a list of token ids.")
        return self.counter.count_text(prompt)

    def _output_len(self, body: dict[str, Any], prompt_tokens: int) -> int:
        if (body.get("n") or 1) != 1:
            raise _HTTPError(400, "n > 1 is not supported by the simulator.")
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = min(DEFAULT_MAX_TOKENS, max(1, self.context_len - prompt_tokens))
        max_tokens = int(max_tokens)
        if max_tokens < 1:
            raise _HTTPError(400, "max_tokens must be at least 1.")
        if prompt_tokens >= self.context_len:
            raise _HTTPError(
                400,
                f"The input ({prompt_tokens} tokens) is longer than the model's context length "
                f"({self.context_len} tokens).",
            )
        if prompt_tokens + max_tokens >= self.context_len:
            raise _HTTPError(
                400,
                f"Requested token count exceeds the model's maximum context length of "
                f"{self.context_len} tokens. You requested a total of {prompt_tokens + max_tokens} "
                f"tokens: {prompt_tokens} tokens from the input messages and {max_tokens} tokens "
                f"for the completion. Please reduce the number of tokens in the input messages or "
                f"the completion to fit within the limit.",
            )
        # The scheduler cannot hold a prompt larger than the KV pool (SGLang aborts it).
        pool = int(self.engine_info.get("max_total_num_tokens") or 0)
        if pool and prompt_tokens > min(self.context_len, pool) - 6:
            raise _HTTPError(
                400,
                f"Input length ({prompt_tokens} tokens) exceeds the maximum allowed length "
                f"({min(self.context_len, pool) - 6} tokens). Use a shorter input or enable "
                f"--allow-auto-truncate.",
            )
        return max_tokens

    def _usage(self, req: _Req) -> dict[str, Any]:
        return {
            "prompt_tokens": req.prompt_tokens,
            "total_tokens": req.prompt_tokens + req.tokens,
            "completion_tokens": req.tokens,
            "prompt_tokens_details": {"cached_tokens": req.cached}
            if self.args.enable_cache_report
            else None,
            "reasoning_tokens": 0,
        }

    async def _stream(
        self, request: web.Request, req: _Req, chat: bool, include_usage: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        model = json.dumps(self.served_name)
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = f'data: {{"id":"{req.rid}","object":"{obj}","created":{req.created},"model":{model},"choices":['
        bounds = _chunk_bounds(req.output_len, max(2, self.args.sim_max_chunks))
        sent = 0
        last_t = 0.0
        metrics = self.metrics
        while True:
            await req.event.wait()
            req.event.clear()
            if req.aborted:
                err = {
                    "error": {
                        "message": "The request was aborted.",
                        "type": "InternalServerError",
                        "code": 500,
                    }
                }
                await resp.write(f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n".encode())
                return resp
            n = req.tokens
            while bounds and bounds[0] <= n:
                bounds.pop(0)
            req.next_emit = bounds[0] if bounds else req.output_len
            if n <= sent and not req.finished:
                continue
            now = time.monotonic()
            finish = '"length"' if req.finished else "null"
            text = FILLER * (n - sent)
            if chat:
                role = '"role":"assistant",' if sent == 0 else ""
                choice = f'{{"index":0,"delta":{{{role}"content":"{text}"}},"logprobs":null,"finish_reason":{finish},"matched_stop":null}}'
            else:
                choice = f'{{"index":0,"text":"{text}","logprobs":null,"finish_reason":{finish},"matched_stop":null}}'
            out = f'{head}{choice}],"usage":null}}\n\n'
            if sent == 0:
                req.t_first = now
            if metrics is not None:
                if sent == 0:
                    metrics.on_first_token(now - req.t_start)
                else:
                    metrics.on_chunk(now - last_t, n - sent)
            sent, last_t = n, now
            if req.finished:
                if include_usage:
                    out += f'{head}],"usage":{json.dumps(self._usage(req))}}}\n\n'
                out += "data: [DONE]\n\n"
                self._on_finished(req, now)
                await resp.write(out.encode())
                return resp
            await resp.write(out.encode())

    async def _respond(self, req: _Req, chat: bool) -> web.Response:
        while not req.finished:
            await req.event.wait()
            req.event.clear()
            if req.aborted:
                return _error_response(500, "The request was aborted.", "InternalServerError")
        now = time.monotonic()
        if self.metrics is not None:
            # Not streamed: no TTFT/ITL samples beyond what the client sees (the whole answer).
            self.metrics.on_first_token(now - req.t_start)
        self._on_finished(req, now)
        text = FILLER * req.tokens
        if chat:
            choice = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": None,
                    "tool_calls": None,
                },
                "logprobs": None,
                "finish_reason": "length",
                "matched_stop": None,
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": "length",
                "matched_stop": None,
            }
            obj = "text_completion"
        body = {
            "id": req.rid,
            "object": obj,
            "created": req.created,
            "model": self.served_name,
            "choices": [choice],
            "usage": self._usage(req),
        }
        return web.json_response(body)

    def _on_finished(self, req: _Req, now: float) -> None:
        if self.args.log_requests:
            logger.info(
                "Finish: rid=%s, prompt_tokens=%d, completion_tokens=%d, cached_tokens=%d, "
                "arrival=%.4f, queued=%.4f, ttft=%.4f, e2e_latency=%.4f",
                req.rid,
                req.prompt_tokens,
                req.tokens,
                req.cached,
                req.t_start - self._t0,
                req.t_queued - self._t0,
                (req.t_first or now) - req.t_start,
                now - req.t_start,
            )
        if self.metrics is not None:
            self.metrics.on_request_finished(
                prompt_tokens=req.prompt_tokens,
                output_tokens=req.tokens,
                cached_tokens=req.cached,
                e2e_s=now - req.t_start,
            )

    # -- start-up ----------------------------------------------------------

    async def start_up(self) -> None:
        """Simulated model load with SGLang's log milestones; sets ``ready`` at the end."""
        a = self.args
        f = self.faults
        total_s = max(0.0, a.sim_startup_s)
        built = await asyncio.to_thread(_build, a, self.given)
        mem = _MemoryLog(a, built if isinstance(built, tuple) else None)
        logger.info("Load weight begin. avail mem=%.2f GB", mem.total - mem.context)
        await asyncio.sleep(0.4 * total_s)
        if f.fail_start == "oom":
            free = 0.4
            _fatal(
                OOM_TRACEBACK.format(alloc=2.0, total=mem.total, free=free, used=mem.total - free)
            )
        logger.info(
            "Load weight end. type=%s, dtype=%s, avail mem=%.2f GB, mem usage=%.2f GB.",
            _architecture(a.sim_model),
            "torch.float8_e4m3fn" if a.sim_dtype == "fp8" else "torch.bfloat16",
            mem.total - mem.context - mem.weights,
            mem.weights,
        )
        if not isinstance(built, tuple):
            _fatal(_startup_failure_text(built))
        self.engine, info = built
        self.engine_info = info
        self._driver = asyncio.create_task(self.drive())
        self.context_len = int(
            info.get("context_length") or info.get("context_len") or self.context_len
        )
        if info.get("ignored_flags"):
            logger.warning(
                "The simulator does not model these flags (accepted, ignored): %s",
                ", ".join(
                    f"--{k}={a.__dict__.get(k.replace('-', '_'))}" for k in info["ignored_flags"]
                ),
            )
        logger.info(
            "KV Cache is allocated. #tokens: %d, K size: %.2f GB, V size: %.2f GB",
            mem.kv_tokens,
            mem.kv / 2,
            mem.kv / 2,
        )
        logger.info("Memory pool end. avail mem=%.2f GB", mem.after_pool)
        graphs = not info.get("disable_cuda_graph", a.disable_cuda_graph)
        if graphs or f.hang_start:
            logger.info(
                "Capture cuda graph begin. This can take up to several minutes. avail mem=%.2f GB",
                mem.after_pool,
            )
        if f.hang_start:
            return  # never ready: /health stays 503
        if f.fail_start == "cuda-graph":
            await asyncio.sleep(0.2 * total_s)
            _fatal("Scheduler hit an exception: " + CUDA_GRAPH_TRACEBACK)
        await asyncio.sleep(0.3 * total_s)
        if graphs:
            logger.info(
                "Capture cuda graph end. Time elapsed: %.2f s. mem usage=%.2f GB. avail mem=%.2f GB.",
                0.3 * total_s,
                mem.graphs,
                mem.available,
            )
        sched_logger.info(
            "max_total_num_tokens=%s, chunked_prefill_size=%s, max_prefill_tokens=%s, "
            "max_running_requests=%s, context_len=%s, available_gpu_mem=%.2f GB",
            info.get("max_total_num_tokens"),
            info.get("chunked_prefill_size"),
            info.get("max_prefill_tokens"),
            info.get("max_running_requests"),
            self.context_len,
            mem.available,
        )
        logger.info("INFO:     Started server process [%d]", os.getpid())
        logger.info("INFO:     Waiting for application startup.")
        logger.info("INFO:     Application startup complete.")
        logger.info(
            "INFO:     Uvicorn running on http://%s:%d (Press CTRL+C to quit)", a.host, a.port
        )
        if not a.skip_server_warmup:
            t_warm = time.monotonic()
            if not f.no_tokens:
                await self._warm_up()
            await asyncio.sleep(max(0.0, 0.3 * total_s - (time.monotonic() - t_warm)))
            logger.info('INFO:     127.0.0.1:0 - "POST /generate HTTP/1.1" 200 OK')
        self.ready = True
        logger.info(READY_LINE)
        if f.crash_after_s is not None:
            asyncio.get_running_loop().call_later(f.crash_after_s, self._crash)

    async def _warm_up(self) -> None:
        """Like SGLang's warm-up request: one short generation through the whole path."""
        prompt = self.counter.count_chat(
            [{"role": "user", "content": "The capital city of France is"}]
        )
        req = _Req(f"WARMUP_{uuid.uuid4().hex}", prompt, 8, time.monotonic())
        req.next_emit = 1 << 62
        self._add(req)
        while not (req.finished or req.aborted):
            await req.event.wait()
            req.event.clear()

    def _crash(self) -> None:
        assert self.faults.crash_after_s is not None
        sched_logger.error(SCHEDULER_CRASH.format(after=self.faults.crash_after_s).rstrip())
        logger.error("Received sigquit from a child process. It usually means the child failed.")
        _exit_now(1)


def _dumps_default_str(obj: Any) -> str:
    return json.dumps(obj, default=str)


def _tokenizer_dir(args: argparse.Namespace) -> Path:
    if args.tokenizer_path:
        return Path(args.tokenizer_path)
    model_dir = Path(args.model_path)
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        return model_dir
    return SIM_TOKENIZER_DIR


def _build(args: argparse.Namespace, given: set[str]) -> tuple[Engine, dict[str, Any]] | Exception:
    """Build the engine now; a start-up failure is returned, to be raised at SGLang's moment."""
    from autotune.sim.noise import noise_for
    from autotune.sim.settings import build_engine

    try:
        engine = build_engine(
            engine_flags(args, given),
            model=args.sim_model,
            gpu=args.sim_gpu,
            dtype=args.sim_dtype,
            seed=args.sim_seed,
            noise=noise_for(args.sim_noise, args.sim_noise_key),
        )
    except (SimStartupError, ValueError) as err:
        return err
    return engine, dict(engine.server_info())


class _MemoryLog:
    """GPU memory figures (GiB) for the start-up log lines, from the baked profile."""

    def __init__(
        self, args: argparse.Namespace, built: tuple[Engine, dict[str, Any]] | None
    ) -> None:
        info = built[1] if built else {}
        tp = int(info.get("tp_size") or args.tp_size or 1)
        try:
            from autotune.sim.perf import load_profile

            mem = load_profile(args.sim_model, args.sim_gpu, args.sim_dtype, tp)["memory"]
        except (ImportError, ValueError, KeyError, OSError):
            mem = {}
        gib = float(1 << 30)
        self.total = mem.get("gpu_mem_bytes", 80 * gib) / gib
        self.context = 0.5  # CUDA context and NCCL before the weights load
        self.weights = mem.get("weights_bytes", 16 * gib) / gib
        kv_per_token = mem.get("kv_bytes_per_token", 131072)
        if str(info.get("kv_cache_dtype", "auto")).startswith("fp8"):
            kv_per_token /= 2
        self.kv_tokens = int(info.get("max_total_num_tokens") or 0)
        self.kv = self.kv_tokens * kv_per_token / gib
        self.after_pool = max(0.1, self.total - self.context - self.weights - self.kv)
        graph_bs = int(info.get("cuda_graph_max_bs") or 0)
        self.graphs = 0.0 if info.get("disable_cuda_graph") else graph_bs * 2 / 1024
        self.available = max(0.1, self.after_pool - self.graphs)


def _architecture(sim_model: str) -> str:
    for prefix, arch in (("qwen3", "Qwen3ForCausalLM"), ("qwen2", "Qwen2ForCausalLM")):
        if sim_model.lower().startswith(prefix):
            return arch
    return "LlamaForCausalLM"


def _startup_failure_text(err: Exception) -> str:
    """SGLang's scheduler traceback for a start-up failure; the last line names the error."""
    msg = str(err)
    if not isinstance(err, SimStartupError):
        # An unknown profile (ValueError): SGLang fails like this on an unknown model.
        last = f"ValueError: {msg}"
    elif msg.startswith("Capture cuda graph failed"):
        last = f"Exception: {msg}"
    elif re.match(r"^[\w.]+(Error|Exception): ", msg):
        last = msg  # already names its exception type (torch.OutOfMemoryError, AssertionError)
    else:
        last = f"RuntimeError: {msg}"
    return STARTUP_FAILURE_TRACEBACK.format(last=last)


def _fatal(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    _exit_now(1)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def configure_logging(level: str = "info") -> None:
    """SGLang's log format: ``[2026-11-29 08:00:00] msg`` (scheduler lines ``... TP0] msg``)."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    datefmt = "%Y-%m-%d %H:%M:%S"
    for lg, fmt in (
        (logger, "[%(asctime)s] %(message)s"),
        (sched_logger, "[%(asctime)s TP0] %(message)s"),
    ):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
        lg.handlers[:] = [handler]
        lg.setLevel(lvl)
        lg.propagate = False


async def serve(args: argparse.Namespace, given: set[str], faults: Faults) -> int:
    """Run one simulated server until SIGTERM/SIGINT; returns the exit code."""
    server = SimServer(args, given, faults)
    server._t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        server.app(),
        access_log=None,
        handle_signals=False,
        handler_cancellation=True,
        shutdown_timeout=0.2,
    )
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
    try:
        await site.start()
    except OSError as err:
        logger.error(
            "ERROR:    [Errno %s] error while attempting to bind on address (%r, %d): %s",
            err.errno,
            args.host,
            args.port,
            err.strerror,
        )
        return 1
    startup = asyncio.create_task(server.start_up())
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait({startup, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if startup.done() and startup.exception() is not None:
        err = startup.exception()
        sys.stderr.write("".join(traceback.format_exception(err)))
        code = 1
    elif not stop.is_set():
        await stop_wait
    server.stopping = True
    logger.info("INFO:     Shutting down")
    for task in (startup, stop_wait, server._driver):
        if task is not None:
            task.cancel()
    await runner.cleanup()
    logger.info("INFO:     Finished server process [%d]", os.getpid())
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m autotune.sim.server <SGLang flags> [--sim-* options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # unknown/ambiguous flags: exit 2, as SGLang
    try:
        faults = parse_faults(args.sim_fault)
    except ValueError as err:
        parser.error(str(err))
    if faults.fail_start == "bad-flag":
        parser.error("ambiguous option: --pp could match --pp-size, --pp-max-micro-batch-size")
    given = explicit_flags(argv)
    configure_logging(args.log_level)
    logger.warning(
        "SIMULATED SGLang server (autotune.sim): no GPU, no weights. model profile=%s, gpu=%s, "
        "dtype=%s, seed=%s. Timing comes from measured SGLang kernel data; results are simulated.",
        args.sim_model,
        args.sim_gpu,
        args.sim_dtype,
        args.sim_seed,
    )
    shown = {k: v for k, v in vars(args).items() if not k.startswith("sim_") and k != "api_key"}
    logger.info("server_args=ServerArgs(%s)", ", ".join(f"{k}={v!r}" for k, v in shown.items()))
    if faults.describe():
        logger.warning("Simulated faults enabled: %s", ", ".join(faults.describe()))
    return asyncio.run(serve(args, given, faults))


if __name__ == "__main__":
    sys.exit(main())
