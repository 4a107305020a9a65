"""``python -m autotune``: the Hydra app. Each job is one trial; the sweep is the study.

python -m autotune                                   # the default study (simulator)
python -m autotune -m runtime=sglang params.mem=0.7,0.8
python -m autotune search=tpe search.n_trials=40     # Bayesian (Optuna)
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from autotune.config import CONFIG_PATH, config_dir, register_configs
from autotune.tracking.sqlite import use_wal_for_sqlite

log = logging.getLogger("autotune")

register_configs()
use_wal_for_sqlite()


# Config-selected Python targets Hydra may import and call: our components, the
# logging handlers in conf/hydra/, and the Optuna sweeper's samplers.
TRUSTED_TARGETS = [
    "autotune.*",
    "autotune.launchers.*",
    "logging.*",
    "hydra_plugins.*",
    "optuna.*",
]


@hydra.main(
    config_path=CONFIG_PATH,
    config_name="config",
    execution_whitelist=TRUSTED_TARGETS,
)
def app(cfg: DictConfig) -> Any:
    """Run one trial and hand its answer to the sweeper (its score, None = failed /
    unscorable, and its constraints: autotune.study.constraints.Answer)."""
    if cfg.dry_run:
        from autotune.study.dry_run import render_study

        render_study(cfg)
        return None
    from autotune.trial.task import hydra_trial

    return hydra_trial(cfg)


def main() -> None:
    import sys

    from autotune.study.validation import check_group_choices

    if sys.argv[1:2] == ["doctor"]:
        from autotune.doctor.cli import main as doctor

        sys.exit(doctor(sys.argv[2:]))
    # Hydra's own "Could not find 'model/foo'" also lists schema entries and search
    # paths; name the choices a user has, and exit like the other bad input (2).
    errors = check_group_choices(sys.argv[1:], config_dir())
    if errors:
        from autotune.tracking.progress import console

        console.print("[bold red]Invalid study configuration:[/]", highlight=False)
        for e in errors:
            console.print(f"  - {e}", highlight=False, markup=False)
        console.print("Nothing was deployed.", highlight=False)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
