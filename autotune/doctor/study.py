"""The preflight at study start: blocking problems stop the study before anything deploys.

report = preflight(cfg)        # None when preflight=false; exits 1 on a blocking problem
record(report, parent_run)     # preflight.json on the sweep run
"""

from __future__ import annotations

import json
import logging
from typing import Any

from omegaconf import DictConfig

from autotune.doctor.result import Report, Status

log = logging.getLogger(__name__)

EXIT_BLOCKED = 1


def preflight(cfg: DictConfig) -> Report | None:
    """Run the doctor's checks for this study; print and exit(1) when one is blocking."""
    if not cfg.get("preflight", True):
        return None
    from autotune import secrets
    from autotune.doctor.run import run_checks
    from autotune.tracking.progress import console

    # The study opens its tracking store itself right after (its own messages, exit 2,
    # and a longer wait for a lock): the doctor's tracking check is left out here.
    report = run_checks(cfg, study_start=True)
    known = secrets.secret_values()
    for c in report.checks:
        if c.status is Status.WARN:
            log.warning("preflight: %s: %s (%s)", c.name, c.verdict, c.fix)
    if report.ok:
        log.info("preflight passed: %d checks in %.1f s", len(report.checks), report.seconds)
        return report
    console.print("[bold red]Preflight found a blocking problem:[/]", highlight=False)
    for line in report.messages():
        console.print(f"  - {secrets.scrub(line, known)}", highlight=False, markup=False)
    console.print(
        "Nothing was deployed. Details: python -m autotune doctor <same overrides>; "
        "preflight=false skips these checks.",
        highlight=False,
    )
    raise SystemExit(EXIT_BLOCKED)


def record(report: Report | None, run: Any) -> None:
    """``preflight.json`` on the sweep run (secrets masked)."""
    if report is None:
        return
    from autotune import secrets

    text = secrets.scrub(json.dumps(report.as_dict(), indent=2), secrets.secret_values())
    run.text(text + "\n", "preflight.json")
