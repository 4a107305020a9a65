"""Why a trial failed, in one word: the failure classes and how an engine log maps to one.

>>> classify("RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
...          {"oom": [r"Not enough memory"]})
'oom'
>>> failure_in("Segmentation fault", {"oom": [r"out of memory"]})
<Failure.CRASH: 'crash'>
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path


class Failure(StrEnum):
    """Values of the ``autotune.failure`` tag."""

    OOM = "oom"
    CUDA_GRAPH = "cuda_graph"
    BAD_FLAG = "bad_flag"
    CRASH = "crash"
    STARTUP_TIMEOUT = "startup_timeout"
    BENCHMARK_FAILED = "benchmark_failed"
    BENCHMARK_TIMEOUT = "benchmark_timeout"
    DEPLOY_ERROR = "deploy_error"
    INTERRUPTED = "interrupted"
    INTERNAL_ERROR = "internal_error"


class TrialFailure(Exception):
    """A trial could not produce numbers; ``failure`` says why in one word."""

    def __init__(self, failure: Failure | str, message: str) -> None:
        super().__init__(message)
        self.failure = Failure(failure)


def classify(log_text: str, patterns: Mapping[str, Sequence[str]]) -> str | None:
    """The first failure class (in the runtime's order) whose pattern occurs in the log."""
    for failure, regexes in patterns.items():
        for rx in regexes:
            if re.search(rx, log_text):
                return failure
    return None


def failure_in(
    log_text: str, patterns: Mapping[str, Sequence[str]], default: Failure = Failure.CRASH
) -> Failure:
    """The failure class the log shows; ``default`` when no pattern (or an unknown class) matches."""
    found = classify(log_text, patterns)
    return Failure(found) if found in Failure._value2member_map_ else default


def read_log(path: Path | None, limit: int = 4_000_000) -> str:
    """The engine log's text (the last ``limit`` bytes), or '' if there is none yet."""
    if path is None or not Path(path).exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", errors="replace")


def last_lines(text: str, n: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])
