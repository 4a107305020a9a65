"""MLflow links open the runs view in "Model training" mode, not the GenAI overview."""

import doctest

import autotune.tracking.links as links


def test_links_doctests():
    assert doctest.testmod(links).failed == 0


def test_a_server_url_keeps_its_path_prefix():
    url = links.runs_view_url("https://mlflow.example.org/team-a/", "12")
    assert (
        url
        == "https://mlflow.example.org/team-a/#/experiments/12/runs?workflowType=machine_learning"
    )
