"""Step-time model: baked kernel tables plus a small, fitted host overhead.

A forward step's time is additive (aiconfigurator's own composition):

    non-attention(all tokens in the step) + logits(sequences sampled)
    + sum over prefill chunks of attention(chunk tokens, prefix tokens)
    + decode attention(decode batch, mean context)
    + host overhead(sequences in the step)

The four kernel tables come from ``autotune/sim/profiles/<gpu>/<model>__<dtype>__tp<N>.json``
(baked by ``tools/bake_sim_profiles.py``); lookups interpolate linearly and
extrapolate from the last segment. Only the stdlib is used at run time.

    >>> perf = load_perf("llama-3.1-8b", "h200_sxm", "fp8", 1)
    >>> round(perf.decode_ms(64, 1024.0, graph_bs=64), 1) > 0
    True
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

# --- Host overhead (the only fitted constants) -------------------------------------
# Kernel tables are GPU time only; SGLang also spends host time on every step
# (scheduling, batch preparation, sampling, detokenisation hand-off), growing with
# the number of sequences in the step and with the number of TP ranks to keep in step.
#   host_ms = HOST_STEP_MS + HOST_SEQ_US * (1 + HOST_TP_GROWTH * log2(tp)) * seqs / 1000
# Fitted with tools/fit_sim_overhead.py ONLY on the 46 SGLang 0.5.6.post2 +
# Llama-3.1-8B-Instruct FP8 + H200 rows of aiconfigurator's silicon_sample.csv
# (tests/fixtures/silicon_sample_sglang_llama31_8b_fp8_h200.csv), minimising the
# mean absolute percentage error of TPOT plus a quarter of TTFT's; see docs/simulator.md.
# Re-fitted 2026-12-03 with the output path (frontend.py) in the loop: part of the
# per-sequence cost the old fit (2.0 ms, 14 us) absorbed is the output path's.
HOST_STEP_MS = 3.0
HOST_SEQ_US = 6.0
HOST_TP_GROWTH = 0.0

# --- Mixture-of-experts prefill (fitted on the 24 Qwen3-235B-A22B FP8 rows) ------
# On the measured MoE rows a prefill step takes ~2.5x the sum of its kernels in the
# tables: TTFT at 2-4 users (one prompt or one small wave, no queue) is 1.7-2.6x the
# table sum, and TPOT grows with the prompt length as decode waits behind those
# longer prefills (TP 4, 4000-token prompts: 20-29 ms measured, 16-20 simulated
# without it). The dense rows show no such gap. Which part of SGLang 0.5.6's MoE
# prefill path costs it was not identified (docs/simulator.md, "MoE prefill");
# fitted with tools/fit_sim_overhead.py --moe on the 24 rows
# (tests/fixtures/silicon_sample_sglang_qwen3_235b_fp8_h200.csv) and applied to every
# MoE profile's extend steps. Re-fitted 2026-12-04 (2.4 -> 2.5) when validate's replay
# workload changed to 4 requests per user, +-15 % output lengths.
MOE_PREFILL_SCALE = 2.5

# --- Eager mode (not fitted: no eager rows exist in the measured data) ------------
# Without a CUDA graph every kernel is launched from Python: the step cannot be
# shorter than the CPU's launch time, and dependent launches leave small gaps.
EAGER_CPU_US_PER_LAYER = 150.0
EAGER_GAP_US_PER_LAYER = 10.0


def interp(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear interpolation, extrapolating from the end segments.

    >>> interp([0, 10], [0, 100], 5)
    50.0
    >>> interp([0, 10], [0, 100], 20)
    200.0
    """
    i = bisect_right(xs, x)
    if i <= 0:
        i = 1
    elif i >= len(xs):
        i = len(xs) - 1
    x0, x1 = xs[i - 1], xs[i]
    y0, y1 = ys[i - 1], ys[i]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def interp2(
    xs: list[float], ys: list[float], table: list[list[float]], x: float, y: float
) -> float:
    """Bilinear interpolation on ``table[i][j]`` at ``(xs[i], ys[j])``, clamped below at 0."""
    i = min(max(bisect_right(xs, x), 1), len(xs) - 1)
    j = min(max(bisect_right(ys, y), 1), len(ys) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[j - 1], ys[j]
    tx = (x - x0) / (x1 - x0)
    ty = (y - y0) / (y1 - y0)
    r0, r1 = table[i - 1], table[i]
    a = r0[j - 1] + (r0[j] - r0[j - 1]) * ty
    b = r1[j - 1] + (r1[j] - r1[j - 1]) * ty
    return max(0.0, a + (b - a) * tx)


@dataclass(frozen=True)
class HostOverhead:
    """Host-side cost of one step; defaults are the fitted module constants."""

    step_ms: float = HOST_STEP_MS
    seq_us: float = HOST_SEQ_US
    tp_growth: float = HOST_TP_GROWTH

    def ms(self, seqs: int, tp: int) -> float:
        return (
            self.step_ms
            + self.seq_us * (1.0 + self.tp_growth * (tp.bit_length() - 1)) * seqs / 1000.0
        )


class StepPerf:
    """Kernel-time lookups for one (model, GPU, dtype, TP) profile, in milliseconds."""

    def __init__(
        self,
        profile: dict[str, Any],
        host: HostOverhead | None = None,
        *,
        dp: int = 1,
        prefill_scale: float = 1.0,
        decode_scale: float = 1.0,
        moe_prefill_scale: float = MOE_PREFILL_SCALE,
    ) -> None:
        self.profile = profile
        # Kernel-time multipliers of extend and decode steps (deploy.calibration).
        self.prefill_scale = prefill_scale
        if profile["arch"].get("num_experts"):
            self.prefill_scale *= moe_prefill_scale
        self.decode_scale = decode_scale
        self.tp = int(profile["tp"])
        # DP attention (MoE profiles): requests are spread evenly over ``dp`` ranks that
        # step together; the tables give one rank's cost for its share.
        self.dp = max(1, int(dp))
        self.num_layers = int(profile["arch"]["num_layers"])
        self.host = host or HostOverhead()
        self._na_x = [float(v) for v in profile["na"]["tokens"]]
        self._na_y = profile["na"]["ms"]
        self._lg_x = [float(v) for v in profile["lg"]["seqs"]]
        self._lg_y = profile["lg"]["ms"]
        self._ca_q = [float(v) for v in profile["ca"]["q"]]
        self._ca_p = [float(v) for v in profile["ca"]["p"]]
        self._ca = profile["ca"]["ms"]
        self._da_b = [float(v) for v in profile["da"]["b"]]
        self._da_l = [float(v) for v in profile["da"]["l"]]
        self._da = profile["da"]["ms"]
        self._na_memo: dict[int, float] = {}
        self._lg_memo: dict[int, float] = {}
        self._eager_floor_ms = self.num_layers * EAGER_CPU_US_PER_LAYER / 1000.0
        self._eager_gap_ms = self.num_layers * EAGER_GAP_US_PER_LAYER / 1000.0

    # -- kernel tables ---------------------------------------------------------------
    def na_ms(self, tokens: int) -> float:
        """Non-attention kernels (GEMMs, norms, all-reduce) of a step over ``tokens`` tokens."""
        v = self._na_memo.get(tokens)
        if v is None:
            v = self._na_memo[tokens] = interp(self._na_x, self._na_y, float(tokens))
        return v

    def lg_ms(self, seqs: int) -> float:
        """LM head for ``seqs`` sampled sequences."""
        v = self._lg_memo.get(seqs)
        if v is None:
            v = self._lg_memo[seqs] = interp(self._lg_x, self._lg_y, float(seqs))
        return v

    def ca_ms(self, q: int, prefix: int) -> float:
        """Causal attention of one prefill chunk of ``q`` tokens over ``prefix`` cached tokens."""
        return interp2(self._ca_q, self._ca_p, self._ca, float(q), float(prefix))

    def da_ms(self, batch: int, mean_ctx: float) -> float:
        """Decode attention of ``batch`` sequences at mean context ``mean_ctx``."""
        if batch <= 0:
            return 0.0
        return interp2(self._da_b, self._da_l, self._da, float(batch), mean_ctx)

    # -- whole steps -----------------------------------------------------------------
    def decode_ms(self, batch: int, mean_ctx: float, *, graph_bs: int | None) -> float:
        """One decode step of ``batch`` sequences.

        ``graph_bs`` is the captured CUDA-graph batch the step is padded to, or None
        when it runs eagerly (graphs disabled or the batch above ``cuda-graph-max-bs``).
        """
        batch = -(-batch // self.dp)  # one rank's share
        padded = graph_bs if graph_bs is not None else batch
        gpu = self.na_ms(padded) + self.lg_ms(padded) + self.da_ms(batch, mean_ctx)
        gpu *= self.decode_scale
        if graph_bs is None:
            gpu = max(gpu, self._eager_floor_ms) + self._eager_gap_ms
        return gpu + self.host.ms(batch, self.tp)

    def extend_ms(
        self, chunks: list[tuple[int, int]], decode_batch: int = 0, decode_ctx: float = 0.0
    ) -> float:
        """A prefill (extend) step: ``chunks`` of (new tokens, prefix tokens), optionally
        mixed with ``decode_batch`` decoding sequences (``--enable-mixed-chunk``).

        Extend steps run eagerly in SGLang; at prefill sizes the GPU time hides the
        launch time, so only the launch gaps are added.
        """
        tokens = decode_batch
        attn = 0.0
        for q, p in chunks:
            tokens += q
            attn += self.ca_ms(q, p)
        seqs = len(chunks) + decode_batch
        if self.dp > 1:  # one rank's share of the step
            tokens, seqs, attn = -(-tokens // self.dp), -(-seqs // self.dp), attn / self.dp
            decode_batch = -(-decode_batch // self.dp)
        gpu = self.na_ms(tokens) + self.lg_ms(seqs) + attn + self.da_ms(decode_batch, decode_ctx)
        gpu *= self.prefill_scale
        gpu = max(gpu, self._eager_floor_ms) + self._eager_gap_ms
        return gpu + self.host.ms(seqs, self.tp)


def profile_path(model: str, gpu: str, dtype: str, tp: int) -> Path:
    return PROFILE_DIR / gpu / f"{model}__{dtype}__tp{tp}.json"


@lru_cache(maxsize=256)
def load_profile(model: str, gpu: str, dtype: str, tp: int) -> dict[str, Any]:
    """The baked JSON profile; raises ValueError naming what exists if it is unknown."""
    path = profile_path(model, gpu, dtype, tp)
    if not path.is_file():
        raise ValueError(unknown_profile_message(model, gpu, dtype, tp))
    return json.loads(path.read_text())


def profile_layout(profile: dict[str, Any], layout: str = "") -> dict[str, Any]:
    """``profile`` with the tables and memory of MoE layout ``layout`` (``ep8``,
    ``dpa8``, ``ep8_dpa8``; "" is SGLang's default); ValueError naming the baked ones."""
    if not layout:
        return profile
    variants = profile.get("variants") or {}
    if layout not in variants:
        known = ", ".join(["(default)", *sorted(variants)])
        raise ValueError(
            f"no simulated layout {layout!r} for {profile['model']} tp{profile['tp']} "
            f"on {profile['gpu']}; baked layouts: {known}"
        )
    return {**profile, **variants[layout]}


def load_perf(
    model: str,
    gpu: str,
    dtype: str,
    tp: int,
    host: HostOverhead | None = None,
    *,
    layout: str = "",
    dp: int = 1,
    prefill_scale: float = 1.0,
    decode_scale: float = 1.0,
    moe_prefill_scale: float = MOE_PREFILL_SCALE,
) -> StepPerf:
    profile = profile_layout(load_profile(model, gpu, dtype, tp), layout)
    return StepPerf(
        profile,
        host,
        dp=dp,
        prefill_scale=prefill_scale,
        decode_scale=decode_scale,
        moe_prefill_scale=moe_prefill_scale,
    )


@lru_cache(maxsize=1)
def available_profiles() -> list[tuple[str, str, str, int]]:
    """Every baked (model, gpu, dtype, tp), sorted.

    >>> ("llama-3.1-8b", "h200_sxm", "fp8", 1) in available_profiles()
    True
    """
    out = []
    for path in PROFILE_DIR.glob("*/*__*__tp*.json"):
        model, dtype, tp = path.stem.split("__")
        out.append((model, path.parent.name, dtype, int(tp[2:])))
    return sorted(out)


def unknown_profile_message(model: str, gpu: str, dtype: str, tp: int) -> str:
    profiles = available_profiles()
    models = sorted({p[0] for p in profiles})
    gpus = sorted({p[1] for p in profiles})
    dtypes = sorted({p[2] for p in profiles})
    if model not in models:
        return f"unknown simulated model {model!r}; available: {', '.join(models)}"
    if gpu not in gpus:
        return f"unknown simulated GPU {gpu!r}; available: {', '.join(gpus)}"
    if dtype not in dtypes:
        return f"unknown simulated dtype {dtype!r}; available: {', '.join(dtypes)}"
    tps = sorted({p[3] for p in profiles if p[:3] == (model, gpu, dtype)})
    return f"no simulated profile for {model} on {gpu} ({dtype}) with tp-size {tp}; available tp-size: {tps}"
