"""Links into the MLflow UI that open where a tuner's user expects: the runs view.

MLflow 3.17 opens an experiment on its GenAI "Overview" (traces) unless the URL asks
for the "Model training" workflow; ``?workflowType=machine_learning`` does, and the UI
remembers the choice (see /work/shared/notes/browser.md). No heavy imports: the CLI
prints these too.

    >>> experiment_url("http://127.0.0.1:5000", "1")
    'http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning'
    >>> run_url("http://127.0.0.1:5000/", "1", "abc")
    'http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning'
"""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_MLFLOW_URL = "http://127.0.0.1:5000"
_WORKFLOW = "workflowType=machine_learning"


def experiment_url(mlflow_url: str, experiment_id: str) -> str:
    """The experiment's runs table (Model training view), not the GenAI overview."""
    base = mlflow_url.rstrip("/")
    return f"{base}/#/experiments/{quote(str(experiment_id), safe='')}/runs?{_WORKFLOW}"


def run_url(mlflow_url: str, experiment_id: str, run_id: str) -> str:
    """One run's page (params, metrics, artifacts) in the Model training view."""
    base = mlflow_url.rstrip("/")
    exp, run = quote(str(experiment_id), safe=""), quote(str(run_id), safe="")
    return f"{base}/#/experiments/{exp}/runs/{run}?{_WORKFLOW}"
