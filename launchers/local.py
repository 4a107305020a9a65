"""deploy=local: the engine as a child process in its own process group.

    python -m sglang.launch_server --model-path M --host 127.0.0.1 --port P <flags>

Flags travel as argv items (no shell). The whole process group is stopped with
SIGTERM, then SIGKILL after ``stop_timeout_s``, so an engine's own children (SGLang's
scheduler and detokenizer processes) go too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dotenv import dotenv_values

from autotune.deploy import leftovers
from autotune.deploy.base import DeployConfig, Endpoint, Launcher, LaunchSpec, free_port
from autotune.deploy.processes import stop_process_group
from autotune.params import to_argv
from autotune.secrets import mask_env, secret_values

log = logging.getLogger(__name__)


@dataclass
class LocalConfig(DeployConfig):
    _target_: str = "autotune.launchers.local.LocalLauncher"
    name: str = "local"
    # Interpreter for `python -m ...` launches; null = the one autotune runs in.
    python: str | None = None
    # KEY=value lines added to the engine's environment (HF_TOKEN, proxies; masked).
    env_file: str | None = ".env"
    startup_timeout_s: float = 900.0


class LocalLauncher(Launcher):
    Config = LocalConfig
    export_as: ClassVar[dict[str, str]] = {"command.sh": "launch.sh"}
    leftover_kinds: ClassVar[tuple[str, ...]] = ("process",)
    name = "local"

    def __init__(self, config: LocalConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.python = self.python or sys.executable

    @classmethod
    def export_config(cls, own: dict[str, Any], trial_cfg: Any) -> dict[str, Any]:
        # launch.sh runs on the user's GPU host: the engine's own interpreter name,
        # not this host's virtualenv.
        return {**own, "python": str(trial_cfg["runtime"]["launch"][0])}

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        from autotune.doctor import targets

        return targets.local(cfg)

    # -- what is launched -------------------------------------------------------------
    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        """The engine's argv: launch prefix, model, host, port, fixed args, trial flags."""
        launch = list(spec.runtime.launch)
        if launch and launch[0] in ("python", "python3"):
            launch[0] = self.python
        argv = [*launch, spec.runtime.model_arg, str(spec.model.path)]
        if spec.runtime.served_name_arg:
            argv += [spec.runtime.served_name_arg, spec.served_name]
        argv += [spec.runtime.host_arg, self.host, spec.runtime.port_arg, str(port)]
        argv += [str(a) for a in spec.runtime.extra_args]
        argv += to_argv(spec.params, spec.runtime.flags)
        return argv

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        """Variables added to the engine's environment (not the inherited ones)."""
        env: dict[str, str] = {}
        if self.env_file and Path(self.env_file).is_file():
            env.update({k: v for k, v in dotenv_values(self.env_file).items() if v is not None})
        env.update({k: str(v) for k, v in dict(spec.runtime.env or {}).items()})
        env.update({k: str(v) for k, v in self.env.items()})
        env.update(spec.env)
        if spec.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in spec.gpus)
        return env

    def render(self, spec: LaunchSpec, port: int | None = None) -> dict[str, str]:
        port = port or 30000
        env = self.environment(spec)
        shown = mask_env(env, secret_values(env))
        lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(shown.items())]
        cmd = shlex.join(self.command(spec, port))
        return {"command.sh": "#!/bin/sh\n" + " \\\n  ".join([*lines, cmd]) + "\n"}

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, spec: LaunchSpec) -> Endpoint:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port(self.host)
        argv = self.command(spec, port)
        log_path = spec.workdir / "engine.log"
        env = {**os.environ, **self.environment(spec)}
        # A run id inherited from a parent process would make the engine's own MLflow
        # calls (if any) write into our runs.
        env.pop("MLFLOW_RUN_ID", None)
        log_file = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed in stop()
        log.info("starting %s engine on %s:%d", spec.runtime.name, self.host, port)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=spec.workdir,
            start_new_session=True,  # own process group: stop() kills the whole tree
        )
        leftovers.record_process(proc.pid, spec.trial_name)
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return Endpoint(
            base_url=f"http://{host}:{port}",
            model_name=spec.served_name,
            log_path=log_path,
            handle=(proc, log_file),
            info={"pid": proc.pid, "port": port},
        )

    def poll(self, endpoint: Endpoint) -> int | None:
        proc, _ = endpoint.handle
        return proc.poll()

    def stop(self, endpoint: Endpoint) -> None:
        proc, log_file = endpoint.handle
        try:
            stop_process_group(proc, self.stop_timeout_s)
        finally:
            leftovers.forget_process(proc.pid)
            with contextlib.suppress(OSError):
                log_file.close()
