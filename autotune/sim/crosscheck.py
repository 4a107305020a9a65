"""The real-time server, driven by genai-bench, against ``predict`` for the same workload.

    python -m autotune.sim crosscheck --model llama-3.1-70b --gpu h100_sxm --tp 4 \\
        --isl 2048 --osl 256 --concurrency 1,8,64

For each concurrency level: start ``autotune.sim.server`` on loopback, run the real
genai-bench CLI against it (closed loop, ``D(isl,osl)``, ignore_eos), stop the
server by its PID, and simulate the same closed loop on the virtual clock. One JSON
line per level: genai-bench's mean TTFT/TPOT, ``predict``'s, their relative
errors, and the server's own per-request timings against the virtual clock fed the
same arrivals (which isolates the server's fidelity from the client's overhead).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from autotune.deploy.processes import stop_process_group
from autotune.sim.predict import predict
from autotune.sim.settings import build_engine
from autotune.sim.types import SimRequest

SIM_TOKENIZER = Path(__file__).resolve().parent / "tokenizer"

_FINISH = re.compile(
    r"Finish: rid=(\w+), prompt_tokens=(\d+), completion_tokens=(\d+), cached_tokens=\d+, "
    r"arrival=([\d.]+), queued=([\d.]+), ttft=([\d.]+), e2e_latency=([\d.]+)"
)


def server_side_requests(log: str) -> list[dict[str, Any]]:
    """Per-request timings the server logged (``--log-requests``), warm-up excluded."""
    out = []
    for m in _FINISH.finditer(log):
        if not m[1].startswith("WARMUP"):
            out.append({"rid": m[1], "input": int(m[2]), "output": int(m[3]), "arrival": float(m[4]),
                        "queued": float(m[5]), "ttft": float(m[6]), "e2e": float(m[7])})  # fmt: skip
    return out


def replay_arrivals(reqs: list[dict[str, Any]], engine: Any) -> dict[str, tuple[float, float]]:
    """The virtual clock fed with the same requests at the times the server queued them
    (open loop; after tokenising): rid -> (ttft, e2e) in seconds from their arrival."""
    engine.token_event_interval = 0
    pending = sorted(reqs, key=lambda r: r["queued"])
    arrival = {r["rid"]: r["arrival"] for r in pending}
    first: dict[str, float] = {}
    out: dict[str, tuple[float, float]] = {}
    i, now = 0, 0.0
    while i < len(pending) or engine.has_work():
        while i < len(pending) and pending[i]["queued"] <= now:
            r = pending[i]
            engine.add(SimRequest(r["rid"], r["input"], r["output"], r["arrival"]))
            i += 1
        if not engine.has_work():
            # An idle server wakes when a request is queued and starts the step with
            # everything queued by then (within the event loop's wake-up latency,
            # ~2 ms on a busy machine), at the latest of their arrivals.
            wake, start = pending[i]["queued"] + 0.002, now
            while i < len(pending) and pending[i]["queued"] <= wake:
                r = pending[i]
                engine.add(SimRequest(r["rid"], r["input"], r["output"], r["arrival"]))
                start = max(start, r["arrival"])
                i += 1
            now = start
        step = engine.step(now)
        now += step.duration_s
        for ev in step.events:
            if ev.kind == "first_token":
                first[ev.rid] = ev.time
            elif ev.kind == "finished":
                out[ev.rid] = (first[ev.rid] - arrival[ev.rid], ev.time - arrival[ev.rid])
    return out


def _means(triples: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Mean TTFT and genai-bench-style TPOT (ms) of (ttft, e2e, output tokens) triples."""
    ttft = sum(t[0] for t in triples) / len(triples) * 1000
    tpot = sum((t[1] - t[0]) / (t[2] - 1) for t in triples) / len(triples) * 1000
    return ttft, tpot


def _free_port() -> int:
    from autotune.deploy import free_port

    return free_port()


def _start_server(workdir: Path, argv: list[str]) -> tuple[subprocess.Popen, str, Path]:
    port = _free_port()
    log = workdir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "autotune.sim.server", "--host", "127.0.0.1",
           "--port", str(port), *argv]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=1.0).status_code == 200:
                return proc, base, log
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    _stop(proc)
    raise RuntimeError(f"the server was not ready after 60 s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    stop_process_group(proc, 5.0)


def _genai_bench(
    base: str, workdir: Path, *, isl: int, osl: int, concurrency: int, num_requests: int
) -> dict[str, Any]:
    out = workdir / f"gb-c{concurrency}"
    cmd = [sys.executable, "-m", "genai_bench.cli.cli", "benchmark", "--api-backend", "sglang",
           "--api-base", base, "--api-key", "dummy", "--task", "text-to-text",
           "--api-model-name", "sim", "--model-tokenizer", str(SIM_TOKENIZER),
           "--traffic-scenario", f"D({isl},{osl})", "--num-concurrency", str(concurrency),
           "--max-requests-per-run", str(num_requests), "--max-time-per-run", "10",
           "--experiment-base-dir", str(workdir), "--experiment-folder-name", out.name,
           "--log-dir", str(out)]  # fmt: skip
    env = {**os.environ, "ENABLE_UI": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
           "MPLBACKEND": "Agg"}  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        proc.wait(900)
    finally:
        if proc.poll() is None:
            stop_process_group(proc, 0.0)
    runs = [p for p in out.glob("*.json") if "num_concurrency" in p.name]
    if not runs:
        raise RuntimeError(f"genai-bench wrote no run JSON (exit {proc.returncode})")
    return json.loads(runs[0].read_text())


def crosscheck(
    *,
    model: str,
    gpu: str,
    dtype: str,
    tp: int,
    isl: int,
    osl: int,
    concurrency: int,
    num_requests: int,
    workdir: Path,
) -> dict[str, Any]:
    """One concurrency level: genai-bench against a fresh server vs. ``predict``."""
    engine_args = ["--model-path", model, "--sim-model", model, "--sim-gpu", gpu,
                   "--sim-dtype", dtype, "--tp-size", str(tp), "--served-model-name", "sim",
                   "--log-requests", "--sim-startup-s", "0.3"]  # fmt: skip
    proc, base, log_path = _start_server(workdir, engine_args)
    try:
        data = _genai_bench(
            base, workdir, isl=isl, osl=osl, concurrency=concurrency, num_requests=num_requests
        )
    finally:
        _stop(proc)
    agg = data["aggregated_metrics"]
    scale = 1000.0 if data.get("_time_unit", "s") == "s" else 1.0

    def engine() -> Any:
        return build_engine({"tp-size": tp}, model=model, gpu=gpu, dtype=dtype)

    served = [r for r in server_side_requests(log_path.read_text()) if r["output"] == osl]
    replayed = replay_arrivals(served, engine())
    srv_ttft, srv_tpot = _means([(r["ttft"], r["e2e"], osl) for r in served])
    rep_ttft, rep_tpot = _means([(*replayed[r["rid"]], osl) for r in served])
    # predict's closed loop with the prompt length genai-bench really sent (its chat
    # template adds a few tokens to D(isl, ...)).
    input_tokens = round(agg["stats"]["num_input_tokens"]["mean"])
    predicted = predict(
        model=model, gpu=gpu, dtype=dtype, tp=tp, isl=input_tokens, osl=osl,
        concurrency=concurrency, num_requests=num_requests,
    )  # fmt: skip
    pred_ttft, pred_tpot = predicted["ttft_ms"], predicted["tpot_ms"]
    ttft = agg["stats"]["ttft"]["mean"] * scale
    tpot = agg["stats"]["tpot"]["mean"] * scale
    return {
        "simulated": True,
        "model": model, "gpu": gpu, "dtype": dtype, "tp": tp, "isl": isl, "osl": osl,
        "concurrency": concurrency,
        "requests": agg["num_completed_requests"],
        "errors": agg["num_error_requests"],
        "input_tokens": input_tokens,
        "ttft_ms": round(ttft, 2), "ttft_pred_ms": round(pred_ttft, 2),
        "ttft_err": round(ttft / pred_ttft - 1, 4),
        "tpot_ms": round(tpot, 3), "tpot_pred_ms": round(pred_tpot, 3),
        "tpot_err": round(tpot / pred_tpot - 1, 4),
        "server_ttft_ms": round(srv_ttft, 2), "replayed_ttft_ms": round(rep_ttft, 2),
        "server_ttft_err": round(srv_ttft / rep_ttft - 1, 4),
        "server_tpot_ms": round(srv_tpot, 3), "replayed_tpot_ms": round(rep_tpot, 3),
        "server_tpot_err": round(srv_tpot / rep_tpot - 1, 4),
        "lag_warnings": log_path.read_text().count("fell behind real time"),
        "load_avg": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m autotune.sim crosscheck", allow_abbrev=False)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--gpu", default="h200_sxm")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp8"])
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--isl", type=int, default=1024)
    ap.add_argument("--osl", type=int, default=256)
    ap.add_argument("--concurrency", default="1,8,64", help="comma-separated levels")
    ap.add_argument(
        "--requests-per-user", type=int, default=4, help="requests per level = this x concurrency"
    )
    ap.add_argument("--min-requests", type=int, default=16)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="autotune-crosscheck-") as tmp:
        for c in (int(x) for x in args.concurrency.split(",")):
            res = crosscheck(
                model=args.model, gpu=args.gpu, dtype=args.dtype, tp=args.tp, isl=args.isl,
                osl=args.osl, concurrency=c,
                num_requests=max(args.min_requests, args.requests_per_user * c),
                workdir=Path(tmp),
            )  # fmt: skip
            print(json.dumps(res), flush=True)
    return 0
