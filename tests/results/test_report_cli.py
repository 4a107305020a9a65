"""``python -m autotune.report``: arguments, store lookup, formats, compare, failure exits."""

from __future__ import annotations

import json

import pytest

from autotune.report.__main__ import main, parse_args


def test_tuner_style_arguments():
    args = parse_args(["tracking.uri=sqlite:///x.db", "tracking.experiment=e"])
    assert args.tracking_uri == "sqlite:///x.db" and args.experiment == "e"
    # An explicit option wins over the tuner-style argument.
    args = parse_args(["--tracking-uri", "sqlite:///y.db", "tracking.uri=sqlite:///x.db"])
    assert args.tracking_uri == "sqlite:///y.db"


def test_unknown_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["deploy=sim"])
    assert e.value.code == 2
    assert "tracking.uri=" in capsys.readouterr().err


def test_no_store_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["--no-figures"]) == 1
    err = capsys.readouterr().err
    assert "No study to report" in err and "mlflow.db" in err
    assert not (tmp_path / "mlflow.db").exists()  # looking must not create a store


def test_store_without_study_exits_1(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the schema
    assert main([f"tracking.uri={uri}", "--no-figures"]) == 1
    assert "no autotune study" in capsys.readouterr().err


def test_unknown_run_exits_1(store, capsys):
    assert main([f"tracking.uri={store['uri']}", "--run", "nope", "--no-figures"]) == 1
    assert "'nope'" in capsys.readouterr().err


def test_table_of_newest_study_without_baseline(store, capsys, tmp_path):
    # study-b is the newest, has no baseline, and its sweep dir is not on this machine.
    code = main([f"tracking.uri={store['uri']}", "--figures-dir", str(tmp_path / "figs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "study-b" in out and "SIMULATED" in out
    assert "no baseline trial" in out
    assert "trial-000 ★" in out  # 1300 tok/s
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "concurrency.png",
        "history.png",
        "pareto.png",
    ]


def test_table_with_gain_and_failure(store, capsys):
    code = main(
        [f"--tracking-uri={store['uri']}", "--run", "study-a", "--no-figures", "--format", "table"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Gain over the baseline trial-000-baseline" in out
    assert "+25.0 %" in out  # 1000 → 1250 tok/s
    assert "failed: oom" in out
    assert "Best configuration" in out  # exported by the report (or by an earlier test)
    # The report is the sweep run's description on its MLflow UI page.
    note = store["client"].get_run(store["a"]).data.tags["mlflow.note.content"]
    assert note.startswith("## autotune study `study-a`") and "+25.0 %" in note


def test_read_only_changes_nothing(store, tmp_path, capsys):
    client = store["client"]
    before = client.get_run(store["b"]).data.tags.get("mlflow.note.content")
    arts = {a.path for a in client.list_artifacts(store["b"])}
    code = main(
        [f"tracking.uri={store['uri']}", "--run", "study-b", "--read-only",
         "--figures-dir", str(tmp_path / "f")]
    )  # fmt: skip
    assert code == 0 and "study-b" in capsys.readouterr().out
    assert client.get_run(store["b"]).data.tags.get("mlflow.note.content") == before
    assert {a.path for a in client.list_artifacts(store["b"])} == arts
    assert (tmp_path / "f" / "history.png").is_file()


def test_json_and_markdown(store, capsys):
    assert (
        main(
            [
                f"tracking.uri={store['uri']}",
                "--run",
                store["a"],
                "--format",
                "json",
                "--no-figures",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["best"]["name"] == "trial-003"
    assert data["gain"]["change"] == pytest.approx(0.25)
    assert data["simulated"] is True
    assert [t["status"] for t in data["trials"]] == ["ok", "ok", "failed", "ok"]
    assert (
        main(
            [f"tracking.uri={store['uri']}", "--run", store["a"], "--format", "md", "--no-figures"]
        )
        == 0
    )
    md = capsys.readouterr().out
    assert md.startswith("## autotune study `study-a`")
    assert "> **SIMULATED results" in md
    assert "| trial-003 ★ |" in md


def test_compare(store, capsys):
    code = main([f"tracking.uri={store['uri']}", "--compare", "study-a", "study-b"])
    out = capsys.readouterr().out
    assert code == 0
    assert "v0.5.4" in out and "v0.5.5" in out
    assert "+4.0 % (better)" in out  # best throughput 1250 → 1300
    assert (
        main(
            [f"tracking.uri={store['uri']}", "--compare", "study-a", "study-b", "--format", "json"]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert any(r["what"] == "engine image" and "v0.5.5" in r["b"] for r in rows)
