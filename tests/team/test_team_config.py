"""Team studies without servers: bad input fails before anything runs, URL passwords
are masked, worker seeds differ, one sweep directory per worker."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap

from autotune import secrets, tracking
from autotune.study.sweep_run import claim_sweep_dir as _claim_sweep_dir
from autotune.study.team import storage_error, worker_seed

# Runs autotune with the PostgreSQL drivers made unimportable.
_WITHOUT_DRIVERS = textwrap.dedent(
    """
    import sys
    class NoDrivers:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("psycopg", "psycopg2"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoDrivers())
    import runpy
    runpy.run_module("autotune", run_name="__main__", alter_sys=True)
    """
)


def test_postgres_storage_without_its_driver_says_which_extra_to_install(tmp_path):
    password = "pw-not-shown-1234"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_DRIVERS,
            "search=tpe",
            "deploy.clock=virtual",
            f"search.storage=postgresql://tuner:{password}@127.0.0.1:1/optuna",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
        cwd=tmp_path,
        env={**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "search.storage: postgresql:// needs the database driver 'psycopg'" in out
    assert "pip install -e '.[team]'" in out and "Nothing was deployed." in out
    assert password not in out
    assert not (tmp_path / "mlflow.db").exists()


def test_storage_error_only_for_missing_drivers():
    assert storage_error("sqlite:////tmp/optuna.db") is None
    assert storage_error("http://127.0.0.1:5000") is None
    assert storage_error("postgresql+psycopg2://u@127.0.0.1/optuna") is None  # installed (dev)
    assert "'.[team]'" not in (storage_error("mysql://u@h/db") or "'.[team]'")


def test_url_passwords_are_masked_in_records_and_logs(caplog):
    url = "postgresql://tuner:s3cret-pw-42@db.example:5432/optuna"
    assert secrets.url_credentials(url) == ["s3cret-pw-42", "tuner:s3cret-pw-42"]
    assert secrets.mask_url(url) == "postgresql://tuner:***@db.example:5432/optuna"
    assert secrets.url_credentials("sqlite:////tmp/x.db") == []
    # Any URL-valued variable, not only proxies (MLFLOW_TRACKING_URI, a storage URL).
    found = secrets.secret_values({"MLFLOW_TRACKING_URI": "https://me:tok-abcdef@mlflow:443"})
    assert "tok-abcdef" in found
    # Registered once, masked in every record from then on, whatever the handler.
    secrets.register(secrets.url_credentials(url))
    assert "s3cret-pw-42" in secrets.secret_values({})
    with caplog.at_level(logging.INFO):
        logging.getLogger("hydra_plugins.some_sweeper").info("Storage: %s", url)
    assert "s3cret-pw-42" not in caplog.text and "Storage: postgresql://***@db" in caplog.text


def test_each_worker_gets_its_own_stable_seed():
    assert worker_seed(7, None) == 7  # a lone worker keeps search.seed
    seeds = {worker_seed(7, f"host{i}-gpu{j}") for i in range(4) for j in range(8)}
    assert len(seeds) == 32
    assert worker_seed(7, "host1-gpu0") == worker_seed(7, "host1-gpu0")
    assert worker_seed(7, "host1-gpu0") != worker_seed(8, "host1-gpu0")


def test_a_sweep_directory_serves_one_live_worker(tmp_path):
    assert _claim_sweep_dir(tmp_path) is None
    assert _claim_sweep_dir(tmp_path) is None  # the same process again
    live = f"1@{socket.gethostname()}"  # pid 1 is always alive
    (tmp_path / ".autotune-worker").write_text(live)
    assert _claim_sweep_dir(tmp_path) == live
    (tmp_path / ".autotune-worker").write_text(f"999999999@{socket.gethostname()}")
    assert _claim_sweep_dir(tmp_path) is None  # left by a process that is gone


def test_a_shared_parent_run_stays_open_while_a_worker_lives():
    host = socket.gethostname()
    tags = {
        "autotune.worker.w1": "done",
        "autotune.worker.w2": f"1@{host}",  # alive
        "autotune.worker.w3": f"999999999@{host}",  # killed
        "autotune.worker.w4": "999@elsewhere",  # another host: assumed alive
    }
    assert tracking.live_workers(tags) == [f"1@{host}", "999@elsewhere"]
    assert tracking.worker_tag("12@gpu host/1") == "autotune.worker.12_gpu host_1"
