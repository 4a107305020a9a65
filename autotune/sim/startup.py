"""The simulated server's start-up: SGLang's log milestones and the injected faults.

``start_up`` builds the engine (in a thread) while printing what a real SGLang
server prints while it loads (weights, KV pool, CUDA graphs, Uvicorn, warm-up, the
ready line), with GPU memory figures from the baked profile. A start-up failure the
engine predicts (``SimStartupError``) is printed as SGLang's scheduler traceback and
the process exits 1; the start-up faults of ``autotune.sim.faults`` (``fail-start``,
``hang-start``, ``crash-after``) strike at the moment a real server would fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from autotune.sim.driver import InFlight, RealTimeDriver
from autotune.sim.faults import (
    CUDA_GRAPH_TRACEBACK,
    OOM_TRACEBACK,
    SCHEDULER_CRASH,
    STARTUP_FAILURE_TRACEBACK,
)
from autotune.sim.server_args import engine_flags
from autotune.sim.types import Engine, SimStartupError

if TYPE_CHECKING:
    from autotune.sim.http_api import SimServer

logger = logging.getLogger("sglang.srt.entrypoints.http_server")
sched_logger = logging.getLogger("sglang.srt.managers.scheduler")

READY_LINE = "The server is fired up and ready to roll!"


async def start_up(server: SimServer) -> None:
    """Simulated model load with SGLang's log milestones; sets ``server.ready`` at the end."""
    a = server.args
    f = server.faults
    total_s = max(0.0, a.sim_startup_s)
    built = await asyncio.to_thread(_build, a, server.given)
    mem = _MemoryLog(a, built if isinstance(built, tuple) else None)
    logger.info("Load weight begin. avail mem=%.2f GB", mem.total - mem.context)
    await asyncio.sleep(0.4 * total_s)
    if f.fail_start == "oom":
        free = 0.4
        _fatal(OOM_TRACEBACK.format(alloc=2.0, total=mem.total, free=free, used=mem.total - free))
    logger.info(
        "Load weight end. type=%s, dtype=%s, avail mem=%.2f GB, mem usage=%.2f GB.",
        _architecture(a.sim_model),
        "torch.float8_e4m3fn" if a.sim_dtype == "fp8" else "torch.bfloat16",
        mem.total - mem.context - mem.weights,
        mem.weights,
    )
    if not isinstance(built, tuple):
        _fatal(_startup_failure_text(built))
    engine, info = built
    server.attach(RealTimeDriver(engine, server.t0, a.decode_log_interval), info)
    _log_ignored_flags(a, info)
    graphs = await _allocate_and_capture(server, mem, info, total_s)
    if graphs is None:
        return  # hang-start: never ready, /health stays 503
    _log_scheduler_ready(server, info, mem)
    if not a.skip_server_warmup:
        t_warm = time.monotonic()
        if not f.no_tokens:
            await _warm_up(server)
        await asyncio.sleep(max(0.0, 0.3 * total_s - (time.monotonic() - t_warm)))
        logger.info('INFO:     127.0.0.1:0 - "POST /generate HTTP/1.1" 200 OK')
    server.ready = True
    logger.info(READY_LINE)
    if f.crash_after_s is not None:
        asyncio.get_running_loop().call_later(f.crash_after_s, crash, f.crash_after_s)


def _log_ignored_flags(a: argparse.Namespace, info: dict[str, Any]) -> None:
    if info.get("ignored_flags"):
        logger.warning(
            "The simulator does not model these flags (accepted, ignored): %s",
            ", ".join(
                f"--{k}={a.__dict__.get(k.replace('-', '_'))}" for k in info["ignored_flags"]
            ),
        )


async def _allocate_and_capture(
    server: SimServer, mem: _MemoryLog, info: dict[str, Any], total_s: float
) -> bool | None:
    """KV pool and CUDA-graph milestones; whether graphs were captured, None on hang-start."""
    a, f = server.args, server.faults
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
        return None
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
    return graphs


def _log_scheduler_ready(server: SimServer, info: dict[str, Any], mem: _MemoryLog) -> None:
    a = server.args
    sched_logger.info(
        "max_total_num_tokens=%s, chunked_prefill_size=%s, max_prefill_tokens=%s, "
        "max_running_requests=%s, context_len=%s, available_gpu_mem=%.2f GB",
        info.get("max_total_num_tokens"),
        info.get("chunked_prefill_size"),
        info.get("max_prefill_tokens"),
        info.get("max_running_requests"),
        server.context_len,
        mem.available,
    )
    logger.info("INFO:     Started server process [%d]", os.getpid())
    logger.info("INFO:     Waiting for application startup.")
    logger.info("INFO:     Application startup complete.")
    logger.info("INFO:     Uvicorn running on http://%s:%d (Press CTRL+C to quit)", a.host, a.port)


async def _warm_up(server: SimServer) -> None:
    """Like SGLang's warm-up request: one short generation through the whole path."""
    prompt = server.counter.count_chat(
        [{"role": "user", "content": "The capital city of France is"}]
    )
    req = InFlight(f"WARMUP_{uuid.uuid4().hex}", prompt, 8, time.monotonic())
    req.next_emit = 1 << 62
    server.driver.add(req)
    while not (req.finished or req.aborted):
        await req.event.wait()
        req.event.clear()


def crash(after_s: float) -> None:
    """The ``crash-after`` fault: the scheduler dies as SGLang's does, the process exits 1."""
    sched_logger.error(SCHEDULER_CRASH.format(after=after_s).rstrip())
    logger.error("Received sigquit from a child process. It usually means the child failed.")
    exit_now(1)


def _build(args: argparse.Namespace, given: set[str]) -> tuple[Engine, dict[str, Any]] | Exception:
    """Build the engine now; a start-up failure is returned, to be raised at SGLang's moment."""
    from autotune.sim.calibration import parse_items
    from autotune.sim.noise import noise_for
    from autotune.sim.settings import build_engine

    try:
        calibration = parse_items(args.sim_calibration)
        # Only a changed calibration is passed: the stock engine is built as before.
        extra = {"calibration": calibration} if calibration.changed() else {}
        engine = build_engine(
            engine_flags(args, given),
            model=args.sim_model,
            gpu=args.sim_gpu,
            dtype=args.sim_dtype,
            seed=args.sim_seed,
            sglang_version=args.sim_sglang_version,
            noise=noise_for(args.sim_noise, args.sim_noise_key),
            **extra,
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
            from autotune.sim.perf import load_profile, profile_layout

            prof = load_profile(args.sim_model, args.sim_gpu, args.sim_dtype, tp)
            mem = profile_layout(prof, info.get("moe_layout") or "")["memory"]
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
    known = (
        ("deepseek", "DeepseekV3ForCausalLM"),
        ("qwen3-235b", "Qwen3MoeForCausalLM"),
        ("qwen3", "Qwen3ForCausalLM"),
        ("qwen2", "Qwen2ForCausalLM"),
    )
    for prefix, arch in known:
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
    exit_now(1)


def exit_now(code: int) -> None:
    """Exit at once (no clean-up), as a crashed SGLang process does; streams flushed first."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
