"""The console's JSON API and its guards, in-process (no browser)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from console_process import stop_launches
from fastapi.testclient import TestClient

from autotune.tracking import links
from autotune.web import bridge, files
from autotune.web.__main__ import check_args, parse_args
from autotune.web.app import create_app
from autotune.web.experiments import experiment_yaml


def test_validate_puts_an_unknown_flag_on_its_field(client):
    r = client.post("/api/validate", json={"overrides": ["params.mem-fraction-statik=0.8"]})
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False
    (err,) = body["errors"]
    assert err["field"] == "params.mem-fraction-statik"
    assert "Did you mean: mem-fraction-static" in err["message"]
    assert body["command"] == "python -m autotune params.mem-fraction-statik=0.8"


def test_validate_checks_every_sweep_value_and_group_choices(client):
    body = client.post(
        "/api/validate", json={"overrides": ["model=nope", "params.mem=0.7,1.5"]}
    ).json()
    assert [e["field"] for e in body["errors"]] == ["model"]  # group choices first, as the CLI
    body = client.post("/api/validate", json={"overrides": ["params.mem=0.7,1.5"]}).json()
    assert body["errors"][0]["field"] == "params.mem"
    assert "1.5" in body["errors"][0]["message"]
    assert client.post("/api/validate", json={"overrides": ["params.mem=0.7,0.8"]}).json()["ok"]


def test_choices_list_a_new_config_file_without_code_changes(client, tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(bridge.conf_dir(), conf)
    shutil.copy(conf / "model" / "qwen3-8b.yaml", conf / "model" / "my-model.yaml")
    monkeypatch.setattr(bridge, "conf_dir", lambda: conf)
    bridge.refresh_choices()
    try:
        groups = client.get("/api/choices").json()["groups"]
    finally:
        bridge.refresh_choices()
    assert "my-model" in groups["model"]
    assert "sim" in groups["deploy"] and "tpe" in groups["search"]
    assert not any(c.endswith("_schema") for g in groups.values() for c in g)


def test_state_changing_requests_refuse_cross_site(client):
    body = {"overrides": ["params.mem=0.8"]}
    # A cross-site HTML form can only send form encodings: refused.
    r = client.post("/api/validate", data={"overrides": "x"})
    assert r.status_code == 403
    r = client.post("/api/studies", content="{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 403
    r = client.post("/api/validate", json=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/validate", json=body, headers={"Origin": "http://testserver"})
    assert r.status_code == 200


def test_a_token_guards_every_page_and_call(settings):
    settings.token = "tok-0123456789"
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/studies").status_code == 401
        assert c.get("/").status_code == 401
        auth = {"Authorization": "Bearer tok-0123456789"}
        assert c.get("/api/studies", headers=auth).status_code == 200
        assert c.get("/login?token=wrong").status_code == 401
        r = c.get("/login?token=tok-0123456789", follow_redirects=False)
        assert r.status_code == 303
        assert c.get("/api/studies").status_code == 200  # the cookie the login set


def test_public_bind_needs_a_token_and_8443_is_refused(monkeypatch):
    monkeypatch.delenv("AUTOTUNE_WEB_TOKEN", raising=False)
    assert parse_args([]).host == "127.0.0.1" and parse_args([]).port == 8080
    assert check_args(parse_args([])) == []
    (err,) = check_args(parse_args(["--host", "0.0.0.0"]))
    assert "needs a token" in err
    assert check_args(parse_args(["--host", "0.0.0.0", "--token", "t-123456"])) == []
    assert "reserved" in check_args(parse_args(["--port", "8443"]))[0]


def test_file_viewer_stays_inside_the_study_directory(tmp_path):
    study = tmp_path / "sweep"
    (study / "0").mkdir(parents=True)
    (study / "0" / "engine.log").write_text("ok\n")
    (tmp_path / "secret.txt").write_text("not yours\n")
    (study / "0" / "link.log").symlink_to(tmp_path / "secret.txt")
    assert files.inside(study, "0/engine.log").read_text() == "ok\n"
    for bad in ("../secret.txt", "0/../../secret.txt", str(tmp_path / "secret.txt"), "0/link.log"):
        with pytest.raises(files.FileRefused):
            files.inside(study, bad)


def test_experiment_file_is_what_launching_runs(client, settings):
    overrides = ["deploy.clock=virtual", "search=grid", "params.mem=0.7,0.8", "seed=3"]
    text = experiment_yaml(overrides)
    doc = yaml.safe_load(text)
    assert text.startswith("# @package _global_")
    assert doc["defaults"] == [{"override /search": "grid"}]
    assert doc["deploy"] == {"clock": "virtual"} and doc["seed"] == 3
    assert doc["hydra"]["sweeper"]["params"] == {"params.mem": "0.7,0.8"}
    r = client.post("/api/experiments", json={"name": "two-mems", "overrides": overrides})
    assert r.status_code == 201, r.text
    assert Path(r.json()["path"]) == settings.experiments_dir / "experiment" / "two-mems.yaml"
    assert "+experiment=two-mems" in r.json()["command"]
    assert client.post("/api/validate", json={"experiment": "two-mems"}).json()["ok"]
    bad = client.post("/api/experiments", json={"name": "../x", "overrides": overrides})
    assert bad.status_code == 422
    secret = ["benchmark.api_key=sk-live-0123456789"]
    bad = client.post("/api/experiments", json={"name": "leaky", "overrides": secret})
    assert bad.status_code == 422 and "sk-live-0123456789" not in bad.text
    assert not (settings.experiments_dir / "experiment" / "leaky.yaml").exists()


def test_secrets_are_never_rendered(client, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_topsecret_value_42")
    body = client.post(
        "/api/validate", json={"overrides": ["benchmark.api_key=sk-another-secret-77"]}
    ).text
    assert "hf_topsecret_value_42" not in body and "sk-another-secret-77" not in body
    assert "***" in body


def test_links_open_the_runs_view():
    assert links.runs_view_url("http://h:5000/", "7") == (
        "http://h:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert links.run_url("http://h:5000", "7", "abc").endswith(
        "#/experiments/7/runs/abc?workflowType=machine_learning"
    )


@pytest.mark.slow
def test_a_virtual_study_through_the_api(client, settings, monkeypatch, tmp_path):
    """Launch (its own process), poll to the end, read the result and its files."""
    # The console's environment points elsewhere: the study must still record where
    # the console reads (it did not: a leaked MLFLOW_TRACKING_URI failed CI).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    r = client.post(
        "/api/studies",
        # Its own sweep directory: another test's study may have started in the same second.
        json={
            "overrides": [
                "deploy.clock=virtual",
                "params.mem=0.7,0.8",
                "hydra.sweep.dir=multirun/virtual-api",
            ]
        },
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    try:
        deadline, st = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            st = client.get(f"/api/studies/{sid}").json()
            if st["status"] != "running":
                break
            time.sleep(1)
        assert st["status"] == "finished", st.get("verdict")
        assert (st["trials_done"], st["trials_failed"], st["trials_total"]) == (2, 0, 2)
        assert st["best"]["params"]["mem-fraction-static"] in ("0.7", "0.8")
        assert st["best"]["objective"] > 0 and st["best"]["trial"] in st["verdict"]
        run_id = st["id"]
        assert any(s["id"] == run_id for s in client.get("/api/studies").json())
        files_url = f"/api/studies/{run_id}/files"
        launch_sh = client.get(f"{files_url}/best/launch.sh")
        assert launch_sh.status_code == 200 and "mem-fraction-static" in launch_sh.text
        assert client.get(f"{files_url}/../mlflow.db").status_code == 404
        assert client.get(f"{files_url}/%2E%2E/mlflow.db").status_code == 404
        assert client.get(f"/studies/{run_id}").status_code == 200
        # Stopping a finished study is a conflict, not a crash.
        assert client.post(f"/api/studies/{run_id}/stop", json={}).status_code == 409
        assert client.post(f"/api/studies/{run_id}/resume", json={}).status_code == 409
        # Restarting the console loses nothing: a new app on the same state finds it.
        with TestClient(create_app(settings)) as again:
            st2 = again.get(f"/api/studies/{sid}").json()
        assert st2["id"] == run_id and st2["launch_id"] == sid and st2["status"] == "finished"
    finally:
        stop_launches(settings.state_dir)


def _run(status: str, tags: dict, metrics: dict | None = None):
    from types import SimpleNamespace

    info = SimpleNamespace(
        run_id="abc123",
        run_name="s",
        experiment_id="1",
        status=status,
        start_time=1_000,
        end_time=None,
        lifecycle_stage="active",
    )
    data = SimpleNamespace(
        tags={"autotune.role": "sweep", **tags}, metrics=metrics or {}, params={}
    )
    return SimpleNamespace(info=info, data=data)


def test_study_status_from_the_parent_run():
    import socket

    from autotune.web.store import Study

    host = socket.gethostname()
    live = _run(
        "RUNNING",
        {"autotune.owner": f"{os.getpid()}@{host}", "autotune.n_trials": "5"},
        {"trials_done": 2, "trials_failed": 1, "trials_total": 5},
    )
    s = Study.from_run(live)
    assert (s.status, s.trials_done, s.trials_failed, s.trials_total) == ("running", 2, 1, 5)
    assert s.eta_s(now_ms=1_000 + 20_000) == pytest.approx(30.0)  # 10 s a trial, 3 left
    # Its sweep process was SIGKILLed (no such PID here): shown stopped, not running forever.
    dead = _run("RUNNING", {"autotune.owner": f"{2**22 + 7}@{host}"})
    assert Study.from_run(dead).status == "stopped"
    assert Study.from_run(_run("KILLED", {"autotune.status": "interrupted"})).status == "stopped"
    assert Study.from_run(_run("FINISHED", {})).status == "finished"
    assert Study.from_run(_run("FAILED", {})).status == "failed"
