"""Which GPUs this host has, and who else uses their memory (NVML, else ``nvidia-smi``).

    gpus, source = probe()            # [Gpu(index=0, name="NVIDIA H200", ...)], "nvml"
    check_gpus(cfg)                   # [Check("GPUs", ...), Check("GPU 0", ...), ...]

NVML comes from ``nvidia-ml-py`` (module ``pynvml``); without it, or without a driver
for it, the same facts are read from ``nvidia-smi``'s CSV queries. A GPU is occupied
when processes that are not ours hold more than ``OCCUPIED_FRACTION`` of its memory:
the engine's ``mem-fraction-static`` would not fit beside them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from autotune.doctor.result import Check

OCCUPIED_FRACTION = 0.05
SMI_GPUS = ["--query-gpu=index,uuid,name,memory.total,memory.used", "--format=csv,noheader,nounits"]
SMI_APPS = [
    "--query-compute-apps=gpu_uuid,pid,process_name,used_memory",
    "--format=csv,noheader,nounits",
]


class GpuProbeError(RuntimeError):
    """Neither NVML nor nvidia-smi could list the GPUs."""


@dataclass
class GpuProcess:
    pid: int
    name: str
    used_mib: float


@dataclass
class Gpu:
    index: int
    name: str
    total_mib: float
    used_mib: float
    processes: list[GpuProcess] = field(default_factory=list)

    def others_mib(self) -> float:
        """Memory held by processes (or, when none are listed, all used memory)."""
        listed = sum(p.used_mib for p in self.processes)
        return listed if self.processes else self.used_mib

    def owners(self) -> str:
        return ", ".join(
            f"pid {p.pid} {p.name} ({p.used_mib / 1024:.1f} GiB)" for p in self.processes
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _process_name(pid: int) -> str:
    import psutil

    try:
        proc = psutil.Process(pid)
        return " ".join(proc.cmdline()[:3]) or proc.name()
    except psutil.Error:
        return "?"  # another PID namespace (a container) or already gone


def from_nvml(nvml: Any) -> list[Gpu]:
    """The GPUs as NVML reports them; ``nvml`` is the ``pynvml`` module (or a fake)."""
    nvml.nvmlInit()
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            procs = [
                GpuProcess(p.pid, _process_name(p.pid), (p.usedGpuMemory or 0) / 2**20)
                for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)
            ]
            gpus.append(
                Gpu(i, _text(nvml.nvmlDeviceGetName(h)), mem.total / 2**20, mem.used / 2**20, procs)
            )
        return gpus
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def parse_smi(gpus_csv: str, apps_csv: str) -> list[Gpu]:
    """The GPUs from ``nvidia-smi`` (:data:`SMI_GPUS` and :data:`SMI_APPS` output)."""
    by_uuid: dict[str, Gpu] = {}
    for row in csv.reader(io.StringIO(gpus_csv), skipinitialspace=True):
        if len(row) >= 5:
            index, uuid, name, total, used = (c.strip() for c in row[:5])
            by_uuid[uuid] = Gpu(int(index), name, _mib(total), _mib(used))
    for row in csv.reader(io.StringIO(apps_csv), skipinitialspace=True):
        if len(row) >= 4 and row[0].strip() in by_uuid:
            uuid, pid, pname, used = (c.strip() for c in row[:4])
            by_uuid[uuid].processes.append(GpuProcess(int(pid), pname, _mib(used)))
    return sorted(by_uuid.values(), key=lambda g: g.index)


def _mib(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0  # "[N/A]" (e.g. unified memory parts)


def from_smi(run: Callable[[list[str]], str] | None = None) -> list[Gpu]:
    run = run or _run_smi
    return parse_smi(run(SMI_GPUS), run(SMI_APPS))


def _run_smi(args: list[str]) -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise GpuProbeError("nvidia-smi is not on PATH")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise GpuProbeError(f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip()[:200]}")
    return proc.stdout


def probe(nvml: Any = None, smi: Callable[[list[str]], str] | None = None) -> tuple[list[Gpu], str]:
    """(GPUs, "nvml" | "nvidia-smi"); raises :class:`GpuProbeError` when neither answers."""
    why = []
    try:
        if nvml is None:
            import pynvml as nvml
        return from_nvml(nvml), "nvml"
    except Exception as e:  # no module, no driver (NVMLError_LibraryNotFound), ...
        why.append(f"NVML: {type(e).__name__}: {e}")
    try:
        return from_smi(smi), "nvidia-smi"
    except (GpuProbeError, OSError, subprocess.TimeoutExpired) as e:
        why.append(str(e))
    raise GpuProbeError("; ".join(why))


def check_gpus(
    cfg: DictConfig, need: int, probe_fn: Callable[[], tuple[list[Gpu], str]] = probe
) -> list[Check]:
    """The trial's GPUs are visible and free enough (per GPU of the pool)."""
    if need == 0:
        return [Check.ok("GPUs", f"runtime {cfg.runtime.name} uses no GPU")]
    try:
        gpus, source = probe_fn()
    except GpuProbeError as e:
        return [
            Check.fail(
                "GPUs",
                f"no NVIDIA GPU visible ({e})",
                "install the NVIDIA driver (nvidia-smi must work) or use deploy=sim",
            )
        ]
    pool = cfg.deploy.get("gpus")
    indices = (
        [int(g) for g in pool] if pool is not None else [g.index for g in gpus][: max(need, 1)]
    )
    by_index = {g.index: g for g in gpus}
    out = [_visible(gpus, source, indices, need, by_index)]
    out += [_free(by_index[i], pool is not None) for i in indices if i in by_index]
    return out


def _visible(
    gpus: list[Gpu], source: str, indices: list[int], need: int, by_index: dict[int, Gpu]
) -> Check:
    missing = [i for i in indices if i not in by_index]
    names = sorted({g.name for g in gpus})
    verdict = f"{len(gpus)} visible through {source} ({', '.join(names) or 'none'})"
    if missing:
        return Check.fail(
            "GPUs",
            f"{verdict}; deploy.gpus names missing GPU(s) {missing}",
            f"use indices from 0 to {len(gpus) - 1}",
        )
    if len(gpus) < need:
        return Check.fail(
            "GPUs",
            f"{verdict}; a trial needs {need}",
            "lower tp-size / dp-size, or run on a bigger host",
        )
    return Check.ok("GPUs", verdict)


def _free(gpu: Gpu, pooled: bool) -> Check:
    name = f"GPU {gpu.index}"
    others = gpu.others_mib()
    share = others / gpu.total_mib if gpu.total_mib else 0.0
    verdict = f"{others / 1024:.1f} of {gpu.total_mib / 1024:.0f} GiB used by other processes"
    if gpu.processes:
        verdict += f": {gpu.owners()}"
    where = "drop it from deploy.gpus" if pooled else "set deploy.gpus to free GPUs"
    if share > OCCUPIED_FRACTION:
        return Check.fail(name, f"occupied, {verdict}", f"stop those processes, or {where}")
    if gpu.processes:
        return Check.warn(name, verdict, f"the engine shares it with them; {where} to be safe")
    return Check.ok(name, f"free ({gpu.name}, {gpu.total_mib / 1024:.0f} GiB)")
