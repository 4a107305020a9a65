"""``dry_run=true``: render what each trial would launch, contact nothing, exit 0.

Manifests and specs (``*.yaml``, ``*.json``) go to stdout as YAML documents, so the
output can be piped to ``kubectl apply -f -`` or a validator; command lines go to
stdout as ``#`` comment lines between them. Every rendered file is also written to
``<trial dir>/launch/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from autotune.deploy import LaunchSpec, create_launcher
from autotune.params import normalize
from autotune.secrets import scrub, secret_values
from autotune.tracking.progress import console

_DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")


def as_stdout(rendered: dict[str, str]) -> str:
    """All rendered files as one YAML stream: documents, and commands as comments."""
    parts = []
    for name, text in rendered.items():
        if name.endswith(_DOCUMENT_SUFFIXES):
            parts.append(f"---\n# {name}\n{text.rstrip()}\n")
        else:
            body = "\n".join(f"# {line}" if line else "#" for line in text.rstrip().splitlines())
            parts.append(f"# ---- {name} ----\n{body}\n")
    return "".join(parts)


def render_study(cfg: DictConfig) -> dict[str, str]:
    params = normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases)
    launcher = create_launcher(cfg.deploy)
    if launcher.simulated and cfg.runtime.name != "sglang":
        # The simulator imitates SGLang only: show the real engine's command instead.
        from autotune.deploy.plugins import launchers

        console.print(
            f"deploy={cfg.deploy.name} simulates SGLang only; this is what deploy=local "
            f"would launch for runtime={cfg.runtime.name}",
            highlight=False,
        )
        launcher = launchers()["local"](host=cfg.deploy.host)
    workdir = Path(HydraConfig.get().runtime.output_dir).resolve()
    n_gpus = int(params.get(cfg.runtime.gpu_flag, 1) or 1) if cfg.runtime.gpu_flag else 1
    spec = LaunchSpec.for_trial(
        cfg,
        params,
        study=cfg.study.name or "dry-run",
        trial=str(HydraConfig.get().job.get("num", 0)),
        workdir=workdir,
        gpus=[int(g) for g in cfg.deploy.gpus][:n_gpus] if cfg.deploy.get("gpus") else None,
    )
    secrets = secret_values()
    rendered = {name: scrub(text, secrets) for name, text in launcher.render(spec).items()}
    out = workdir / "launch"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text)
    sys.stdout.write(as_stdout(rendered))
    sys.stdout.flush()
    console.print(
        f"dry run of deploy={cfg.deploy.name}: written to {out}; nothing was started",
        highlight=False,
    )
    return rendered
