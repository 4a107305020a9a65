"""Paths and names the doctor's tests share (a module of its own: ``conftest`` is
ambiguous when several test directories are on sys.path)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHER_TESTS = HERE.parent / "launchers"
FIXTURES = HERE / "fixtures"
SIM_TOKENIZER = HERE.parents[1] / "autotune" / "sim" / "tokenizer"
# The checks of a deploy=sim study, in the order they are listed.
SIM_CHECKS = [
    "genai-bench",
    "tokenizer",
    "tracking store",
    "disk",
    "GPU count",
    "simulator profile",
]
