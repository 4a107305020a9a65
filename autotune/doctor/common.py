"""Checks every deploy target needs: genai-bench, tokenizer, tracking store, disk, GPU count.

Each function takes the composed study config and returns one :class:`Check`; none of
them imports MLflow, Docker or Kubernetes (the doctor must answer in seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from autotune.doctor.result import Check

# genai-bench's pin when the installed autotune carries no metadata (a bare checkout).
GENAI_BENCH_PIN = "0.0.5"
# Free space under the artifacts directory: below FAIL_GIB a study fails, below WARN_GIB
# a long one may (engine logs, genai-bench folders, plots; ~5-50 MB per trial).
DISK_FAIL_GIB, DISK_WARN_GIB = 1.0, 10.0
SUBPROCESS_TIMEOUT_S = 8.0
DP_FLAGS = ("dp-size", "dp", "data-parallel-size")


def ask(python: str, what: str, *args: str) -> dict[str, Any]:
    """Run :mod:`autotune.doctor.probe` (``what`` = version | module) in ``python``.

    In this process when ``python`` is this interpreter (no child: cheap, and a study's
    preflight starts nothing); else as ``python -c <probe source>``. A child that cannot
    run gives ``{"spawn_error": ...}``.
    """
    from autotune.doctor import probe

    if os.path.abspath(python) == os.path.abspath(sys.executable):
        return probe.distribution(*args) if what == "version" else probe.module(*args)
    source = Path(probe.__file__).read_text()
    try:
        proc = subprocess.run(
            [python, "-c", source, what, *args],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            env={**os.environ, "PYTHONNOUSERSITE": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"spawn_error": str(e)}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"spawn_error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def uses_genai_bench(cfg: DictConfig) -> bool:
    """A virtual-clock simulator replays the benchmark in-process: no genai-bench."""
    return str(cfg.deploy.get("clock", "realtime")) != "virtual"


def pinned_genai_bench() -> str:
    """The genai-bench version autotune's own metadata pins (pyproject.toml)."""
    import importlib.metadata as md

    try:
        for req in md.requires("autotune") or []:
            name, sep, version = req.partition("==")
            if name.strip() == "genai-bench" and sep:
                return version.split(";")[0].strip()
    except md.PackageNotFoundError:
        pass
    return GENAI_BENCH_PIN


def genai_bench(cfg: DictConfig, python: str = sys.executable) -> Check:
    """genai-bench importable at the pinned version in the interpreter that runs it."""
    name = "genai-bench"
    if not uses_genai_bench(cfg):
        return Check.ok(name, "not used: deploy.clock=virtual replays the benchmark in-process")
    pin = pinned_genai_bench()
    fix = f"{python} -m pip install genai-bench=={pin}"
    found = ask(python, "version", "genai-bench", "genai_bench", "cli/cli.py")
    if "spawn_error" in found:
        return Check.fail(
            name,
            f"cannot run {python}: {found['spawn_error']}",
            "point the benchmark at a working Python",
        )
    if "error" in found:
        return Check.fail(name, f"not importable in {python} ({found['error']})", fix)
    if found["version"] != pin:
        return Check.fail(name, f"{found['version']} in {python}, autotune needs {pin}", fix)
    if not found["has"]:
        return Check.fail(name, f"{pin} installed but has no genai_bench/cli/cli.py", fix)
    return Check.ok(name, f"{pin} in {python}")


def tokenizer_dir(cfg: DictConfig) -> str:
    """The tokenizer genai-bench will load (the simulator's bundled one by default)."""
    if cfg.model.get("tokenizer"):
        return str(cfg.model.tokenizer)
    if cfg.deploy.get("simulated"):
        return str(Path(__file__).resolve().parents[1] / "sim" / "tokenizer")
    return str(cfg.model.path)


def tokenizer(cfg: DictConfig) -> Check:
    """The tokenizer is a local directory that loads without the network."""
    name = "tokenizer"
    path = Path(tokenizer_dir(cfg)).expanduser()
    fix = "set model.tokenizer=/path/to/dir (a local HF model directory works; no hub look-up)"
    if not path.is_dir():
        return Check.fail(name, f"{path} is not a local directory (genai-bench runs offline)", fix)
    tok_json = path / "tokenizer.json"
    if tok_json.is_file():
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(tok_json))
        except Exception as e:
            return Check.fail(name, f"{tok_json} does not load ({e})", fix)
        return Check.ok(name, f"{path} (vocabulary {tok.get_vocab_size()})")
    if (path / "tokenizer.model").is_file() or (path / "vocab.json").is_file():
        return Check.ok(name, f"{path} (slow tokenizer files)")
    return Check.fail(name, f"{path} has no tokenizer.json, tokenizer.model or vocab.json", fix)


def tracking_uri(cfg: DictConfig, start_dir: str | os.PathLike | None = None) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else sqlite in the start directory.

    The same rule as :func:`autotune.tracking.resolve_uri`, without importing MLflow.
    """
    start = Path(start_dir or os.getcwd())
    uri = cfg.tracking.get("uri") or os.environ.get("MLFLOW_TRACKING_URI")
    uri = uri or f"sqlite:///{start.resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(start / uri[len('sqlite:///') :]).resolve()}"
    return str(uri)


def tracking_store(cfg: DictConfig, start_dir: str | os.PathLike | None = None) -> Check:
    """The MLflow store answers, and (a file store) can be written."""
    from autotune.secrets import mask_url

    uri = tracking_uri(cfg, start_dir)
    shown = mask_url(uri)
    name = "tracking store"
    fix = "fix tracking.uri= / MLFLOW_TRACKING_URI, or start the tracking server"
    ok = f"{shown} is writable"
    if uri.startswith("sqlite:///"):
        problem = _sqlite_problem(Path(uri[len("sqlite:///") :].split("?", 1)[0]))
    elif uri.startswith(("http://", "https://")):
        problem, ok = _http_problem(uri), f"{shown} answers /health"
    elif uri.startswith(("file:", "/")) or "://" not in uri:
        problem = _dir_problem(Path(uri.removeprefix("file://").removeprefix("file:")))
    else:
        problem, ok = _database_problem(uri), f"{shown} accepts connections"
    if problem:
        return Check.fail(name, f"{shown}: {problem}", fix)
    return Check.ok(name, ok)


def _dir_problem(directory: Path) -> str | None:
    """Can a file be created in ``directory`` (or the first existing directory above it)?"""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".autotune-doctor-"):
            pass
    except OSError as e:
        return f"cannot write in {probe} ({e.strerror or e})"
    return None


def _sqlite_problem(path: Path) -> str | None:
    if not path.is_file():
        return _dir_problem(path.parent)
    try:
        con = sqlite3.connect(path, timeout=2.0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")  # the write lock every trial needs
            con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"cannot take the write lock ({e}); another process may hold it"
    return None


def _http_problem(uri: str) -> str | None:
    import httpx

    try:
        r = httpx.get(uri.rstrip("/") + "/health", timeout=httpx.Timeout(3.0))
    except httpx.HTTPError as e:
        return f"does not answer ({type(e).__name__})"
    return None if r.status_code == 200 else f"/health answered HTTP {r.status_code}"


def _database_problem(uri: str) -> str | None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri)
        with engine.connect() as con:
            con.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as e:
        return f"cannot connect ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    return None


def artifacts_dir(cfg: DictConfig) -> Path:
    """Where the study writes (the sweep directory, else the start directory)."""
    sweep = OmegaConf.select(
        cfg, "hydra.sweep.dir", default=None, throw_on_resolution_failure=False
    )
    return Path(str(sweep)) if sweep else Path.cwd()


def free_disk(
    cfg: DictConfig, fail_gib: float = DISK_FAIL_GIB, warn_gib: float = DISK_WARN_GIB
) -> Check:
    """Enough free space where the study writes its artifacts."""
    path = artifacts_dir(cfg).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free / 2**30
    verdict = f"{free:.1f} GiB free in {path}"
    fix = f"free space there, or set hydra.sweep.dir= to a disk with more than {warn_gib:.0f} GiB"
    if free < fail_gib:
        return Check.fail("disk", verdict + f" (needs {fail_gib:.0f} GiB)", fix)
    if free < warn_gib:
        return Check.warn("disk", verdict + " (a long study may fill it)", fix)
    return Check.ok("disk", verdict)


def flag_values(cfg: DictConfig, names: tuple[str, ...]) -> list[Any]:
    """Every value the study gives any flag in ``names`` (its aliases too): params + sweep."""
    from autotune.study.validation import sweep_values

    aliases = {a for a, target in cfg.runtime.aliases.items() if target in names}
    wanted = set(names) | aliases
    values = [v for k, v in dict(cfg.params).items() if k in wanted]
    for key, vals, bounds in sweep_values(cfg):
        key = key.lstrip("+~")
        if key.startswith("params.") and key[len("params.") :] in wanted:
            values += vals + list(bounds or ())
    return values


def _max_int(values: list[Any]) -> int:
    ints = []
    for v in values:
        try:
            ints.append(int(v))
        except (TypeError, ValueError):
            continue
    return max(ints, default=1)


def gpus_needed(cfg: DictConfig) -> int:
    """The most GPUs one trial takes: tp × dp over every value the study tries."""
    if not cfg.runtime.get("gpu_flag"):
        return 0
    tp = _max_int(flag_values(cfg, (str(cfg.runtime.gpu_flag),)))
    return tp * _max_int(flag_values(cfg, DP_FLAGS))


def gpu_pool(cfg: DictConfig) -> Check:
    """The engine's GPU count (tp × dp) fits ``deploy.gpus``."""
    name = "GPU count"
    need = gpus_needed(cfg)
    pool = cfg.deploy.get("gpus")
    if need == 0:
        return Check.ok(name, f"runtime {cfg.runtime.name} uses no GPU")
    if cfg.deploy.get("simulated"):
        return Check.ok(name, f"{need} simulated {cfg.deploy.get('gpu')} per trial")
    if pool is None:
        return Check.ok(name, f"{need} per trial; deploy.gpus not set (the engine sees all)")
    if need > len(pool):
        return Check.fail(
            name,
            f"a trial needs {need} GPUs (tp × dp) but deploy.gpus={list(pool)} has {len(pool)}",
            "list more GPUs in deploy.gpus, or lower tp-size / dp-size",
        )
    return Check.ok(name, f"{need} per trial of deploy.gpus={list(pool)}")


def checks(cfg: DictConfig, tracking: bool = True) -> list[Any]:
    """The common checks, as zero-argument callables (run by :mod:`autotune.doctor.run`).

    ``tracking=False`` at study start: the study has just opened its store itself.
    """
    start_dir = OmegaConf.select(cfg, "hydra.runtime.cwd", default=None)
    return [
        lambda: genai_bench(cfg),
        lambda: tokenizer(cfg),
        *([lambda: tracking_store(cfg, start_dir)] if tracking else []),
        lambda: free_disk(cfg),
        lambda: gpu_pool(cfg),
    ]
