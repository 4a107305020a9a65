"""Drive genai-bench 0.0.5 as a child process and keep whatever it produced.

genai-bench is never imported here: importing it gevent-monkey-patches the whole
interpreter. It runs as ``python -m autotune.benchmark.genai_bench_child benchmark ...``
(genai-bench's own CLI without its xlsx/PNG reports, see that module; ``reports=True``
runs ``python -m genai_bench.cli.cli`` itself) with the given interpreter, in its own
process group, with stdin closed and an offline, UI-less environment (see
/work/shared/notes/genai-bench.md for why each matters).

Public API::

    Workload(scenarios, concurrency, max_requests_per_run, max_time_per_run_min,
             task="text-to-text", api_backend="sglang", additional_args=())
    build_command(base_url, model_name, tokenizer, workload, out_dir, api_key,
                  python=sys.executable, reports=False) -> list[str]
    benchmark_env(base_url, base_env=None) -> dict[str, str]
    run_genai_bench(base_url, model_name, tokenizer, workload, out_dir, *,
                    timeout_s, api_key=None, on_progress=None,
                    python=sys.executable, grace_s=10.0, secrets=(),
                    reports=False) -> BenchmarkRun
    scrub_secrets(folder, secrets) -> list[Path]

Example::

    wl = Workload(["D(100,100)"], [1, 4], max_requests_per_run=40, max_time_per_run_min=2)
    run = run_genai_bench("http://127.0.0.1:30123", "served-name", "/models/tok",
                          wl, Path("trial_7/genai_bench"), timeout_s=600,
                          on_progress=lambda msg: log.info(msg))
    if run.ok or run.partial:
        result = parse_experiment(run.folder)

``out_dir`` IS the experiment folder (genai-bench gets its parent as
``--experiment-base-dir`` and its name as ``--experiment-folder-name``); it must
be absent or empty. It ends up holding genai-bench's own files plus
``genai_bench.console.log``: its stdout and stderr (click usage errors and
tracebacks land there), a superset of genai-bench's own ``genai_bench.log``,
which is therefore deleted.

The API key is mandatory for genai-bench's OpenAI-style backends but only a dummy
for local engines; when none is given a random one is made up so that scrubbing
it can never clobber ordinary text. It is replaced by ``***`` in every file of the
folder after the run, in the console log as it is written, and in
``BenchmarkRun.command``.

Progress: genai-bench logs ``Starting benchmark with concurrency=N`` when a run
(one scenario x concurrency pair) begins; ``on_progress`` then receives
``"benchmarking cN"`` (``"benchmarking <scenario> cN"`` when the workload has
several scenarios). Exceptions raised by the callback are logged and ignored.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets as _secrets
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from autotune.benchmark.dataset import DATASET_SCENARIO
from autotune.benchmark.parse import find_run_files, parse_run_file
from autotune.benchmark.scenarios import normalize_scenario
from autotune.deploy.processes import interrupts_held, stop_process_group

__all__ = [
    "BenchmarkRun",
    "Workload",
    "benchmark_env",
    "build_command",
    "run_genai_bench",
    "scrub_secrets",
]

log = logging.getLogger(__name__)

CONSOLE_LOG = "genai_bench.console.log"
GENAI_BENCH_LOG = "genai_bench.log"
GENAI_BENCH_MODULE = "genai_bench.cli.cli"
# genai-bench's CLI minus the xlsx/PNG reports it makes after the last run.
NO_REPORTS_MODULE = "autotune.benchmark.genai_bench_child"
MASK = "***"

# Options the driver sets itself; additional_args must not repeat or override them.
_MANAGED_OPTIONS = frozenset(
    {
        "--api-backend",
        "--api-base",
        "--api-key",
        "--task",
        "--api-model-name",
        "--model-tokenizer",
        "--traffic-scenario",
        "--num-concurrency",
        "--max-requests-per-run",
        "--max-time-per-run",
        "--experiment-base-dir",
        "--experiment-folder-name",
        "--log-dir",
        "--dataset-path",
        "--dataset-config",
        "--prefix-len",
        "--prefix-ratio",
    }
)
# Options that break an unattended, offline, comparable run.
_REFUSED_OPTIONS = {
    "--upload-results": "uploads need network and credentials",
    "--warmup-ratio": "genai-bench does not shorten run_duration, halving throughput",
    "--cooldown-ratio": "genai-bench does not shorten run_duration, lowering throughput",
    "--model-api-key": "a secret on the command line; pass api_key instead",
    "--iteration-type": "only num_concurrency runs are parsed",
}
# genai-bench reads these as option defaults and echoes every set option, secrets
# included, into experiment_metadata.json's `cmd`: keep them out of its environment.
_GENAI_BENCH_OPTION_ENVVARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_AD_TOKEN",
    "AZURE_OPENAI_API_VERSION",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN",
    "GCP_LOCATION",
    "GCP_PROJECT_ID",
    "GITHUB_OWNER",
    "GITHUB_REPO",
    "GITHUB_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "MODEL_API_KEY",
)
_START_RE = re.compile(r"Starting benchmark with concurrency=(\d+)")


@dataclass
class Workload:
    """What genai-bench runs: every scenario at every concurrency level, in order.

    ``max_time_per_run_min`` is in whole minutes (genai-bench's unit); a run also
    ends after ``max_requests_per_run`` requests, checked once a second, so a fast
    server overshoots it a little. Scenario strings are validated and normalised
    (spaces removed) on construction.

        >>> Workload(["D(64, 32)"], [1, 4], 20, 1).scenarios
        ['D(64,32)']
    """

    scenarios: list[str]
    concurrency: list[int]
    max_requests_per_run: int
    max_time_per_run_min: int
    task: str = "text-to-text"
    api_backend: str = "sglang"
    additional_args: Sequence[str] = ()
    # Unmeasured requests before the first measured run (not a genai-bench option:
    # autotune.benchmark.warmup / the virtual clock send them).
    warmup_requests: int = 0
    # Dataset mode (scenarios == ["dataset"]): a JSON list of prompt strings
    # (autotune.benchmark.dataset.write_prompt_list) and the max_tokens of every request.
    dataset_file: str | None = None
    max_tokens: int | None = None
    # genai-bench's shared prefix (--prefix-len / --prefix-ratio); 0 = none.
    prefix_len: int = 0
    prefix_ratio: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.scenarios, str):
            self.scenarios = [self.scenarios]
        if not self.scenarios:
            raise ValueError("Workload.scenarios is empty")
        if self.dataset_file is not None:
            if list(self.scenarios) != [DATASET_SCENARIO]:
                raise ValueError(f"a dataset workload has scenarios ['{DATASET_SCENARIO}']")
            if self.prefix_len or self.prefix_ratio:
                raise ValueError("genai-bench has no shared prefix in dataset mode")
        else:
            self.scenarios = [normalize_scenario(s) for s in self.scenarios]
        if self.prefix_len and self.prefix_ratio:
            raise ValueError("prefix_len and prefix_ratio are mutually exclusive")
        if len(set(self.scenarios)) != len(self.scenarios):
            raise ValueError(f"Workload.scenarios has duplicates: {self.scenarios}")
        if isinstance(self.concurrency, int):
            self.concurrency = [self.concurrency]
        self.concurrency = [_positive_int("concurrency", c) for c in self.concurrency]
        if not self.concurrency:
            raise ValueError("Workload.concurrency is empty")
        if len(set(self.concurrency)) != len(self.concurrency):
            raise ValueError(f"Workload.concurrency has duplicates: {self.concurrency}")
        self.max_requests_per_run = _positive_int("max_requests_per_run", self.max_requests_per_run)
        self.max_time_per_run_min = _positive_int(
            "max_time_per_run_min (whole minutes)", self.max_time_per_run_min
        )
        if self.task != "text-to-text":
            raise ValueError(f"task {self.task!r} is not supported: only text-to-text is parsed")
        self.additional_args = [str(a) for a in self.additional_args]
        _check_additional_args(self.additional_args)

    def runs(self) -> list[tuple[str, int]]:
        """The (scenario, concurrency) pairs in the order genai-bench runs them."""
        return [(s, c) for s in self.scenarios for c in self.concurrency]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_additional_args(args: Sequence[str]) -> None:
    for arg in args:
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        if name in _MANAGED_OPTIONS:
            raise ValueError(f"additional_args may not set {name}: the driver sets it")
        if name in _REFUSED_OPTIONS:
            raise ValueError(f"additional_args may not use {name}: {_REFUSED_OPTIONS[name]}")
    if any("ignore_eos" in a for a in args):
        # ignore_eos=false makes genai-bench prompt on stdin; the sampler forces true.
        raise ValueError("additional_args may not set ignore_eos")


@dataclass
class BenchmarkRun:
    """What one genai-bench invocation left behind.

    ``partial``: some runs produced a result file, but not all requested ones (or
    genai-bench failed / was killed after producing some). ``ok``: exit 0, not
    timed out, every requested run has a result file.
    """

    folder: Path
    returncode: int | None
    timed_out: bool
    partial: bool
    log_path: Path
    command: list[str]  # API key replaced by ***
    duration_s: float = 0.0
    run_files: list[Path] = field(default_factory=list)
    missing_runs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.missing_runs

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of genai-bench's console output (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def build_command(
    base_url: str,
    model_name: str,
    tokenizer: str | os.PathLike[str],
    workload: Workload,
    out_dir: str | os.PathLike[str],
    api_key: str,
    *,
    python: str = sys.executable,
    reports: bool = False,
) -> list[str]:
    """The argv list (no shell) that runs genai-bench for ``workload`` into ``out_dir``.

    ``reports``: also let genai-bench write its summary xlsx and PNG plots (seconds
    of CPU after the last run, engine idle meanwhile); without, the same JSON result
    files, through ``genai_bench_child``.

    The first options are in the order genai-bench's click callbacks need
    (``--api-backend``, ``--api-base``, ``--api-key``, ``--task``); list options are
    repeated once per value. ``base_url`` is the server root, without ``/v1``.

        >>> wl = Workload(["D(64,32)"], [1, 4], 20, 1)
        >>> build_command("http://127.0.0.1:9", "m", "/tok", wl, "/x/run", "k")[3:11]
        ['benchmark', '--api-backend', 'sglang', '--api-base', 'http://127.0.0.1:9', '--api-key', 'k', '--task']
    """
    base_url = base_url.rstrip("/")
    if base_url.endswith("/v1"):
        raise ValueError(f"base_url must not end with /v1 (genai-bench adds it): {base_url}")
    if not api_key:
        raise ValueError("api_key must be a non-empty string")
    out = Path(out_dir).absolute()
    cmd = [
        python,
        "-m",
        GENAI_BENCH_MODULE if reports else NO_REPORTS_MODULE,
        "benchmark",
        "--api-backend",
        workload.api_backend,
        "--api-base",
        base_url,
        "--api-key",
        api_key,
        "--task",
        workload.task,
        "--api-model-name",
        model_name,
        "--model-tokenizer",
        str(tokenizer),
    ]
    for scenario in workload.scenarios:
        cmd += ["--traffic-scenario", scenario]
    for concurrency in workload.concurrency:
        cmd += ["--num-concurrency", str(concurrency)]
    cmd += [
        "--max-requests-per-run",
        str(workload.max_requests_per_run),
        "--max-time-per-run",
        str(workload.max_time_per_run_min),
        "--experiment-base-dir",
        str(out.parent),
        "--experiment-folder-name",
        out.name,
        "--log-dir",
        str(out),
        *_workload_options(workload),
        *workload.additional_args,
    ]
    return cmd


def _workload_options(workload: Workload) -> list[str]:
    """Dataset and shared-prefix options (after --task, which their callbacks read)."""
    out: list[str] = []
    if workload.dataset_file is not None:
        out += ["--dataset-path", str(workload.dataset_file)]
        if workload.max_tokens is not None:
            # Spread into every request after genai-bench's own max_tokens (null in
            # dataset mode), so it wins.
            params = json.dumps({"max_tokens": int(workload.max_tokens)})
            out += ["--additional-request-params", params]
    if workload.prefix_len:
        out += ["--prefix-len", str(int(workload.prefix_len))]
    if workload.prefix_ratio:
        out += ["--prefix-ratio", repr(float(workload.prefix_ratio))]
    return out


def benchmark_env(base_url: str, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child environment: no UI, offline, unbuffered, no stray credentials.

    The server host is added to ``NO_PROXY`` so that a proxy configured for
    package downloads never sees benchmark traffic.
    """
    env = dict(os.environ if base_env is None else base_env)
    for name in _GENAI_BENCH_OPTION_ENVVARS:
        env.pop(name, None)
    env.update(
        ENABLE_UI="false",  # the rich UI calls sys.exit(1) on any ERROR log line
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",  # progress lines must arrive while the run is going
        MPLBACKEND="Agg",
    )
    host = urlsplit(base_url).hostname or ""
    no_proxy = [h for h in env.get("NO_PROXY", env.get("no_proxy", "")).split(",") if h]
    for h in ("127.0.0.1", "localhost", "::1", host):
        if h and h not in no_proxy:
            no_proxy.append(h)
    env["NO_PROXY"] = env["no_proxy"] = ",".join(no_proxy)
    return env


def scrub_secrets(folder: str | os.PathLike[str], secrets: Iterable[str]) -> list[Path]:
    """Replace every secret by ``***`` in all files under ``folder``; return the files changed.

    Plain files are rewritten byte-wise (the secret and its JSON-escaped form);
    zip containers (genai-bench's .xlsx) are rewritten member by member, since
    their compressed bytes would hide the secret. Empty secrets are ignored.

        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "m.json").write_text('{"cmd": "--api-key s3cr3t"}')
        >>> [p.name for p in scrub_secrets(d, ["s3cr3t"])], (d / "m.json").read_text()
        (['m.json'], '{"cmd": "--api-key ***"}')
    """
    needles = _needles(secrets)
    if not needles:
        return []
    changed = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            if _scrub_file(path, needles):
                changed.append(path)
        except OSError as err:
            log.warning("could not scrub %s: %s", path, err)
    return changed


def _needles(secrets: Iterable[str]) -> list[bytes]:
    out: set[bytes] = set()
    for secret in secrets:
        if not secret:
            continue
        out.add(secret.encode())
        out.add(json.dumps(secret)[1:-1].encode())
    # Longest first, so a secret containing another is masked whole.
    return sorted(out, key=len, reverse=True)


def _mask(data: bytes, needles: list[bytes]) -> bytes:
    for needle in needles:
        data = data.replace(needle, MASK.encode())
    return data


def _scrub_file(path: Path, needles: list[bytes]) -> bool:
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04" and zipfile.is_zipfile(path):
        return _scrub_zip(path, needles)
    masked = _mask(data, needles)
    if masked == data:
        return False
    tmp = path.with_name(path.name + ".scrub-tmp")
    tmp.write_bytes(masked)
    os.replace(tmp, path)
    return True


def _scrub_zip(path: Path, needles: list[bytes]) -> bool:
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    masked = [(info, _mask(data, needles)) for info, data in members]
    if all(m == d for (_, m), (_, d) in zip(masked, members, strict=True)):
        return False
    tmp = path.with_name(path.name + ".scrub-tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in masked:
            dst.writestr(info, data)
    os.replace(tmp, path)
    return True


def run_genai_bench(
    base_url: str,
    model_name: str,
    tokenizer: str | os.PathLike[str],
    workload: Workload,
    out_dir: str | os.PathLike[str],
    *,
    timeout_s: float,
    api_key: str | None = None,
    on_progress: Callable[[str], None] | None = None,
    python: str = sys.executable,
    grace_s: float = 10.0,
    secrets: Iterable[str] = (),
    reports: bool = False,
    stop_when: Callable[[], bool] | None = None,
) -> BenchmarkRun:
    """Run genai-bench to completion or until ``timeout_s`` wall-clock seconds pass.

    On timeout (or if this call is interrupted) the whole process group gets
    SIGTERM, then SIGKILL after ``grace_s``; result files written so far are kept.
    The result never raises for a failed benchmark: inspect ``ok``, ``partial``,
    ``returncode`` and ``log_tail()``. It raises ``FileExistsError`` if ``out_dir``
    is not empty (stale result files would be parsed as this run's), and what
    ``subprocess.Popen`` raises if ``python`` cannot be started.

    ``secrets``: more values to mask like the API key (e.g. an HF token that
    might surface in a traceback); the console log is masked as it is written.
    ``reports``: see ``build_command``. ``stop_when``: polled while genai-bench runs;
    True stops it like a timeout, without ``timed_out`` (early abort between levels:
    the finished runs' files stay, the run in progress is dropped).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    folder = Path(out_dir).absolute()
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"benchmark folder is not empty: {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    api_key = api_key or f"autotune-dummy-{_secrets.token_hex(8)}"
    cmd = build_command(
        base_url, model_name, tokenizer, workload, folder, api_key, python=python, reports=reports
    )
    shown = [MASK if a == api_key else a for a in cmd]
    log_path = folder / CONSOLE_LOG
    secrets = [s for s in secrets if s]
    needles = _needles([api_key, *secrets])
    progress = _Progress(workload, on_progress)
    log.info("starting genai-bench: %s", subprocess.list2cmdline(shown))

    started = time.monotonic()
    timed_out = False
    try:
        with open(log_path, "wb") as console:
            proc: subprocess.Popen | None = None
            reader: threading.Thread | None = None
            try:
                # Its own process group does not get the terminal's Ctrl-C: a signal
                # between Popen returning and this try would leave genai-bench running.
                with interrupts_held():
                    proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        cwd=folder,  # what genai-bench drops in its cwd stays with the results
                        env=benchmark_env(base_url),
                        start_new_session=True,  # own process group: one killpg stops all
                    )
                reader = threading.Thread(
                    target=_pump, args=(proc, console, needles, progress), daemon=True
                )
                reader.start()
                exited = _wait_exit(proc, started + timeout_s, stop_when)
                timed_out = not exited and time.monotonic() >= started + timeout_s
                if timed_out:
                    log.warning("genai-bench exceeded %.0f s, stopping it", timeout_s)
            finally:
                if proc is not None:
                    # The leader is unreaped here, so the group id is still ours to signal.
                    stop_process_group(proc, 0.0 if _exited(proc.pid) else grace_s)
                if reader is not None:
                    reader.join(timeout=10)
    finally:
        # Also when interrupted: no secret stays on disk.
        scrub_secrets(folder, [api_key, *secrets])
    duration = time.monotonic() - started
    _drop_duplicate_log(folder, log_path)  # after scrubbing: sizes compare like for like
    run_files, found = _list_runs(folder)
    missing = [r for r in workload.runs() if r not in found]
    partial = bool(run_files) and (timed_out or proc.returncode != 0 or bool(missing))
    run = BenchmarkRun(
        folder=folder,
        returncode=proc.returncode,
        timed_out=timed_out,
        partial=partial,
        log_path=log_path,
        command=shown,
        duration_s=duration,
        run_files=run_files,
        missing_runs=missing,
    )
    level = logging.INFO if run.ok else logging.WARNING
    log.log(
        level,
        "genai-bench finished: rc=%s timed_out=%s runs=%d/%d in %.1f s",
        proc.returncode,
        timed_out,
        len(found),
        len(workload.runs()),
        duration,
    )
    return run


class _Progress:
    """Turns genai-bench's "Starting benchmark" log lines into progress messages."""

    def __init__(self, workload: Workload, callback: Callable[[str], None] | None) -> None:
        self.runs = workload.runs()
        self.several = len(workload.scenarios) > 1
        self.callback = callback
        self.started = 0

    def line(self, text: str) -> None:
        match = _START_RE.search(text)
        if match is None or self.callback is None:
            return
        concurrency = int(match.group(1))
        index = min(self.started, len(self.runs) - 1)
        self.started += 1
        scenario = self.runs[index][0]
        message = (
            f"benchmarking {scenario} c{concurrency}"
            if self.several
            else f"benchmarking c{concurrency}"
        )
        try:
            self.callback(message)
        except Exception:
            log.exception("on_progress callback failed for %r", message)


def _pump(proc: subprocess.Popen, sink, needles: list[bytes], progress: _Progress) -> None:
    # Runs in a thread: copy the child's output to the console log, masking the key
    # before it touches the disk, and feed the progress parser.
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        line = _mask(raw, needles)
        sink.write(line)
        sink.flush()
        progress.line(line.decode(errors="replace"))


def _exited(pid: int) -> bool:
    """True once the child has exited, without reaping it (WNOWAIT)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _wait_exit(
    proc: subprocess.Popen, deadline: float, stop_when: Callable[[], bool] | None = None
) -> bool:
    while time.monotonic() < deadline:
        if _exited(proc.pid):
            return True
        if stop_when is not None and stop_when():
            return _exited(proc.pid)
        time.sleep(0.2)
    return _exited(proc.pid)


def _drop_duplicate_log(folder: Path, console_log: Path) -> None:
    # genai_bench.log holds the same records as the console log (which also has
    # stderr): keep one copy, unless the console capture came up short.
    file_log = folder / GENAI_BENCH_LOG
    try:
        if file_log.exists() and console_log.stat().st_size >= file_log.stat().st_size:
            file_log.unlink()
    except OSError as err:
        log.debug("keeping %s: %s", file_log, err)


def _list_runs(folder: Path) -> tuple[list[Path], set[tuple[str, int]]]:
    """Regular run result files in ``folder`` and the (scenario, concurrency) pairs they hold."""
    files, found = [], set()
    for path in find_run_files(folder):
        run = parse_run_file(path)
        if run is not None and not run.aborted:
            files.append(path)
            found.add((run.scenario, run.concurrency))
    return files, found
