"""Preflight: find what will break a study before the first GPU-minute.

    python -m autotune doctor                         # the default study's target
    python -m autotune doctor deploy=ome model=llama-3.1-8b-instruct --json

The same checks run when a study starts (``preflight=false`` skips them): a blocking
problem stops it before anything is deployed. Each check gives a one-line verdict
and, when it is not ok, the fix. Common checks live in :mod:`autotune.doctor.common`;
each deploy target adds its own through ``Launcher.preflight_checks(cfg)``.
"""

from autotune.doctor.result import Check, Report, Status

__all__ = ["Check", "Report", "Status"]
