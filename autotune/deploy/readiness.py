"""Wait until an engine serves: health probe AND ready log line, within a timeout.

An engine that exits, or never becomes ready, raises a classified TrialFailure whose
message carries the end of the engine log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from autotune.deploy.base import Endpoint, Launcher
from autotune.deploy.failures import Failure, TrialFailure, failure_in, last_lines, read_log

log = logging.getLogger(__name__)


def wait_ready(
    launcher: Launcher,
    endpoint: Endpoint,
    *,
    health_path: str,
    ready_pattern: str | None,
    failure_patterns: Mapping[str, Sequence[str]],
    timeout_s: float,
    poll_s: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Block until ready; return seconds waited. Raises TrialFailure otherwise."""
    if endpoint.virtual:
        return 0.0
    t0 = clock()
    url = endpoint.base_url.rstrip("/") + health_path
    with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as client:
        while True:
            code = launcher.poll(endpoint)
            if code is not None:
                text = read_log(endpoint.log_path)
                failure = failure_in(text, failure_patterns, Failure.CRASH)
                raise TrialFailure(
                    failure,
                    f"engine exited with code {code} before it was ready "
                    f"({failure.value}):\n{last_lines(text)}",
                )
            healthy = False
            with contextlib.suppress(httpx.HTTPError):
                healthy = client.get(url).status_code == 200
            if healthy and (not ready_pattern or ready_pattern in read_log(endpoint.log_path)):
                return clock() - t0
            if clock() - t0 > timeout_s:
                text = read_log(endpoint.log_path)
                failure = failure_in(text, failure_patterns, Failure.STARTUP_TIMEOUT)
                raise TrialFailure(
                    failure,
                    f"engine not ready after {timeout_s:.0f} s (health {url}: "
                    f"{'200' if healthy else 'not 200'}):\n{last_lines(text)}",
                )
            time.sleep(poll_s)
