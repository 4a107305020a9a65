"""Shared helpers for the benchmark-stage tests: fixture paths and the fake server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "genai_bench"
TOKENIZER = ROOT / "autotune" / "sim" / "tokenizer"


@pytest.fixture
def fixture_dir() -> Callable[[str], Path]:
    """fixture_dir(name) -> a committed real genai-bench output folder."""

    def _get(name: str) -> Path:
        path = FIXTURES / name
        assert path.is_dir(), f"missing fixture {path}; run make_fixtures.py capture"
        return path

    return _get


@pytest.fixture
def fake_server() -> Iterator[Callable[..., str]]:
    """fake_server(*args) -> base URL of make_fixtures.py's server, started with args."""
    procs: list[subprocess.Popen] = []

    def _start(*args: str) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(FIXTURES / "make_fixtures.py"), "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("LISTENING "), f"fake server did not start: {line!r}"
        return f"http://127.0.0.1:{int(line.split()[1])}"

    yield _start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
