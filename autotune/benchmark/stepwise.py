"""genai-bench one concurrency level at a time, against one warmed-up deployment.

Each level is its own genai-bench process, run in ``<folder>/levels/c<N>/`` (its
console log stays there); its run files and metadata are then moved up into the
experiment folder, so the folder looks like one genai-bench experiment holding the
levels that ran. What runs next is the request's policy's choice
(autotune.benchmark.levels). A process costs genai-bench's start-up (imports,
tokenizer): measured in docs/capacity.md, which is why this mode is used only
when a policy needs it.

    run = genai_bench_levels(endpoint, request, tokenizer, timeout_s=600)
    run.levels.levels, run.levels.stopped
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from autotune.benchmark.genai_bench import run_genai_bench
from autotune.benchmark.levels import run_levels
from autotune.benchmark.parse import METADATA_FILE, find_run_files

log = logging.getLogger(__name__)

LEVELS_DIR = "levels"


def genai_bench_levels(endpoint: Any, request: Any, tokenizer: str, timeout_s: float) -> Any:
    """Run ``request.workload`` level by level as ``request.policy`` decides.

    ``timeout_s`` is shared by all levels (the benchmark's limit, not per level).
    Returns a :class:`autotune.deploy.base.BenchmarkRun` with ``levels`` set.
    """
    from autotune.deploy.base import BenchmarkRun

    folder = Path(request.out_dir).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    notes: list[str] = []
    state = {"partial": False, "timed_out": False}

    def run_level(concurrency: int) -> bool:
        left_s = deadline - time.monotonic()
        if left_s <= 1.0:
            state["timed_out"] = True
            notes.append(f"c{concurrency}: no time left")
            return False
        workload = dataclasses.replace(request.workload, concurrency=[concurrency])
        bench = run_genai_bench(
            endpoint.base_url,
            endpoint.model_name,
            tokenizer,
            workload,
            folder / LEVELS_DIR / f"c{concurrency}",
            timeout_s=left_s,
            api_key=request.api_key,
            on_progress=request.on_progress,
        )
        _collect(bench.folder, folder)
        notes.append(f"c{concurrency}: genai-bench exit {bench.returncode}")
        state["partial"] |= bench.partial
        state["timed_out"] |= bench.timed_out
        return bench.ok

    outcome = run_levels(request.policy, run_level, folder)
    note = "; ".join(notes) + (" (timed out)" if state["timed_out"] else "")
    return BenchmarkRun(folder, state["partial"], note, state["timed_out"], levels=outcome)


def _collect(level_dir: Path, folder: Path) -> None:
    """Move a level's run files (and the first metadata) into the experiment folder."""
    for path in find_run_files(level_dir):
        shutil.move(str(path), folder / path.name)
    meta = level_dir / METADATA_FILE
    if meta.exists() and not (folder / METADATA_FILE).exists():
        shutil.copy(meta, folder / METADATA_FILE)
