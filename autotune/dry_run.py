"""``dry_run=true``: render what each trial would launch, contact nothing, exit 0.

The rendered files (command line, container spec, manifests) go to stdout and to
``<trial dir>/launch/``.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from autotune.launcher import LaunchSpec, create_launcher
from autotune.params import normalize
from autotune.progress import console
from autotune.secrets import scrub, secret_values


def render_study(cfg: DictConfig) -> dict[str, str]:
    params = normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases)
    launcher = create_launcher(cfg.deploy)
    workdir = Path(HydraConfig.get().runtime.output_dir).resolve()
    spec = LaunchSpec(
        trial_name=f"dry-run-{HydraConfig.get().job.get('num', 0)}",
        runtime=cfg.runtime,
        model=cfg.model,
        params=params,
        workdir=workdir,
        gpus=list(cfg.deploy.gpus)[: int(params.get(cfg.runtime.gpu_flag, 1) or 1)]
        if cfg.deploy.get("gpus")
        else None,
    )
    secrets = secret_values()
    rendered = {name: scrub(text, secrets) for name, text in launcher.render(spec).items()}
    out = workdir / "launch"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out / name).write_text(text)
        console.rule(f"dry run · deploy={cfg.deploy.name} · {name}")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    console.print(f"(written to {out}; nothing was started)", highlight=False)
    return rendered
