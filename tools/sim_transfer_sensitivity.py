"""How much of a simulated TPOT / TTFT rests on the parts fitted on the calibration rows,
on configurations away from them (another model, GPU, dtype, SGLang version).

No measured row is read: every configuration is simulated with validate's replay
(``autotune.sim.validate.simulate_row``) and again with one part changed, and the
ratio is printed per TP size, averaged over concurrency 16-128 and three shapes:

- ``no_host``: the fitted host constants (3 ms a step, 6 us a sequence) set to zero:
  the host model's share of the prediction;
- ``exact``: exact output lengths and 10 requests per user instead of validate's
  spread and first round: how far wave synchronisation would move the numbers.

    .venv/bin/python tools/sim_transfer_sensitivity.py
    .venv/bin/python tools/sim_transfer_sensitivity.py --model qwen3-32b --gpu h100_sxm --dtype bf16 --version 0.5.1
"""

from __future__ import annotations

import argparse
import itertools
import statistics

from autotune.sim.perf import HostOverhead
from autotune.sim.validate import SiliconRow, simulate_row

CONFIGS = (
    ("llama-3.1-8b", "h200_sxm", "fp8", "0.5.6.post2"),  # the calibration rows' setting
    ("qwen3-32b", "h100_sxm", "bf16", "0.5.1"),
    ("llama-3.1-70b", "h100_sxm", "bf16", "0.4.6"),
)
CONCURRENCY = (16, 32, 64, 128)
SHAPES = ((1000, 500), (4000, 500), (2000, 1000))
NO_HOST = HostOverhead(step_ms=0.0, seq_us=0.0)


def ratios(model: str, gpu: str, dtype: str, version: str, tp: int) -> dict[str, float] | None:
    """Mean ratio of each variant's (TTFT, TPOT) to validate's replay, or None when the
    configuration cannot start (e.g. a 70B model on one 80 GB GPU)."""
    out: dict[str, list[float]] = {k: [] for k in ("no_host_tpot", "exact_ttft", "exact_tpot")}
    for c, (isl, osl) in itertools.product(CONCURRENCY, SHAPES):
        row = SiliconRow("x", model, gpu, dtype, tp, isl, osl, c, 1.0, 1.0, sglang_version=version)
        try:
            ttft, tpot = simulate_row(row)
        except Exception:
            return None
        out["no_host_tpot"].append(simulate_row(row, host=NO_HOST)[1] / tpot)
        exact = simulate_row(row, osl_spread=0.0, requests_per_user=10)
        out["exact_ttft"].append(exact[0] / ttft)
        out["exact_tpot"].append(exact[1] / tpot)
    return {k: statistics.mean(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--gpu", default="h100_sxm")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--version", default="0.5.1")
    args = ap.parse_args()
    configs = [(args.model, args.gpu, args.dtype, args.version)] if args.model else CONFIGS
    print("model gpu dtype version TP | TPOT without host | exact lengths: TTFT, TPOT")
    for model, gpu, dtype, version in configs:
        for tp in (1, 2, 4, 8):
            r = ratios(model, gpu, dtype, version, tp)
            head = f"{model} {gpu} {dtype} {version} TP {tp}"
            if r is None:
                print(f"{head} | does not start")
                continue
            print(
                f"{head} | x{r['no_host_tpot']:.2f} | "
                f"x{r['exact_ttft']:.2f}, x{r['exact_tpot']:.2f}"
            )


if __name__ == "__main__":
    main()
