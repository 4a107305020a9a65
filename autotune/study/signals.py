"""Ctrl-C and SIGTERM during a study: stop after the current trial's teardown, never
leave the sweep run RUNNING.

The handler raises KeyboardInterrupt in whatever frame runs when the signal arrives;
in a weakref or GC callback (SQLAlchemy has some) Python prints the exception and
drops it, and the sweep would run on to its end (seen with SIGTERM between trials).
So the guard also remembers the signal, and :meth:`InterruptGuard.check` stops the
sweep at the next job boundary.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any


class InterruptGuard:
    def __init__(self) -> None:
        self.interrupted = False
        self._previous: dict[int, Any] = {}

    def install(self, on_exit: Callable[[], None]) -> None:
        """Handle SIGINT/SIGTERM; ``on_exit`` runs at interpreter exit (e.g. SIGKILLed
        children aside, a crash of the driver) if the study did not close itself."""

        def on_signal(signum: int, frame: Any) -> None:
            self.interrupted = True
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[sig] = signal.signal(sig, on_signal)
        atexit.register(on_exit)

    def check(self) -> None:
        """Stop the sweep if a signal came that did not stop it: no further trial starts."""
        if self.interrupted:
            raise KeyboardInterrupt("interrupted")

    def ended_by_interrupt(self) -> bool:
        """Did a signal (or an interrupt being handled right now) end the study?"""
        exc = sys.exc_info()[1]
        return self.interrupted or isinstance(exc, KeyboardInterrupt | SystemExit)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
