"""How the libraries autotune drives log: through the study's handlers, at WARNING.

Hydra's ``conf/hydra/*_logging`` configure the handlers (the terminal and each
trial's log file). The library loggers are quietened here, once, instead of under
``loggers:`` there: ``logging.config.dictConfig`` resets the level and handlers of
every child of a logger it names (MLflow has ~150), one ``setLevel`` each, which
clears every logger's cache; Hydra reconfigures logging three times per trial, and
that was ~12 % of a 100-trial virtual study's time under cProfile.
"""

from __future__ import annotations

import logging

QUIET = ("mlflow", "alembic", "httpx", "httpcore", "urllib3")


def route_library_logs(level: int = logging.WARNING) -> None:
    """Send the libraries' records at ``level`` and above to the root's handlers.

    Call after ``import mlflow``: MLflow gives its own loggers a stderr handler and
    ``propagate=False`` on import, which would bypass the trial's log file.
    """
    for name in QUIET:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers = []
        logger.propagate = True
