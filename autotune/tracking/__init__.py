"""Where results go as they happen: MLflow runs, the outbox for outages, the terminal.

``from autotune import tracking`` gives the MLflow names (``tracking.ROLE``,
``tracking.connect``, ``tracking.RunLogger`` …) of :mod:`autotune.tracking.runs`.
They load on first use: importing mlflow takes seconds, and bad input must fail
before that.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # import_module, not "from autotune.tracking import runs": that would ask this
    # very function for "runs" before the submodule exists.
    runs = importlib.import_module("autotune.tracking.runs")
    try:
        return getattr(runs, name)
    except AttributeError:
        raise AttributeError(f"module 'autotune.tracking' has no attribute {name!r}") from None
