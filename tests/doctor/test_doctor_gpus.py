"""GPU checks. A GPU is a boundary this machine cannot reach: NVML is FAKED (a stand-in
``pynvml`` module) and nvidia-smi's answers come from recorded CSV fixtures; the
no-GPU path is this machine's real one (no driver, no nvidia-smi)."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import psutil
import pytest
from doctor_support import FIXTURES

from autotune.doctor import Status
from autotune.doctor.gpus import SMI_APPS, SMI_GPUS, GpuProbeError, check_gpus, probe

GIB = 2**30


class FakeNvml:
    """FAKE NVML (the subset of ``pynvml`` the doctor calls): two H200s; GPU 0 holds
    70 GiB of this test process, GPU 1 is free."""

    def __init__(self, owner_pid: int) -> None:
        self.gpus = [
            (b"NVIDIA H200", 141 * GIB, 70 * GIB + 600 * 2**20, [(owner_pid, 70 * GIB)]),
            ("NVIDIA H200", 141 * GIB, 4 * 2**20, []),
        ]
        self.shut = False

    def nvmlInit(self):  # noqa: N802 - NVML's names
        pass

    def nvmlShutdown(self):  # noqa: N802
        self.shut = True

    def nvmlDeviceGetCount(self):  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):  # noqa: N802
        return i

    def nvmlDeviceGetName(self, h):  # noqa: N802
        return self.gpus[h][0]

    def nvmlDeviceGetMemoryInfo(self, h):  # noqa: N802
        return SimpleNamespace(total=self.gpus[h][1], used=self.gpus[h][2], free=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h):  # noqa: N802
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.gpus[h][3]]


class NoDriver:
    """FAKE NVML of a host without the driver: nvmlInit raises."""

    def nvmlInit(self):  # noqa: N802
        raise RuntimeError("NVML Shared Library Not Found")


def recorded_smi(args: list[str]) -> str:
    """nvidia-smi's recorded answers (tests/doctor/fixtures/nvidia-smi-*.csv)."""
    name = {tuple(SMI_GPUS): "nvidia-smi-gpus.csv", tuple(SMI_APPS): "nvidia-smi-apps.csv"}
    return (FIXTURES / name[tuple(args)]).read_text()


def by_name(checks):
    return {c.name: c for c in checks}


def test_fake_nvml_occupied_gpu_names_the_owner(study_cfg):
    nvml = FakeNvml(os.getpid())
    checks = by_name(
        check_gpus(study_cfg("deploy=local", "deploy.gpus=[0,1]"), 1, lambda: probe(nvml=nvml))
    )
    assert checks["GPUs"].status is Status.OK
    assert checks["GPUs"].verdict == "2 visible through nvml (NVIDIA H200)"
    gpu0 = checks["GPU 0"]
    assert gpu0.status is Status.FAIL
    me = " ".join(psutil.Process().cmdline()[:3])
    assert (
        gpu0.verdict
        == f"occupied, 70.0 of 141 GiB used by other processes: pid {os.getpid()} {me} (70.0 GiB)"
    )
    assert gpu0.fix == "stop those processes, or drop it from deploy.gpus"
    assert (
        checks["GPU 1"].status is Status.OK
        and checks["GPU 1"].verdict == "free (NVIDIA H200, 141 GiB)"
    )
    assert nvml.shut


def test_fake_nvml_free_pool_passes(study_cfg):
    checks = check_gpus(
        study_cfg("deploy=local", "deploy.gpus=[1]"), 1, lambda: probe(nvml=FakeNvml(os.getpid()))
    )
    assert [c.status for c in checks] == [Status.OK, Status.OK]


def test_recorded_nvidia_smi_when_nvml_fails(study_cfg):
    gpus, source = probe(nvml=NoDriver(), smi=recorded_smi)
    assert source == "nvidia-smi"
    assert [(g.index, round(g.used_mib)) for g in gpus] == [
        (0, 72315),
        (1, 4),
        (2, 61202),
        (3, 1130),
    ]
    checks = by_name(
        check_gpus(study_cfg("deploy=local", "deploy.gpus=[0,1,2,3]"), 2, lambda: (gpus, source))
    )
    assert checks["GPUs"].verdict == "4 visible through nvidia-smi (NVIDIA H100 80GB HBM3)"
    assert checks["GPU 0"].status is Status.FAIL
    assert "pid 48211 /usr/bin/python3 (70.6 GiB)" in checks["GPU 0"].verdict
    assert checks["GPU 1"].status is Status.OK
    assert (
        checks["GPU 2"].status is Status.FAIL
        and "pid 51907 ray::RayWorkerWrapper" in checks["GPU 2"].verdict
    )
    # 1.1 GiB of 80 (1.4 %): the engine fits beside it, but say so.
    assert (
        checks["GPU 3"].status is Status.WARN
        and "pid 3305 /usr/lib/xorg/Xorg" in checks["GPU 3"].verdict
    )


def test_recorded_nvidia_smi_without_a_pool_checks_the_first_gpus(study_cfg):
    gpus = probe(nvml=NoDriver(), smi=recorded_smi)
    checks = check_gpus(study_cfg("deploy=local"), 2, lambda: gpus)
    assert [c.name for c in checks] == ["GPUs", "GPU 0", "GPU 1"]
    assert checks[1].fix == "stop those processes, or set deploy.gpus to free GPUs"


def test_pool_names_a_gpu_the_host_lacks(study_cfg):
    gpus = probe(nvml=NoDriver(), smi=recorded_smi)
    (check,) = check_gpus(study_cfg("deploy=local", "deploy.gpus=[1,7]"), 1, lambda: gpus)[:1]
    assert check.status is Status.FAIL and "missing GPU(s) [7]" in check.verdict


def test_more_gpus_needed_than_the_host_has(study_cfg):
    gpus = probe(nvml=NoDriver(), smi=recorded_smi)
    check = check_gpus(study_cfg("deploy=local"), 8, lambda: gpus)[0]
    assert check.status is Status.FAIL and check.verdict.endswith("a trial needs 8")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU driver")
def test_no_gpu_on_this_machine(study_cfg):
    """Real: no NVIDIA driver here, so NVML fails and nvidia-smi is missing."""
    with pytest.raises(GpuProbeError, match="NVML: .*nvidia-smi is not on PATH"):
        probe()
    (check,) = check_gpus(study_cfg("deploy=local"), 1)
    assert check.status is Status.FAIL and check.verdict.startswith("no NVIDIA GPU visible (NVML:")
