"""Links into MLflow's UI that open where a tuner's user expects: the runs view.

MLflow 3.17 opens an experiment on its GenAI "Overview" (traces, all empty for a
tuning study); the tag ``mlflow.experimentKind`` does not change that, but
``?workflowType=machine_learning`` on the runs page does, and the UI remembers it.

    >>> runs_view_url("http://127.0.0.1:5000/", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning'
    >>> run_url("http://127.0.0.1:5000", "3", "abc")
    'http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning'
"""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_UI = "http://127.0.0.1:5000"
_MODE = "workflowType=machine_learning"


def runs_view_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table in "Model training" mode."""
    return f"{base.rstrip('/')}/#/experiments/{quote(str(experiment_id), safe='')}/runs?{_MODE}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """One run's page (params, metrics, artifacts) in "Model training" mode."""
    exp, run = quote(str(experiment_id), safe=""), quote(str(run_id), safe="")
    return f"{base.rstrip('/')}/#/experiments/{exp}/runs/{run}?{_MODE}"
