"""genai-bench level by level, against one warmed-up deployment.

A genai-bench process costs its start-up (imports, tokenizer: ~24 s here, measured
in docs/capacity.md), so a policy that runs the levels in the workload's order
(every level, early abort, a pruner) is *watched*: one genai-bench process runs
them all, each run file is judged as it appears, and the process is stopped as soon
as the policy says so (the level in progress is dropped). A policy that picks its
own order (the capacity ladder) gets one process per level, run in
``<folder>/levels/c<N>/`` (its console log stays there), whose run files and
metadata are moved up into the experiment folder. Either way the folder looks like
one genai-bench experiment holding the levels that ran.

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
from autotune.benchmark.levels import LevelPolicy, LevelsOutcome, in_order, list_levels, run_levels
from autotune.benchmark.parse import METADATA_FILE, find_run_files, parse_experiment

log = logging.getLogger(__name__)

LEVELS_DIR = "levels"
# Polls (0.2 s apart) that re-read a run file that did not parse before giving up on it.
_REREADS = 10


def genai_bench_levels(endpoint: Any, request: Any, tokenizer: str, timeout_s: float) -> Any:
    """Run ``request.workload`` level by level as ``request.policy`` decides.

    ``timeout_s`` is shared by all levels (the benchmark's limit, not per level).
    Returns a :class:`autotune.deploy.base.BenchmarkRun` with ``levels`` set.
    """
    from autotune.deploy.base import BenchmarkRun

    if in_order(request.policy) and len(request.workload.scenarios) == 1:
        return _watched(endpoint, request, tokenizer, timeout_s)
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


class _Watch:
    """Feeds the policy each level whose run file genai-bench has written."""

    def __init__(self, policy: LevelPolicy, folder: Path) -> None:
        self.policy = policy
        self.folder = folder
        self.done: list[int] = []
        self.metrics: dict[str, float] = {}
        self.files = 0
        self.rereads = 0
        self.stop = False
        policy.next_level({}, [])  # as run_levels does before the first level

    def __call__(self) -> bool:
        """New run files? Judge them; True: stop genai-bench now."""
        files = len(find_run_files(self.folder))
        if files == self.files or self.stop:
            return self.stop
        parsed = parse_experiment(self.folder)
        # A file still being written does not parse yet: read it again (for ~2 s).
        if len(parsed.runs) == files or self.rereads >= _REREADS:
            self.files, self.rereads = files, 0
        else:
            self.rereads += 1
        self.metrics = parsed.metrics()
        for run in parsed.runs:
            if run.concurrency in self.done:
                continue
            self.done.append(run.concurrency)
            if self.policy.next_level(self.metrics, self.done) is None:
                self.stop = True
                break
        return self.stop


def _watched(endpoint: Any, request: Any, tokenizer: str, timeout_s: float) -> Any:
    """Every level in one genai-bench process, stopped when the policy says so."""
    from autotune.deploy.base import BenchmarkRun

    folder = Path(request.out_dir).absolute()
    watch = _Watch(request.policy, folder)
    bench = run_genai_bench(
        endpoint.base_url,
        endpoint.model_name,
        tokenizer,
        request.workload,
        folder,
        timeout_s=timeout_s,
        api_key=request.api_key,
        on_progress=request.on_progress,
        stop_when=watch,
    )
    watch()  # the last level's file may have come with the exit
    policy = request.policy
    outcome = LevelsOutcome(
        list(watch.done), policy.stopped, policy.pruned, policy.by_pruner,
        policy.extra_metrics(watch.metrics),
    )  # fmt: skip
    if outcome.stopped:
        list_levels(folder, outcome.levels)  # levels not run are not "missing"
        log.info("benchmark stopped after %s: %s", outcome.levels, outcome.stopped)
    partial = bench.partial and not outcome.stopped
    note = f"genai-bench exit {bench.returncode}" + (
        " (stopped early)" if outcome.stopped else " (timed out)" if bench.timed_out else ""
    )
    return BenchmarkRun(bench.folder, partial, note, bench.timed_out, levels=outcome)
