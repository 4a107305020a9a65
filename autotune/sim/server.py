"""A real-time, OpenAI-compatible HTTP front for the simulated SGLang engine.

It is started like a real SGLang server, with SGLang's own flags, and behaves like
one on the wire and in its log, but the forward passes are simulated: an asyncio
loop (``autotune.sim.driver``) asks the clock-free scheduler
(``autotune.sim.types.Engine``) for one step at a time, sleeps for the step's
simulated duration on the real clock and then streams the step's token events to
the waiting HTTP handlers (``autotune.sim.http_api``).

    python -m autotune.sim.server --model-path meta-llama/Llama-3.1-8B-Instruct \\
        --host 127.0.0.1 --port 30000 --enable-metrics --mem-fraction-static 0.8 \\
        --sim-model llama-3.1-8b --sim-gpu h200_sxm --sim-fault error-rate=0.05

Flags real SGLang accepts but the simulator does not model are accepted and listed
as ignored (log line and ``/get_server_info``); unknown flags fail like SGLang's
argparse (exit 2; the flag table is ``autotune/sim/sglang_flags.yaml``, read by
``autotune.sim.server_args``). Start-up failures the engine predicts
(``SimStartupError``, e.g. "Not enough memory. Please try to increase
--mem-fraction-static.") are printed as SGLang prints them and exit 1
(``autotune.sim.startup``). The simulator's own options start with ``--sim-``; the
fault knobs (``--sim-fault``) are described in ``autotune.sim.faults``.

Module map: ``server_args`` (the command line), ``prompt_tokens`` (token counting),
``driver`` (the real-time loop), ``http_api`` (the routes), ``startup`` (start-up log
and faults); this module wires them and runs the process.

Timing: when the CPU falls behind the schedule, steps run back to back until it
catches up (a warning is logged; beyond 1 s the clock is re-synchronised instead).
``--log-requests`` logs each request's server-side arrival, queueing, TTFT and e2e
latency ("Finish: rid=..."), which lets the real-time schedule be checked against
the virtual clock fed the same arrivals.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
import traceback

from aiohttp import web

from autotune.sim.faults import Faults, parse_faults
from autotune.sim.http_api import SimServer
from autotune.sim.server_args import build_parser, explicit_flags
from autotune.sim.startup import start_up
from autotune.sim.versions import UnsupportedVersion, sglang_defaults

logger = logging.getLogger("sglang.srt.entrypoints.http_server")
sched_logger = logging.getLogger("sglang.srt.managers.scheduler")


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
    server.t0 = time.monotonic()
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
    startup = asyncio.create_task(start_up(server))
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
    for task in (startup, stop_wait, server.driver_task):
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
    try:
        sglang_defaults(args.sim_sglang_version)
    except UnsupportedVersion as err:
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
