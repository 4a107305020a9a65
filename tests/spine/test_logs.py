"""Library loggers reach the study's handlers at WARNING, and Hydra's per-job logging
set-up (conf/hydra/job_logging) keeps it so."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_library_warnings_reach_the_trial_log_and_info_does_not(tmp_path):
    import autotune.tracking  # noqa: F401  (imports mlflow, then routes its loggers)
    from autotune.logs import QUIET, route_library_logs

    # Again here: earlier tests in the same process may have re-set these loggers.
    route_library_logs()

    # Hydra's job logging, as a trial gets it (the file handler into the trial dir).
    config = yaml.safe_load((CONF / "hydra/job_logging/autotune.yaml").read_text())
    config["handlers"]["file"]["filename"] = str(tmp_path / "trial.log")
    config["handlers"].pop("console")
    config["root"]["handlers"] = ["file"]
    saved = logging.root.handlers[:], logging.root.level
    try:
        for _ in range(2):  # Hydra reconfigures before and after each job
            logging.config.dictConfig(config)
        for name in QUIET:
            logger = logging.getLogger(name)
            assert logger.getEffectiveLevel() == logging.WARNING, name
            assert logger.propagate and not logger.handlers, name
        logging.getLogger("mlflow.store.db.utils").info("mlflow-info-line")
        logging.getLogger("mlflow.tracking").warning("mlflow-warning-line")
        logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/health")
        for handler in logging.root.handlers:
            handler.flush()
        text = (tmp_path / "trial.log").read_text()
        assert "mlflow-warning-line" in text
        assert "mlflow-info-line" not in text and "HTTP Request" not in text
    finally:
        for handler in logging.root.handlers:
            handler.close()
        logging.root.handlers, level = saved
        logging.root.setLevel(level)
