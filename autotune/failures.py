"""Classify an engine failure from its log.

>>> classify("RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
...          {"oom": [r"Not enough memory"]})
'oom'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path


def classify(log_text: str, patterns: Mapping[str, Sequence[str]]) -> str | None:
    """The first failure class (in the runtime's order) whose pattern occurs in the log."""
    for failure, regexes in patterns.items():
        for rx in regexes:
            if re.search(rx, log_text):
                return failure
    return None


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
