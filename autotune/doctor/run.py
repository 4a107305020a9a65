"""Run a study's preflight: the common checks plus its launcher's, at once, time-boxed.

report = run_checks(cfg)            # Report(target="sim", checks=[...])
report.ok                           # False when a check is blocking
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Callable

from omegaconf import DictConfig

from autotune.deploy.plugins import launcher_for_target
from autotune.doctor import common
from autotune.doctor.result import Check, Report

log = logging.getLogger(__name__)

CheckFn = Callable[[], "Check | list[Check]"]
# A check that has not answered by then counts as failed (it would stall a trial too).
BUDGET_S = 8.0


def checks_for(cfg: DictConfig, study_start: bool = False) -> list[CheckFn]:
    """Every check of this study: the common ones, then the deploy target's."""
    target = launcher_for_target(str(cfg.deploy._target_)).preflight_checks(cfg)
    return [*common.checks(cfg, tracking=not study_start), *target]


def _call(fn: CheckFn) -> list[Check]:
    try:
        got = fn()
    except Exception as e:  # a check's own bug must not hide the others' verdicts
        log.debug("preflight check crashed", exc_info=True)
        return [
            Check.fail(
                "preflight",
                f"a check crashed: {type(e).__name__}: {e}",
                "report it; preflight=false skips the checks",
            )
        ]
    return got if isinstance(got, list) else [got]


def run_checks(cfg: DictConfig, budget_s: float = BUDGET_S, study_start: bool = False) -> Report:
    """All checks in parallel (most wait on a daemon, an API or a child interpreter)."""
    started = time.monotonic()
    fns = checks_for(cfg, study_start)
    pool = cf.ThreadPoolExecutor(max_workers=len(fns), thread_name_prefix="doctor")
    futures = [pool.submit(_call, fn) for fn in fns]
    done, _ = cf.wait(futures, timeout=budget_s)
    checks: list[Check] = []
    for fut in futures:
        if fut in done:
            checks += fut.result()
        else:
            checks.append(
                Check.fail(
                    "preflight",
                    f"a check did not answer within {budget_s:g} s",
                    "see which service hangs (docker, the cluster, the tracking server)",
                )
            )
    pool.shutdown(wait=False, cancel_futures=True)
    return Report(str(cfg.deploy.name), _scrubbed(checks), time.monotonic() - started)


def _scrubbed(checks: list[Check]) -> list[Check]:
    """No secret (HF token, a password in a URL, ...) in a verdict or a fix."""
    from dataclasses import replace

    from autotune import secrets

    known = secrets.secret_values()
    return [
        replace(c, verdict=secrets.scrub(c.verdict, known), fix=secrets.scrub(c.fix, known))
        for c in checks
    ]
