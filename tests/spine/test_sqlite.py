"""The study's SQLite stores run in WAL mode with synchronous=NORMAL (autotune.tracking.sqlite)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import sqlalchemy

from autotune.tracking.runs import open_client
from autotune.tracking.sqlite import use_wal_for_sqlite


def test_sqlalchemy_sqlite_connections_use_wal(tmp_path) -> None:
    use_wal_for_sqlite()
    use_wal_for_sqlite()  # idempotent: one listener
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        conn.commit()
    engine.dispose()
    # The mode is stored in the file: any later reader (mlflow ui, report) sees WAL.
    with sqlite3.connect(tmp_path / "store.db") as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert plain.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path) -> None:
    """The console and the study it launches both create mlflow.db: MLflow's migration
    races (alembic "0 found", "duplicate column") unless the first open is serialised."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import sys; from autotune.tracking.runs import open_client; "
        "open_client(sys.argv[1]).create_experiment(sys.argv[2])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri, f"e{i}"], stderr=subprocess.PIPE)
        for i in range(3)
    ]
    errors = [p.communicate(timeout=120)[1].decode()[-600:] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    client = open_client(uri)
    assert {e.name for e in client.search_experiments()} >= {"e0", "e1", "e2"}
