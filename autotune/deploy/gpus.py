"""GPU leases: trials that run at once on one host never share a GPU.

Each trial leases ``tp-size`` GPUs from ``deploy.gpus`` before it deploys and gives
them back when its engine has stopped. Leases are small files guarded by a file
lock, so they work across the processes of Hydra's joblib launcher and across
sweep processes on the same host (pass the same lease directory). A lease whose
holder died is taken over.

    with lease_gpus(pool=[0, 1, 2, 3], count=2, lease_dir=path, holder="trial-7") as gpus:
        ...  # CUDA_VISIBLE_DEVICES=",".join(map(str, gpus))
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
from filelock import FileLock

log = logging.getLogger(__name__)


class GpuLeaseTimeout(TimeoutError):
    pass


def _holder_alive(entry: dict) -> bool:
    pid = entry.get("pid")
    if not pid or not psutil.pid_exists(pid):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - entry.get("created", 0)) < 1
    except psutil.Error:
        return False


def _try_acquire(pool: Sequence[int], count: int, lease_dir: Path, holder: str) -> list[int] | None:
    taken = set()
    for path in lease_dir.glob("gpu-*.json"):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _holder_alive(entry):
            taken.add(int(entry["gpu"]))
        else:
            path.unlink(missing_ok=True)  # its holder died: the GPU is free again
    free = [g for g in pool if g not in taken]
    if len(free) < count:
        return None
    chosen = free[:count]
    me = psutil.Process(os.getpid())
    for g in chosen:
        (lease_dir / f"gpu-{g}.json").write_text(
            json.dumps({"gpu": g, "pid": me.pid, "created": me.create_time(), "holder": holder})
        )
    return chosen


@contextlib.contextmanager
def lease_gpus(
    pool: Sequence[int],
    count: int,
    lease_dir: Path,
    holder: str,
    timeout_s: float = 24 * 3600,
    poll_s: float = 0.5,
) -> Iterator[list[int]]:
    """Hold ``count`` GPUs of ``pool`` for the duration of the block (waits if busy)."""
    if count > len(pool):
        raise ValueError(f"{count} GPUs asked for, but the pool {list(pool)} has {len(pool)}")
    lease_dir = Path(lease_dir)
    lease_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lease_dir / ".lock"))
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        with lock:
            gpus = _try_acquire(pool, count, lease_dir, holder)
        if gpus is not None:
            break
        if time.monotonic() > deadline:
            raise GpuLeaseTimeout(f"no {count} free GPUs of {list(pool)} within {timeout_s:.0f} s")
        if not waited:
            log.info("%s waits for %d free GPU(s) of %s", holder, count, list(pool))
            waited = True
        time.sleep(poll_s)
    try:
        yield gpus
    finally:
        with lock:
            for g in gpus:
                (lease_dir / f"gpu-{g}.json").unlink(missing_ok=True)
