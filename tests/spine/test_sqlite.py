"""The study's SQLite stores run in WAL mode with synchronous=NORMAL (autotune.tracking.sqlite)."""

from __future__ import annotations

import sqlite3

import sqlalchemy

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
