"""``python -m autotune doctor [--json] [overrides]``: the preflight of the study those
overrides describe, e.g. ``python -m autotune doctor deploy=ome model=qwen3-8b``.

Exit status: 0 ready (warnings allowed), 1 a blocking problem, 2 bad input (an
unknown override, an invalid study).
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_BLOCKED, EXIT_BAD_INPUT = 0, 1, 2
USAGE = "usage: python -m autotune doctor [--json] [hydra overrides ...]"


def compose_study(overrides: list[str]):
    """The study config as the sweep driver of ``python -m autotune <overrides>`` sees it
    (a multirun: sweep lists such as ``params.mem=0.7,0.8`` stay in hydra.overrides.task)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from autotune.config import config_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir())):
            return GlobalHydra.instance().hydra.compose_config(
                "config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False
            )
    finally:
        GlobalHydra.instance().clear()


def _bad_input(console, errors: list[str]) -> int:
    console.print("[bold red]Invalid study configuration:[/]", highlight=False)
    for e in errors:
        console.print(f"  - {e}", highlight=False, markup=False)
    return EXIT_BAD_INPUT


def main(argv: list[str]) -> int:
    from autotune.config import config_dir
    from autotune.study.validation import check_group_choices, validate_study
    from autotune.tracking.progress import console

    if {"-h", "--help"} & set(argv):
        console.print(USAGE + "\n" + (__doc__ or ""), highlight=False, markup=False)
        return EXIT_OK
    as_json = "--json" in argv
    overrides = [a for a in argv if a not in ("--json", "-m", "--multirun")]
    if flags := [a for a in overrides if a.startswith("-")]:
        return _bad_input(console, [f"unknown option {flags[0]}; {USAGE}"])
    errors = check_group_choices(overrides, config_dir())
    if errors:
        return _bad_input(console, errors)
    try:
        cfg = compose_study(overrides)
    except Exception as e:  # Hydra's override, key and type errors
        return _bad_input(console, [f"{type(e).__name__}: {e}"])
    errors = validate_study(cfg)
    if errors:
        return _bad_input(console, errors)
    from autotune.doctor.run import run_checks
    from autotune.doctor.view import print_report, to_json

    report = run_checks(cfg)
    if as_json:
        sys.stdout.write(to_json(report))
    else:  # the report is the command's output (stdout); problems with the input go to stderr
        from autotune.tracking.progress import results

        print_report(report, results)
    return EXIT_OK if report.ok else EXIT_BLOCKED
