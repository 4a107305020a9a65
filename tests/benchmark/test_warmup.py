"""The real-time warm-up: a closed loop of chat completions against the simulated
SGLang server (its HTTP API as genai-bench sees it), results thrown away."""

from __future__ import annotations

import pytest

from autotune.benchmark.warmup import warm_up
from autotune.deploy import LaunchSpec, create_launcher
from autotune.deploy.readiness import wait_ready


def test_no_requests_is_no_warm_up():
    assert warm_up("http://127.0.0.1:9", "m", requests=0, users=4, scenario="D(8,4)").sent == 0


@pytest.mark.slow
def test_warm_up_sends_every_request_to_the_engine(compose_cfg, tmp_path):
    cfg = compose_cfg("deploy.startup_s=0.1")
    launcher = create_launcher(cfg.deploy)
    spec = LaunchSpec.for_trial(cfg, {}, study="s", trial="trial-000", workdir=tmp_path)
    endpoint = launcher.start(spec)
    try:
        wait_ready(
            launcher,
            endpoint,
            health_path=cfg.runtime.health_path,
            ready_pattern=cfg.runtime.ready_log_pattern,
            failure_patterns=cfg.runtime.failure_patterns,
            timeout_s=60,
        )
        done = warm_up(
            endpoint.base_url, endpoint.model_name, requests=10, users=4, scenario="D(64,8)"
        )
        assert (done.sent, done.ok) == (10, 10)
        # A server that is gone: the warm-up reports failures, it does not raise.
        launcher.stop(endpoint)
        endpoint = None
        gone = warm_up("http://127.0.0.1:9", "m", requests=2, users=2, scenario="D(8,4)")
        assert (gone.sent, gone.ok) == (2, 0)
    finally:
        if endpoint is not None:
            launcher.stop(endpoint)


def test_warm_up_against_a_hung_engine_ends_at_its_deadline():
    import socket
    import time

    # Accepts connections (the backlog) and never answers: a hung engine.
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        started = time.monotonic()
        done = warm_up(
            f"http://127.0.0.1:{port}",
            "m",
            requests=6,
            users=3,
            scenario="D(8,4)",
            timeout_s=1.5,
        )
        took = time.monotonic() - started
    assert done.ok == 0 and 1.4 < took < 4.0
