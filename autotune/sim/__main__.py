"""``python -m autotune.sim {predict,validate,serve} ...`` — the simulated engine's CLI.

    python -m autotune.sim predict --model llama-3.1-8b --gpu h200_sxm --tp 1 --dtype fp8 \\
        --isl 1024 --osl 256 --concurrency 32 --mem-fraction-static=0.8 --json
    python -m autotune.sim validate --rows tests/fixtures/silicon_sample_sglang_llama31_8b_fp8_h200.csv
    python -m autotune.sim serve ...          # the real-time HTTP server (autotune.sim.server)
    python -m autotune.sim crosscheck ...     # genai-bench vs. the server vs. predict

Any unknown ``--flag[=value]`` of ``predict`` is an SGLang launch flag by its native name.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from autotune.sim.types import SimStartupError


def parse_engine_flags(items: list[str]) -> dict[str, Any]:
    """``["--mem-fraction-static=0.8", "--enable-mixed-chunk", "--schedule-policy", "lpm"]``
    -> ``{"mem-fraction-static": "0.8", "enable-mixed-chunk": True, "schedule-policy": "lpm"}``.
    """
    flags: dict[str, Any] = {}
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--"):
            raise ValueError(f"unexpected argument {item!r}; engine flags look like --name=value")
        name = item[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            flags[name] = value
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            flags[name] = items[i + 1]
            i += 1
        else:
            flags[name] = True
        i += 1
    return flags


def _predict(argv: list[str]) -> int:
    from autotune.sim.predict import predict

    ap = argparse.ArgumentParser(prog="python -m autotune.sim predict", allow_abbrev=False)
    ap.add_argument("--model", required=True)
    ap.add_argument("--gpu", required=True)
    ap.add_argument("--tp", type=int, default=None, help="tensor-parallel size (or --tp-size=N)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp8"])
    ap.add_argument("--isl", type=int, required=True)
    ap.add_argument("--osl", type=int, required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sglang-version", default=None, help="SGLang version whose defaults are imitated"
    )
    ap.add_argument("--num-requests", type=int, default=None)
    ap.add_argument(
        "--osl-spread", type=float, default=0.0, help="output lengths uniform in osl*(1 +- spread)"
    )
    ap.add_argument(
        "--json", action="store_true", help="print one JSON object (the default output)"
    )
    args, extra = ap.parse_known_args(argv)
    try:
        flags = parse_engine_flags(extra)
    except ValueError as err:
        ap.error(str(err))
    tp = args.tp
    for key in ("tp-size", "tp", "tensor-parallel-size"):
        if key in flags:
            tp = int(flags.pop(key))
    try:
        out = predict(
            model=args.model,
            gpu=args.gpu,
            dtype=args.dtype,
            tp=tp or 1,
            isl=args.isl,
            osl=args.osl,
            concurrency=args.concurrency,
            flags=flags,
            seed=args.seed,
            num_requests=args.num_requests,
            osl_spread=args.osl_spread,
            sglang_version=args.sglang_version,
        )
    except SimStartupError as err:
        print(json.dumps({"simulated": True, "error": "startup", "message": str(err)}))
        return 3
    except ValueError as err:
        print(json.dumps({"simulated": True, "error": "invalid", "message": str(err)}))
        return 2
    print(json.dumps(out))
    return 0


def _validate(argv: list[str]) -> int:
    """Always prints one JSON line: the summary, or ``{"error": "rows", ...}`` (exit 2)."""
    from autotune.sim.validate import (
        DEFAULT_OSL_SPREAD,
        DEFAULT_REQUESTS_PER_USER,
        RowsError,
        read_all_rows,
        row_errors,
        summarize,
    )

    ap = argparse.ArgumentParser(prog="python -m autotune.sim validate", allow_abbrev=False)
    ap.add_argument("--rows", required=True, help="CSV in aiconfigurator silicon_sample.csv format")
    ap.add_argument("--osl-spread", type=float, default=DEFAULT_OSL_SPREAD)
    ap.add_argument("--requests-per-user", type=float, default=DEFAULT_REQUESTS_PER_USER)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--per-row", action="store_true", help="also print one JSON line per row (to stderr)"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        rows, excluded = read_all_rows(args.rows)
    except RowsError as err:
        print(json.dumps({"simulated": True, "error": "rows", "message": str(err)}))
        return 2
    errs = row_errors(
        rows, osl_spread=args.osl_spread, requests_per_user=args.requests_per_user, seed=args.seed
    )
    if args.per_row:
        for e in errs:
            print(json.dumps(e), file=sys.stderr)
    out = summarize(errs)
    for key in ("coverage", "tpot_mape", "ttft_mape"):
        if out[key] is not None:
            out[key] = round(out[key], 4)
    out["excluded"] = dict(sorted(excluded.items()))
    out["elapsed_s"] = round(time.perf_counter() - t0, 2)
    out["simulated"] = True
    print(json.dumps(out))
    return 0 if out["predicted"] else 1


def _serve(argv: list[str]) -> int:
    from autotune.sim.server import main  # written separately; imported only when serving

    result = main(argv)
    return int(result or 0)


def _crosscheck(argv: list[str]) -> int:
    from autotune.sim.crosscheck import main

    return main(argv)


COMMANDS = {
    "predict": _predict,
    "validate": _validate,
    "serve": _serve,
    "crosscheck": _crosscheck,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m autotune.sim {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
