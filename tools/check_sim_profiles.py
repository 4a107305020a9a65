"""How close are the baked, interpolated tables to aiconfigurator's own answers?

Build-time check, run in the separate environment that has aiconfigurator-core:

    /work/aic-venv/bin/python tools/check_sim_profiles.py [--samples 300]

For a few profiles it draws random decode steps (batch 1-512, context 64-16k) and
prefill chunks (64-8192 tokens over a 0-16k prefix), prices them with
``autotune.sim.perf.StepPerf`` (kernel time only: no host overhead, no CUDA-graph
padding) and with a direct aiconfigurator evaluation of the full op list, and prints
the median / 95th-percentile / max relative difference per profile as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from bake_sim_profiles import DTYPES, _model_path, _sglang_data_version  # noqa: E402

from autotune.sim.perf import HostOverhead, load_perf  # noqa: E402

PROFILES = [
    ("llama-3.1-8b", "h200_sxm", "fp8", 1),
    ("llama-3.1-8b", "h100_sxm", "bf16", 2),
    ("llama-3.1-70b", "h200_sxm", "fp8", 4),
    ("qwen3-32b", "h100_sxm", "bf16", 8),
    ("qwen2.5-7b", "h200_sxm", "bf16", 1),
]


def check(model: str, gpu: str, dtype: str, tp: int, samples: int, tmp: Path) -> dict:
    from aiconfigurator_core.sdk.engine import EngineHandle

    handle = EngineHandle.compile(
        _model_path(model, tmp),
        gpu,
        "sglang",
        backend_version=_sglang_data_version(gpu),
        tp_size=tp,
        gemm_quant_mode=DTYPES[dtype],
    )
    ctx_ops, gen_ops = handle.run_static_per_op(batch_size=1, isl=128, osl=2)
    ctx_all = list(range(len(ctx_ops)))
    gen_all = list(range(len(gen_ops)))
    perf = load_perf(model, gpu, dtype, tp, HostOverhead(step_ms=0.0, seq_us=0.0))
    rng = random.Random(0)
    decode_err, prefill_err = [], []
    for _ in range(samples):
        b = rng.randint(1, 512)
        ell = rng.randint(64, 16384)
        direct = sum(op[1] for op in handle.evaluate_generation_ops(gen_all, batch_size=b, s=ell))
        ours = perf.na_ms(b) + perf.lg_ms(b) + perf.da_ms(b, float(ell))
        decode_err.append(abs(ours - direct) / direct)
        q = rng.randint(64, 8192)
        p = rng.choice([0, rng.randint(0, 16384)])
        direct = sum(
            op[1] for op in handle.evaluate_context_ops(ctx_all, batch_size=1, s=q, prefix=p)
        )
        ours = perf.na_ms(q) + perf.lg_ms(1) + perf.ca_ms(q, p)
        prefill_err.append(abs(ours - direct) / direct)

    def summary(errs: list[float]) -> dict:
        s = sorted(errs)
        return {
            "median": round(statistics.median(s), 4),
            "p95": round(s[int(0.95 * (len(s) - 1))], 4),
            "max": round(s[-1], 4),
        }

    return {
        "profile": f"{model}/{gpu}/{dtype}/tp{tp}",
        "decode_step": summary(decode_err),
        "prefill_chunk": summary(prefill_err),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        for prof in PROFILES:
            print(json.dumps(check(*prof, samples=args.samples, tmp=Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
