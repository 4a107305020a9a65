"""The checks every target runs, against the real thing: interpreters, sqlite, an HTTP
server on loopback, the file system."""

from __future__ import annotations

import http.server
import shutil
import sqlite3
import sys
import threading

import pytest

from autotune.doctor import Status, common


def test_genai_bench_at_the_pin_in_this_interpreter(study_cfg):
    check = common.genai_bench(study_cfg())
    assert check.status is Status.OK, check
    assert check.verdict == f"{common.pinned_genai_bench()} in {sys.executable}"
    assert common.pinned_genai_bench() == "0.0.5"  # pyproject.toml's pin, read from metadata


def test_genai_bench_missing_from_its_interpreter(study_cfg):
    bare = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    assert bare and bare != sys.executable
    check = common.genai_bench(study_cfg(), python=bare)
    assert check.status is Status.FAIL
    assert "not importable" in check.verdict and "PackageNotFoundError" in check.verdict
    assert check.fix == f"{bare} -m pip install genai-bench==0.0.5"


def test_genai_bench_at_another_version_fails(study_cfg, monkeypatch):
    monkeypatch.setattr(common, "pinned_genai_bench", lambda: "0.0.3")
    check = common.genai_bench(study_cfg())
    assert check.status is Status.FAIL
    assert check.verdict.startswith("0.0.5 in ") and "autotune needs 0.0.3" in check.verdict


def test_genai_bench_not_needed_on_the_virtual_clock(study_cfg):
    check = common.genai_bench(study_cfg("deploy.clock=virtual"), python="/nonexistent/python")
    assert check.status is Status.OK and "virtual" in check.verdict


def test_tokenizer_bundled_with_the_simulator_loads(study_cfg):
    check = common.tokenizer(study_cfg("model.tokenizer=null"))  # the sim's own
    assert check.status is Status.OK
    assert "autotune/sim/tokenizer (vocabulary 2000)" in check.verdict


@pytest.mark.parametrize("content", [None, "", "{not json"])
def test_tokenizer_that_cannot_load_offline(study_cfg, tmp_path, content):
    tok = tmp_path / "tok"
    if content is not None:
        tok.mkdir()
        if content:
            (tok / "tokenizer.json").write_text(content)
    check = common.tokenizer(study_cfg(f"model.tokenizer={tok}"))
    assert check.status is Status.FAIL
    assert str(tok) in check.verdict and "model.tokenizer=" in check.fix


def test_tracking_store_sqlite_writable(study_cfg, tmp_path):
    check = common.tracking_store(study_cfg(f"tracking.uri=sqlite:///{tmp_path}/new/mlflow.db"))
    assert check.status is Status.OK
    assert check.verdict == f"sqlite:///{tmp_path}/new/mlflow.db is writable"
    assert not (tmp_path / "new").exists()  # the probe leaves nothing behind


def test_tracking_store_under_a_file_fails(study_cfg, tmp_path):
    (tmp_path / "file").write_text("x")
    check = common.tracking_store(study_cfg(f"tracking.uri=sqlite:///{tmp_path}/file/mlflow.db"))
    assert check.status is Status.FAIL
    assert f"{tmp_path}/file is not a directory" in check.verdict


def test_tracking_store_locked_by_another_process_fails(study_cfg, tmp_path):
    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        check = common.tracking_store(study_cfg(f"tracking.uri=sqlite:///{db}"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert check.status is Status.FAIL and "write lock" in check.verdict


@pytest.fixture
def health_server():
    """A real HTTP server on loopback that answers /health like an MLflow server."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tracking_server_answers(study_cfg, health_server):
    check = common.tracking_store(study_cfg(f"tracking.uri={health_server}"))
    assert check.status is Status.OK, check


def test_tracking_server_down_fails_and_hides_the_password(study_cfg, health_server):
    port = int(health_server.rsplit(":", 1)[1])
    uri = f"http://user:s3cret-pw@127.0.0.1:{port + 1 if port < 65535 else port - 1}"
    check = common.tracking_store(study_cfg(f"tracking.uri='{uri}'"))
    assert check.status is Status.FAIL and "does not answer" in check.verdict
    assert "s3cret-pw" not in check.verdict


def test_tracking_database_url(study_cfg, tmp_path):
    """Real SQLAlchemy connections: a database URL that connects, and one that does not."""
    ok = common.tracking_store(study_cfg(f"tracking.uri=sqlite+pysqlite:///{tmp_path}/db.sqlite"))
    assert ok.status is Status.OK and ok.verdict.endswith("accepts connections")
    port = 1  # nothing listens on port 1 of loopback
    bad = common.tracking_store(
        study_cfg(f"tracking.uri='postgresql://u:pw-secret@127.0.0.1:{port}/mlflow'")
    )
    assert bad.status is Status.FAIL and "cannot connect (OperationalError" in bad.verdict
    assert "pw-secret" not in bad.verdict


def test_free_disk(study_cfg, tmp_path):
    cfg = study_cfg(f"hydra.sweep.dir={tmp_path}/multirun/x")
    free = shutil.disk_usage(tmp_path).free / 2**30
    ok = common.free_disk(cfg, fail_gib=0.0, warn_gib=0.0)
    assert ok.status is Status.OK and ok.verdict == f"{free:.1f} GiB free in {tmp_path}"
    assert common.free_disk(cfg, fail_gib=0.0, warn_gib=free * 10).status is Status.WARN
    low = common.free_disk(cfg, fail_gib=free * 10, warn_gib=free * 20)
    assert low.status is Status.FAIL and "hydra.sweep.dir=" in low.fix


def test_gpu_count_fits_the_pool(study_cfg):
    check = common.gpu_pool(
        study_cfg("deploy=local", "deploy.gpus=[0,1,2,3]", "params.tp-size=2", "+params.dp-size=2")
    )
    assert check.status is Status.OK and check.verdict.startswith("4 per trial")


def test_gpu_count_tp_times_dp_over_the_pool_fails(study_cfg):
    cfg = study_cfg(
        "deploy=local",
        "deploy.gpus=[0,1]",
        "params.tp-size=1",
        "+params.dp-size=2",
        "params.tp=1,2",
    )
    check = common.gpu_pool(cfg)
    assert check.status is Status.FAIL
    assert "needs 4 GPUs (tp × dp) but deploy.gpus=[0, 1] has 2" in check.verdict


def test_gpu_count_without_gpus(study_cfg):
    check = common.gpu_pool(study_cfg("deploy=local_cpu", "runtime=vllm_cpu"))
    assert check.status is Status.OK and "uses no GPU" in check.verdict
