"""Calibration constants of the simulated engine, as one value (``deploy.calibration.*``).

The stock values are the simulator's own constants, so ``Calibration()`` changes
nothing. Other values give a deliberately *mis-calibrated* engine: an honest stand-in
for real hardware when evaluating a search that was planned on the stock simulator
(benchmarks/gpu_hours.py). Uniform errors (every kernel 10 % slower) hardly move a
ranking; what decides rankings is the memory model (KV pool size at each
``mem-fraction-static``), prefill against decode cost, the per-sequence host cost and
the scheduler's admission reservation, so each has its own key.

    >>> from autotune.sim.settings import build_engine
    >>> eng = build_engine({}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8",
    ...                    calibration=Calibration(kv_bytes_scale=2.0))
    >>> stock = build_engine({}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
    >>> round(stock.settings.max_total_num_tokens / eng.settings.max_total_num_tokens, 1)
    2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from autotune.sim.perf import HOST_SEQ_US, HOST_STEP_MS, MOE_PREFILL_SCALE

# GPU memory taken before the model runner measures what is free (CUDA context,
# NCCL and custom all-reduce buffers): public SGLang logs on 80 GB H100s (79.65 GiB)
# print "Load weight begin. avail mem=" 78.43 ... 78.81 GB, i.e. 0.84 ... 1.22 GiB used.
CONTEXT_GIB = 1.0
# Memory the rest of the process needs outside the static pool besides activations
# and CUDA graphs (cuBLAS workspaces, NCCL buffers, allocator slack).
MIN_HEADROOM_GIB = 1.0
# SGLang's admission reservation: remaining output tokens are reserved times a ratio
# starting here (x schedule-conservativeness) and decaying to this factor of it.
INIT_NEW_TOKEN_RATIO = 0.7
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14


@dataclass
class Calibration:
    """What the simulator assumes about the hardware; stock = the fitted constants.

    Also the structured config of ``deploy.calibration`` (launchers/sim.py): these
    defaults are stated nowhere else.
    """

    # Host time per step (ms) and per sequence in a step (µs): autotune/sim/perf.py.
    host_step_ms: float = HOST_STEP_MS
    host_seq_us: float = HOST_SEQ_US
    # Multiplies every kernel time; prefill_scale / decode_scale only those of extend
    # (prefill) steps / decode steps, on top of it.
    kernel_scale: float = 1.0
    prefill_scale: float = 1.0
    decode_scale: float = 1.0
    # Extend-step kernel time of mixture-of-experts models over the tables' sum
    # (autotune/sim/perf.py; dense models ignore it).
    moe_prefill_scale: float = MOE_PREFILL_SCALE
    # Memory model: KV bytes per token, activation bytes of the largest forward, the
    # memory taken before the model runner starts (CUDA context, NCCL) and the
    # dynamic headroom the rest of the process needs (autotune/sim/settings.py).
    kv_bytes_scale: float = 1.0
    activation_scale: float = 1.0
    context_gib: float = CONTEXT_GIB
    min_headroom_gib: float = MIN_HEADROOM_GIB
    # Admission reservation (autotune/sim/scheduler.py): the initial new-token ratio
    # and its floor as a factor of it.
    init_new_token_ratio: float = INIT_NEW_TOKEN_RATIO
    min_new_token_ratio_factor: float = MIN_NEW_TOKEN_RATIO_FACTOR

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Calibration:
        """From ``deploy.calibration`` (a dict or None); an unknown key names the known ones."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"deploy.calibration.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}"
            )
        out = cls(**{k: float(v) for k, v in values.items()})
        bad = [f.name for f in fields(cls) if getattr(out, f.name) < 0]
        if bad:
            raise ValueError(f"deploy.calibration.{bad[0]} must be >= 0")
        return out

    def changed(self) -> dict[str, float]:
        """The keys that differ from the stock calibration (empty: stock)."""
        stock = asdict(Calibration())
        return {k: v for k, v in asdict(self).items() if v != stock[k]}

    def as_args(self) -> list[str]:
        """``--sim-calibration KEY=VALUE`` items for the real-time server (changed keys)."""
        out: list[str] = []
        for k, v in self.changed().items():
            out += ["--sim-calibration", f"{k}={v!r}"]
        return out


def parse_items(items: list[str] | None) -> Calibration:
    """``["kernel_scale=0.9", ...]`` (the server's ``--sim-calibration``) as a Calibration."""
    values = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--sim-calibration {item!r}: use KEY=VALUE")
        values[key.strip()] = value
    return Calibration.from_mapping(values)


STOCK = Calibration()

__all__ = ["STOCK", "Calibration", "parse_items"]
