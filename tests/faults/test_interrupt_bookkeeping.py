"""A signal that lands while a trial's records are opened or closed still closes them,
and one that lands as an engine has just started still stops it.

The end-to-end case (SIGTERM between two trials of a real study) is in
test_fault_matrix.py; this pins the executor's guarantee without the timing luck:
the signal is sent from inside the observer, at the worst moment.
"""

from __future__ import annotations

import os
import signal

import pytest

from autotune.deploy import create_launcher
from autotune.study.signals import InterruptGuard
from autotune.trial.executor import run_trial
from autotune.trial.spec import TrialObserver, TrialSpec


class Bookkeeper(TrialObserver):
    """Opens a record in started() and is signalled right after; closes it in finished()."""

    def __init__(self, signal_in: str) -> None:
        self.signal_in = signal_in
        self.opened = False
        self.closed_as: str | None = None
        self.phases: list[str] = []

    def started(self, spec, launcher, rendered):  # type: ignore[override]
        if self.signal_in == "started":
            os.kill(os.getpid(), signal.SIGTERM)
        self.opened = True  # the record exists only if this line runs

    def phase(self, name):  # type: ignore[override]
        self.phases.append(name)

    def finished(self, spec, result):  # type: ignore[override]
        if self.signal_in == "finished":
            os.kill(os.getpid(), signal.SIGTERM)
        self.closed_as = result.status


@pytest.mark.parametrize("signal_in", ["started", "finished"])
def test_a_signal_while_records_open_or_close_still_closes_them(compose_cfg, tmp_path, signal_in):
    cfg = compose_cfg("deploy.clock=virtual", "benchmark.concurrency=[4]")
    guard = InterruptGuard()
    guard.install(on_exit=lambda: None)
    heard = Bookkeeper(signal_in)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trial(TrialSpec(cfg, {}, name="t", study="s", workdir=tmp_path), [heard])
    finally:
        guard.restore()
    assert heard.opened and guard.interrupted
    if signal_in == "started":
        # Held until the record was open; then it stopped the trial before deploying.
        assert heard.closed_as == "interrupted" and "deploying" not in heard.phases
    else:
        # The trial had ended; the signal waited until its record was closed.
        assert heard.closed_as == "ok"


def test_a_signal_right_after_the_engine_started_still_stops_it(compose_cfg, tmp_path):
    """The window CI hit: SIGTERM between ``launcher.start`` returning and the executor
    keeping the handle it returned."""
    cfg = compose_cfg("deploy.clock=virtual", "benchmark.concurrency=[4]")
    base = create_launcher(cfg.deploy)
    started, stopped = [], []

    class SignalledOnStart(type(base)):  # type: ignore[misc]
        def start(self, spec):
            endpoint = super().start(spec)
            started.append(endpoint)
            os.kill(os.getpid(), signal.SIGTERM)  # lands before start() has returned
            return endpoint

        def stop(self, endpoint):
            stopped.append(endpoint)
            super().stop(endpoint)

    guard = InterruptGuard()
    guard.install(on_exit=lambda: None)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trial(
                TrialSpec(cfg, {}, name="t", study="s", workdir=tmp_path),
                launcher=SignalledOnStart(base.config),
            )
    finally:
        guard.restore()
    assert started and stopped == started
