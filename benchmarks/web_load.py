"""Load on the web console: 20 clients polling a study and 5 SSE streams, through a
real-time simulator study of about 5 minutes. Measures errors, latency, and the
console's own CPU (psutil on its PID; the study process is not counted).

    .venv/bin/python benchmarks/web_load.py                 # ~5-6 minutes
    .venv/bin/python benchmarks/web_load.py --pollers 20 --streams 5 --json out.json

Goal (issue 15): no errors, console CPU < 10 % of one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

# A ~5-minute study: 7 trials, each a 30 s simulated start-up plus a short benchmark.
STUDY = [
    "params.mem=0.6,0.65,0.7,0.75,0.8,0.85,0.9",
    "deploy.startup_s=30",
    "benchmark.concurrency=[4]",
    "benchmark.max_requests_per_run=16",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.events = 0
        self.streams_done = 0

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


def poller(base: str, sid: str, stats: Stats, stop: threading.Event, every_s: float) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = client.get(f"{base}/api/studies/{sid}")
                if r.status_code != 200:
                    stats.error(f"GET {r.status_code}")
                else:
                    stats.ok(time.perf_counter() - t0)
            except httpx.HTTPError as e:
                stats.error(f"GET {type(e).__name__}")
            stop.wait(every_s)


def streamer(base: str, sid: str, stats: Stats, stop: threading.Event) -> None:
    """One SSE client; reconnects if the stream drops before the study ends."""
    with httpx.Client(timeout=httpx.Timeout(30, read=60)) as client:
        while not stop.is_set():
            try:
                with client.stream("GET", f"{base}/api/studies/{sid}/events") as r:
                    if r.status_code != 200:
                        stats.error(f"SSE {r.status_code}")
                        stop.wait(1)
                        continue
                    for line in r.iter_lines():
                        if line.startswith("event: status"):
                            with stats.lock:
                                stats.events += 1
                        if line.startswith("event: end"):
                            with stats.lock:
                                stats.streams_done += 1
                            return
            except httpx.HTTPError as e:
                if not stop.is_set():
                    stats.error(f"SSE {type(e).__name__}")
                    stop.wait(1)


def start_console(workdir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "autotune.web", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=open(workdir / "console.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    for _ in range(120):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/studies", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"console did not start: {(workdir / 'console.log').read_text()[-2000:]}")


def run(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="web-load-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    console = start_console(workdir, port)
    ps = psutil.Process(console.pid)
    stats, stop = Stats(), threading.Event()
    try:
        r = httpx.post(f"{base}/api/studies", json={"overrides": STUDY}, timeout=60)
        r.raise_for_status()
        sid = r.json()["id"]
        cpu0, t0 = ps.cpu_times(), time.monotonic()
        threads = [
            threading.Thread(target=poller, args=(base, sid, stats, stop, args.every), daemon=True)
            for _ in range(args.pollers)
        ] + [
            threading.Thread(target=streamer, args=(base, sid, stats, stop), daemon=True)
            for _ in range(args.streams)
        ]
        for t in threads:
            t.start()
        samples, last_cpu, last_t, status = [], cpu0, t0, {}
        while time.monotonic() - t0 < args.max_s:
            time.sleep(10)
            cpu, now = ps.cpu_times(), time.monotonic()
            samples.append(
                (cpu.user + cpu.system - last_cpu.user - last_cpu.system) / (now - last_t)
            )
            last_cpu, last_t = cpu, now
            status = httpx.get(f"{base}/api/studies/{sid}", timeout=30).json()
            if status["status"] != "running":
                break
        time.sleep(3)  # let the streams see the end
        cpu1, t1 = ps.cpu_times(), time.monotonic()
        stop.set()
        for t in threads:
            t.join(timeout=35)
    finally:
        stop.set()
        study_pid = _study_pid(workdir)
        console.send_signal(signal.SIGTERM)
        console.wait(15)
        if study_pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(study_pid, signal.SIGINT)
    lat = sorted(stats.latencies)
    wall = t1 - t0
    return {
        "study": {
            k: status.get(k) for k in ("status", "trials_done", "trials_failed", "trials_total")
        },
        "duration_s": round(wall, 1),
        "pollers": args.pollers,
        "streams": args.streams,
        "requests": len(lat),
        "errors": len(stats.errors),
        "error_kinds": sorted(set(stats.errors))[:5],
        "sse_status_events": stats.events,
        "sse_streams_ended_cleanly": stats.streams_done,
        "latency_ms_p50": round(1000 * statistics.median(lat), 1) if lat else None,
        "latency_ms_p99": round(1000 * lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
        "console_cpu_pct_of_one_core": round(
            100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 2
        ),
        "console_cpu_pct_max_10s_window": round(100 * max(samples), 1) if samples else None,
        "store_note": "one shared MLflow snapshot per refresh interval (2 s)",
    }


def _study_pid(workdir: Path) -> int | None:
    for path in (workdir / ".autotune-web" / "launches").glob("*.json"):
        pid = json.loads(path.read_text())["pid"]
        if psutil.pid_exists(pid):
            return pid
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pollers", type=int, default=20)
    p.add_argument("--streams", type=int, default=5)
    p.add_argument("--every", type=float, default=1.0, help="seconds between a poller's GETs")
    p.add_argument("--max-s", type=float, default=600.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    from rich.console import Console

    Console().print_json(text)
    ok = result["errors"] == 0 and result["console_cpu_pct_of_one_core"] < 10
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
