"""A real PostgreSQL and a real ``mlflow server`` on loopback, for the team tests.

PostgreSQL comes from Debian's packages (``apt-get install postgresql``): a throw-away
cluster (initdb) in a temporary directory, on a free 127.0.0.1 port, with a password
(scram-sha-256) so that the tests see a URL with a password like a team's. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` user the package
creates. ``mlflow server`` uses that PostgreSQL as its backend store and serves
artifacts from a local directory. Both are stopped by the PID this module started.

    with Postgres.start() as pg, MlflowServer.start(pg.url("mlflow"), tmp) as ml:
        pg.url("optuna"), ml.url
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "autotune"


class Unavailable(RuntimeError):
    """PostgreSQL or its driver is not installed here (tests skip with this reason)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise Unavailable(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


def _stop(proc: subprocess.Popen, sig: int, group: bool = False, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if group else os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _spawn(cmd: list[str], log_path: Path, **kwargs) -> subprocess.Popen:
    """Start a server in its own session, its output in ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )


def _wait_ready(proc: subprocess.Popen, ready, timeout: float, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: " + log_path.read_text()[-3000:])
        time.sleep(0.3)


@dataclass
class Postgres:
    port: int
    password: str
    root: Path
    proc: subprocess.Popen

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Postgres]:
        try:
            import psycopg2
        except ImportError as e:
            raise Unavailable("psycopg2 is not installed (pip install -e '.[dev]')") from e
        initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
        as_root = os.geteuid() == 0
        if as_root:
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError as e:
                raise Unavailable("running as root and there is no postgres user") from e
        user = "postgres" if as_root else None
        # Not under pytest's tmp dirs: those are 0700 root, closed to the postgres user.
        root = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
        password = "pw-" + secrets.token_hex(8)
        (root / "pwfile").write_text(password + "\n")
        if as_root:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(root / "pwfile", "postgres", "postgres")
        data = root / "data"
        subprocess.run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={root / 'pwfile'}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-locale",
                "-E",
                "UTF8",
            ],
            user=user,
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        settings = {"listen_addresses": "127.0.0.1", "max_connections": "200", "fsync": "off"}
        proc = _spawn(
            [postgres, "-D", str(data), "-p", str(port), "-k", str(root)]
            + [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")],
            root / "postgres.log",
            user=user,
        )
        pg = cls(port=port, password=password, root=root, proc=proc)

        def ready() -> bool:
            try:
                psycopg2.connect(
                    host="127.0.0.1",
                    port=port,
                    user=USER,
                    password=password,
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
                return True
            except psycopg2.OperationalError:
                return False

        try:
            _wait_ready(proc, ready, 60, root / "postgres.log", "PostgreSQL")
            yield pg
        finally:
            _stop(proc, signal.SIGINT)  # "fast" shutdown
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class MlflowServer:
    url: str
    proc: subprocess.Popen
    log_path: Path

    @classmethod
    @contextlib.contextmanager
    def start(cls, backend_store_uri: str, workdir: Path) -> Iterator[MlflowServer]:
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "mlflow-server.log"
        mlflow = Path(sys.executable).with_name("mlflow")
        proc = _spawn(
            [str(mlflow), "server", "--backend-store-uri", backend_store_uri]
            + ["--artifacts-destination", str(workdir / "artifacts"), "--serve-artifacts"]
            + ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            log_path,
            cwd=workdir,
        )
        server = cls(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        try:
            # The first start migrates the database: tens of seconds.
            _wait_ready(proc, ready, 180, log_path, "mlflow server")
            yield server
        finally:
            # Its own process group: the server and its uvicorn workers.
            _stop(proc, signal.SIGTERM, group=True)


@dataclass
class TeamServers:
    pg: Postgres
    mlflow_url: str
    storage: str  # Optuna storage URL, with the password


@dataclass
class Study:
    """One shared study: its name, experiment and the command line of a worker."""

    servers: TeamServers
    root: Path
    name: str
    experiment: str
    overrides: tuple[str, ...]

    def command(self, worker: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "autotune",
            *self.overrides,
            f"search.storage={self.servers.storage}",
            f"tracking.uri={self.servers.mlflow_url}",
            f"tracking.experiment={self.experiment}",
            f"study.name={self.name}",
            f"search.worker={worker}",
            f"hydra.sweep.dir={self.root}/multirun/{worker}",
        ]

    def start(self, worker: str, log_name: str | None = None) -> subprocess.Popen:
        log = open(self.root / f"{log_name or worker}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "AUTOTUNE_STATE_DIR": str(self.root / "state")}
        env.pop("MLFLOW_TRACKING_URI", None)
        return subprocess.Popen(
            self.command(worker),
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


def wait_ok(proc: subprocess.Popen, study: Study, name: str, timeout: float = 600) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    assert rc == 0, study.log(name)[-4000:]
