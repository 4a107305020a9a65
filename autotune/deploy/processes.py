"""Stopping a child that leads its own process group, and everything it started.

Engines, genai-bench and ``kubectl port-forward`` are started with
``start_new_session=True``, so the child leads a group that also holds whatever it
spawned (SGLang's scheduler and detokenizer, genai-bench's workers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left (macOS says so); nothing to stop
        return False
    return True


def stop_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the group ``proc`` leads, give its leader ``grace_s`` to exit, then
    SIGKILL whatever is left of the group and reap the leader. Never raises."""
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    if grace_s > 0 and proc.poll() is None and _signal_group(pgid, signal.SIGTERM):
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0f s: killing its group", proc.pid, grace_s)
    # Always: children that outlived the leader still carry its group id.
    deadline = time.monotonic() + 2
    while _signal_group(pgid, signal.SIGKILL) and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for a few lines that must not be cut in two.

    A signal raises KeyboardInterrupt wherever it lands: between starting an engine
    and keeping its handle (or between MLflow creating a run and the recorder keeping
    its id) it would leave something running for ever. The signal is delivered again,
    to the handler it was meant for, on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs handlers in the main thread only: nothing lands here
        return
    held: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: held.append(signum)) for sig in watched
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])
