"""A study's files on disk (logs, best configuration, figures), never anything else.

Every path the console reads is resolved (symlinks followed) and must lie inside the
study's sweep directory (``autotune.sweep_dir`` on its MLflow parent run); a name
with ``..``, an absolute path or a link pointing out is refused. Text is scrubbed of
secrets before it is shown.

A trial's files are in its job directory, ``<sweep_dir>/<job number>``; the job
number is the trial index minus the sweep's first index (``study.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# The logs a trial page offers, by label: engine, genai-bench (its console output is a
# superset of its own log), the trial's own log.
TRIAL_LOGS = {
    "engine": "engine.log",
    "genai-bench": "genai-bench/genai_bench.console.log",
    "trial": "__main__.log",
}
# Where the same logs are among the trial's MLflow artifacts (read when the sweep
# directory is not on this host, or was removed).
TRIAL_ARTIFACTS = {
    "engine": "logs/engine.log",
    "genai-bench": "genai-bench/genai_bench.console.log",
}
MAX_READ = 256 * 1024


class FileRefused(LookupError):
    """The path is outside the study's directories or is not a readable file."""


def inside(root: Path | str, relative: str) -> Path:
    """``root / relative`` if it is a file within ``root`` after resolving links."""
    if not root or not relative or "\x00" in relative:
        raise FileRefused("no such file")
    base = Path(root).resolve()
    if os.path.isabs(relative) or ".." in Path(relative).parts:
        raise FileRefused(f"{relative!r} is outside the study's directory")
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise FileRefused(f"{relative!r} is outside the study's directory")
    if not path.is_file():
        raise FileRefused(f"{relative!r}: no such file")
    return path


def job_dir(sweep_dir: str, trial_index: int | None) -> Path | None:
    """The job directory of the trial with ``trial_index`` in this sweep, if present."""
    if not sweep_dir or trial_index is None:
        return None
    base = Path(sweep_dir)
    try:
        first = int(json.loads((base / "study.json").read_text()).get("first_index", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        first = 0
    path = base / str(trial_index - first)
    return path if trial_index >= first and path.is_dir() else None


def read_chunk(path: Path, offset: int = 0, limit: int = MAX_READ) -> tuple[str, int]:
    """Text from byte ``offset`` (at most ``limit`` bytes, whole lines) and the next offset."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if offset > size:  # the file was replaced: start over
            offset = 0
        if size - offset > limit and offset == 0:
            offset = size - limit  # a long log: its end
        f.seek(offset)
        data = f.read(limit)
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
    return data.decode("utf-8", "replace"), offset + len(data)


def listing(root: Path | str, folder: str) -> list[str]:
    """Files directly in ``root/folder`` (relative to root), for the best-config pane."""
    base = Path(root).resolve()
    target = (base / folder).resolve()
    if not target.is_relative_to(base) or not target.is_dir():
        return []
    return sorted(
        str(p.relative_to(base))
        for p in target.iterdir()
        if p.is_file() and p.resolve().is_relative_to(base)
    )
