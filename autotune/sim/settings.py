"""SGLang launch flags -> the effective settings of a simulated server.

Flags are given by their native names (``mem-fraction-static``, ``tp-size`` ...) with
typed or string values, exactly as a tuning trial would pass them on the command
line. Unset flags get the values SGLang computes at start-up from the GPU's memory
and the model (``ServerArgs.__post_init__``, ``ModelRunner.profile_max_num_token``),
by the rules of the SGLang version simulated (``autotune.sim.versions``).
Flags the simulator does not model are accepted and listed in ``ignored_flags``.

    >>> s = resolve_settings({"mem-fraction-static": "0.8", "enable-mixed-chunk": True},
    ...                      model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
    >>> s.mem_fraction_static, s.enable_mixed_chunk, s.chunked_prefill_size
    (0.8, True, 8192)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from autotune.sim.calibration import CONTEXT_GIB, MIN_HEADROOM_GIB, STOCK, Calibration
from autotune.sim.perf import (
    HostOverhead,
    available_profiles,
    load_perf,
    load_profile,
    profile_layout,
    unknown_profile_message,
)
from autotune.sim.types import SimStartupError
from autotune.sim.versions import DEFAULT_SGLANG_VERSION, gpu_memory_mb, sglang_defaults

logger = logging.getLogger(__name__)

DEFAULT_MAX_PREFILL_TOKENS = 16384
SCHEDULE_POLICIES = ("fcfs", "lpm", "random", "dfs-weight", "lof", "priority")
KV_CACHE_DTYPES = ("auto", "bf16", "bfloat16", "fp8_e5m2", "fp8_e4m3", "fp4_e2m1")
CONTEXT_BYTES = int(CONTEXT_GIB * (1 << 30))
MIN_DYNAMIC_HEADROOM_BYTES = int(MIN_HEADROOM_GIB * (1 << 30))

# Flag aliases SGLang declares, or that argparse accepts as unique prefixes.
ALIASES = {
    "tp": "tp-size",
    "tensor-parallel-size": "tp-size",
    "mem-frac": "mem-fraction-static",
    "cuda-graph-max-bs-decode": "cuda-graph-max-bs",
    "ep": "ep-size",
    "expert-parallel-size": "ep-size",
    "data-parallel-size": "dp-size",
}
INT_FLAGS = {
    "tp-size",
    "max-running-requests",
    "max-total-tokens",
    "chunked-prefill-size",
    "max-prefill-tokens",
    "cuda-graph-max-bs",
    "context-length",
    "ep-size",
    "dp-size",
    "stream-interval",  # the virtual clock's output path (frontend.py)
}
FLOAT_FLAGS = {"mem-fraction-static", "schedule-conservativeness"}
BOOL_FLAGS = {
    "disable-cuda-graph",
    "disable-radix-cache",
    "enable-mixed-chunk",
    "enable-dp-attention",
}
# Modelled for mixture-of-experts profiles only; on a dense model they are listed as
# ignored (SGLang's dp-size without dp-attention runs replicas, which one simulated
# server does not model either).
MOE_FLAGS = {"ep-size", "dp-size", "enable-dp-attention"}
# Schedule conservativeness is scaled by this with DP attention (server_args.py, every
# version read: shared/notes/sglang-versions.md section 2).
DP_ATTENTION_CONSERVATIVENESS = 0.3
STR_FLAGS = {"schedule-policy", "kv-cache-dtype"}
MODELLED_FLAGS = INT_FLAGS | FLOAT_FLAGS | BOOL_FLAGS | STR_FLAGS


@dataclass
class SimSettings:
    """Effective settings of one simulated server, after SGLang's auto defaults."""

    model: str
    gpu: str
    dtype: str
    tp_size: int
    mem_fraction_static: float
    max_total_num_tokens: int
    max_running_requests: int
    chunked_prefill_size: int  # -1: chunking disabled
    max_prefill_tokens: int
    schedule_policy: str
    schedule_conservativeness: float
    cuda_graph_max_bs: int
    cuda_graph_bs: list[int]
    disable_cuda_graph: bool
    disable_radix_cache: bool
    enable_mixed_chunk: bool
    kv_cache_dtype: str
    context_len: int
    ignored_flags: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    kv_bytes_per_token: int = 0
    hf_model: str = ""
    ep_size: int = 1
    dp_attention_size: int = 1  # > 1: --enable-dp-attention with this --dp-size
    moe_layout: str = ""  # the profile variant (autotune.sim.perf.profile_layout)
    sglang_version: str = DEFAULT_SGLANG_VERSION
    retract_to_next_step: bool = True  # 0.5.3+ (autotune.sim.versions)
    ratio_denominator_plus_one: bool = True  # 0.5.5+

    def as_server_info(self) -> dict[str, Any]:
        """``/get_server_info``-style keys (underscores), labelled as simulated."""
        return {
            "model_path": self.hf_model,
            "served_model_name": self.hf_model,
            "tp_size": self.tp_size,
            "dp_size": self.dp_attention_size,
            "ep_size": self.ep_size,
            "enable_dp_attention": self.dp_attention_size > 1,
            "moe_layout": self.moe_layout,
            "pp_size": 1,
            "mem_fraction_static": self.mem_fraction_static,
            "max_total_num_tokens": self.max_total_num_tokens,
            "max_running_requests": self.max_running_requests,
            "chunked_prefill_size": self.chunked_prefill_size,
            "max_prefill_tokens": self.max_prefill_tokens,
            "schedule_policy": self.schedule_policy,
            "schedule_conservativeness": self.schedule_conservativeness,
            "cuda_graph_max_bs": self.cuda_graph_max_bs,
            "cuda_graph_bs": list(self.cuda_graph_bs),
            "disable_cuda_graph": self.disable_cuda_graph,
            "disable_radix_cache": self.disable_radix_cache,
            "enable_mixed_chunk": self.enable_mixed_chunk,
            "kv_cache_dtype": self.kv_cache_dtype,
            "context_length": self.context_len,
            "page_size": 1,
            "quantization": "fp8" if self.dtype == "fp8" else None,
            "version": f"{self.sglang_version} (simulated)",
            "simulated": True,
            "sim_model": self.model,
            "sim_gpu": self.gpu,
            "sim_dtype": self.dtype,
            "ignored_flags": list(self.ignored_flags),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_flag(name: str) -> str:
    """``--mem_fraction_static`` -> ``mem-fraction-static`` (aliases resolved)."""
    key = name.lstrip("-").replace("_", "-").lower()
    return ALIASES.get(key, key)


def _to_bool(name: str, value: Any) -> bool:
    if value is None or value is True or value == "":
        return True
    if value is False:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"--{name} is a switch; got {value!r}")


def parse_flags(flags: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Type the modelled flags; return them with the sorted names of ignored ones."""
    typed: dict[str, Any] = {}
    ignored: list[str] = []
    for raw, value in flags.items():
        name = normalize_flag(raw)
        try:
            if name in INT_FLAGS:
                typed[name] = int(float(value))
            elif name in FLOAT_FLAGS:
                typed[name] = float(value)
            elif name in BOOL_FLAGS:
                typed[name] = _to_bool(name, value)
            elif name in STR_FLAGS:
                typed[name] = str(value).strip().lower()
            else:
                ignored.append(name)
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid value for --{name}: {value!r} ({err})") from err
    policy = typed.get("schedule-policy")
    if policy is not None and policy not in SCHEDULE_POLICIES:
        raise ValueError(
            f"--schedule-policy must be one of {', '.join(SCHEDULE_POLICIES)}; got {policy!r}"
        )
    kv = typed.get("kv-cache-dtype")
    if kv is not None and kv not in KV_CACHE_DTYPES:
        raise ValueError(
            f"--kv-cache-dtype must be one of {', '.join(KV_CACHE_DTYPES)}; got {kv!r}"
        )
    return typed, sorted(set(ignored))


def cuda_graph_batch_sizes(max_bs: int) -> list[int]:
    """Batch sizes SGLang captures (padding targets for decode batches).

    >>> cuda_graph_batch_sizes(20)
    [1, 2, 4, 8, 12, 16, 20]
    """
    sizes = [1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 513, 16), *range(544, 4097, 32)]
    out = [b for b in sizes if b <= max_bs]
    if max_bs >= 1 and (not out or out[-1] != max_bs):
        out.append(max_bs)
    return out


def auto_mem_fraction_static(
    gpu_mem_mb: float,
    tp: int,
    chunked_prefill: int,
    graph_max_bs: int,
    sglang_version: str | None = None,
) -> float:
    """SGLang's default ``mem_fraction_static`` (``autotune.sim.versions``).

    >>> auto_mem_fraction_static(143771, 1, 8192, 256)
    0.907
    """
    rules = sglang_defaults(sglang_version)
    return rules.mem_fraction_static(gpu_mem_mb, tp, chunked_prefill, graph_max_bs)


def _known_profile(model: str, gpu: str, dtype: str, tp: int) -> dict[str, Any]:
    """The baked profile, or ValueError naming what exists (and why a TP cannot work)."""
    known = available_profiles()
    if (model, gpu, dtype, tp) in known:
        return load_profile(model, gpu, dtype, tp)
    message = unknown_profile_message(model, gpu, dtype, tp)
    same_model = [p for p in known if p[:3] == (model, gpu, dtype)]
    if same_model and tp >= 1:
        heads = load_profile(*same_model[0])["arch"]["num_heads"]
        if heads % tp:
            # SGLang's tensor-parallel layers assert this at load time.
            message += f" (SGLang cannot shard {heads} attention heads over {tp} GPUs)"
    raise ValueError(message)


def _kv_bytes_per_token(mem: dict[str, Any], kv_dtype: str) -> int:
    kv_bytes = int(mem["kv_bytes_per_token"])  # bf16 KV
    if kv_dtype.startswith("fp8"):
        return kv_bytes // 2
    if kv_dtype.startswith("fp4"):
        return kv_bytes // 4
    return kv_bytes


def _kv_pool(
    free_before: float,
    weights: float,
    fraction: float,
    activations: float,
    kv_bytes: int,
    graph_bytes: int,
    min_headroom: float = MIN_DYNAMIC_HEADROOM_BYTES,
) -> int:
    """KV tokens SGLang sizes its pool to, or SimStartupError with SGLang's message.

    ``ModelRunner.profile_max_num_token`` (every version read; see
    shared/notes/sglang-versions.md): rest = free memory after the weights load -
    free memory before it x (1 - fraction); tokens = rest / KV bytes per token. The
    fraction applies to the memory free when the model runner starts, and activations
    and CUDA graphs live in the remaining (1 - fraction).
    """
    rest = (free_before - weights) - free_before * (1.0 - fraction)
    pool = int(rest // kv_bytes) if rest > 0 else 0
    if fraction <= 0 or pool <= 0:
        raise SimStartupError(
            "Not enough memory. Please try to increase --mem-fraction-static. "
            f"Current value: self.server_args.mem_fraction_static={fraction}"
        )
    headroom = free_before * (1.0 - fraction)
    if headroom < activations + graph_bytes + min_headroom:
        if not graph_bytes:
            raise SimStartupError(
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
                f"{activations / 2**30:.2f} GiB. Lower --mem-fraction-static "
                f"(current value {fraction}) or --chunked-prefill-size."
            )
        raise SimStartupError(
            "Capture cuda graph failed: CUDA out of memory.\n"
            "Possible solutions:\n"
            "1. set --mem-fraction-static to a smaller value (e.g., 0.8 or 0.7)\n"
            "2. set --cuda-graph-max-bs to a smaller value (e.g., 16)\n"
            "3. disable torch compile by not using --enable-torch-compile\n"
            "4. disable CUDA graph by --disable-cuda-graph. (Not recommended. Huge performance loss)\n"
            f"Current value: mem_fraction_static={fraction}"
        )
    return pool


def _cap_pool(pool: int, user_total: int | None) -> int:
    """``--max-total-tokens`` can only lower the profiled pool (SGLang warns otherwise)."""
    if user_total is None:
        return pool
    if user_total < pool:
        return max(user_total, 1)
    logger.warning(
        "max-total-tokens=%d is larger than the profiled value %d; ignored", user_total, pool
    )
    return pool


def _moe_layout(typed: dict[str, Any], prof: dict[str, Any], tp: int) -> tuple[str, int, int]:
    """(profile layout, ep size, DP-attention ranks) for the MoE flags.

    SGLang splits the experts over ``--ep-size`` GPUs (the rest by TP) and, with
    ``--enable-dp-attention``, runs attention data-parallel over ``--dp-size`` ranks;
    both must divide ``--tp-size`` (the profiles hold every such layout).
    """
    ep = typed.get("ep-size", 1)
    dp = typed.get("dp-size", 1) if typed.get("enable-dp-attention", False) else 1
    for flag, size in (("ep-size", ep), ("dp-size", dp)):
        if size < 1 or tp % size:
            raise ValueError(f"--{flag}={size} must divide --tp-size={tp}")
    layout = "_".join(part for part in (f"ep{ep}" * (ep > 1), f"dpa{dp}" * (dp > 1)) if part)
    error = (prof.get("layout_errors") or {}).get(layout)
    if error:
        # What SGLang's FP8 MoE weight loader raises for a slice it cannot block-quantise.
        raise SimStartupError(f"ValueError: {error} Use a larger --ep-size or a smaller --tp-size.")
    profile_layout(prof, layout)  # ValueError if not baked
    return layout, ep, dp


def resolve_settings(
    flags: dict[str, Any] | None = None,
    *,
    model: str,
    gpu: str,
    dtype: str = "bf16",
    sglang_version: str | None = None,
    calibration: Calibration = STOCK,
) -> SimSettings:
    """Effective settings for ``flags`` on ``model``/``gpu``/``dtype`` under SGLang
    ``sglang_version`` (default ``autotune.sim.versions.DEFAULT_SGLANG_VERSION``).

    Raises ValueError for an unknown profile (including a TP size the model's heads
    cannot be split over), an SGLang version whose defaults are not known
    (``UnsupportedVersion``) or a malformed flag value, and SimStartupError where
    SGLang itself would fail to start with these flags (with SGLang's message).
    """
    typed, ignored = parse_flags(flags or {})
    rules = sglang_defaults(sglang_version)
    tp = typed.get("tp-size", 1)
    prof = _known_profile(model, gpu, dtype, tp)
    if "num_experts" in prof["arch"]:
        layout, ep, dp = _moe_layout(typed, prof, tp)
        if dp == 1 and "dp-size" in typed:
            ignored = sorted({*ignored, "dp-size"})  # replicas: not one server's business
    else:
        layout, ep, dp = "", 1, 1
        ignored = sorted(set(ignored) | (MOE_FLAGS & set(typed)))
    mem = profile_layout(prof, layout)["memory"]
    gpu_mem_mb = gpu_memory_mb(gpu, float(mem["gpu_mem_bytes"]) / (1 << 20))

    chunk = typed.get("chunked-prefill-size") or rules.chunked_prefill_size(gpu_mem_mb)
    if chunk <= 0:
        chunk = -1
    graph_max_bs = typed.get("cuda-graph-max-bs") or rules.cuda_graph_max_bs(gpu_mem_mb, tp)
    disable_graph = typed.get("disable-cuda-graph", False)
    fraction = typed.get("mem-fraction-static")
    if fraction is None:
        fraction = rules.mem_fraction_static(
            gpu_mem_mb,
            tp,
            chunk,
            graph_max_bs,
            dp_attention=dp > 1,
            mla=bool(prof["arch"].get("mla")),
        )
    max_prefill = typed.get("max-prefill-tokens", DEFAULT_MAX_PREFILL_TOKENS)
    context_len = int(prof["arch"]["context_len"])
    context_len = min(typed.get("context-length", context_len), context_len) or context_len

    kv_dtype = typed.get("kv-cache-dtype", "auto")
    kv_bytes = _kv_bytes_per_token(mem, kv_dtype)
    if calibration.kv_bytes_scale != 1.0:
        kv_bytes = max(1, round(kv_bytes * calibration.kv_bytes_scale))
    # Activations of the largest forward, sized the way aiconfigurator's SGLang
    # memory model does; they live outside the static pool.
    act_tokens = chunk if chunk > 0 else max_prefill
    act_tokens = -(-act_tokens // dp)  # a DP-attention rank runs its share of the chunk
    activations = calibration.activation_scale * max(
        float(mem["activation_bytes_per_token"]) * act_tokens, float(mem["activation_min_bytes"])
    )
    graph_bytes = 0 if disable_graph else graph_max_bs * 2 * (1 << 20)
    free_before = gpu_mem_mb * (1 << 20) - calibration.context_gib * (1 << 30)
    pool = _kv_pool(
        free_before,
        float(mem["weights_bytes"]),
        fraction,
        activations,
        kv_bytes,
        graph_bytes,
        calibration.min_headroom_gib * (1 << 30),
    )
    pool = _cap_pool(pool, typed.get("max-total-tokens"))
    # Each DP-attention rank has its own pool and request slots (its own scheduler).
    req_pool = min(max(int(pool / context_len * 512), 2048), 4096)
    max_running = typed.get("max-running-requests")
    if max_running is None or max_running <= 0:
        max_running = min(pool // 2, req_pool) * dp
    pool *= dp
    conservativeness = typed.get("schedule-conservativeness", 1.0)
    if dp > 1:
        conservativeness *= DP_ATTENTION_CONSERVATIVENESS
    return SimSettings(
        model=model,
        gpu=gpu,
        dtype=dtype,
        tp_size=tp,
        mem_fraction_static=fraction,
        max_total_num_tokens=pool,
        max_running_requests=max(1, max_running),
        chunked_prefill_size=chunk,
        max_prefill_tokens=max_prefill,
        schedule_policy=typed.get("schedule-policy", rules.schedule_policy),
        schedule_conservativeness=conservativeness,
        cuda_graph_max_bs=graph_max_bs,
        cuda_graph_bs=[] if disable_graph else cuda_graph_batch_sizes(graph_max_bs),
        disable_cuda_graph=disable_graph,
        disable_radix_cache=typed.get("disable-radix-cache", False),
        enable_mixed_chunk=typed.get("enable-mixed-chunk", False),
        kv_cache_dtype=kv_dtype,
        context_len=context_len,
        ignored_flags=ignored,
        flags=dict(flags or {}),
        kv_bytes_per_token=kv_bytes,
        hf_model=prof.get("hf_model", model),
        sglang_version=rules.version,
        retract_to_next_step=rules.retract_to_next_step,
        ratio_denominator_plus_one=rules.ratio_denominator_plus_one,
        ep_size=ep,
        dp_attention_size=dp,
        moe_layout=layout,
    )


def build_engine(
    flags: dict[str, Any],
    *,
    model: str,
    gpu: str,
    dtype: str = "bf16",
    seed: int = 0,
    sglang_version: str | None = None,
    noise: Any = None,
    calibration: Calibration | None = None,
) -> Any:
    """A ready simulated engine for ``flags`` (``tp-size`` selects the TP table),
    imitating SGLang ``sglang_version`` (default: ``DEFAULT_SGLANG_VERSION``).

    >>> eng = build_engine({"tp-size": 2}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
    >>> eng.server_info()["tp_size"]
    2
    """
    from autotune.sim.frontend import FrontEnd
    from autotune.sim.scheduler import SimEngine

    cal = calibration or STOCK
    settings = resolve_settings(
        flags, model=model, gpu=gpu, dtype=dtype, sglang_version=sglang_version, calibration=cal
    )
    perf = load_perf(
        model,
        gpu,
        dtype,
        settings.tp_size,
        HostOverhead(step_ms=cal.host_step_ms, seq_us=cal.host_seq_us),
        layout=settings.moe_layout,
        dp=settings.dp_attention_size,
        prefill_scale=cal.kernel_scale * cal.prefill_scale,
        decode_scale=cal.kernel_scale * cal.decode_scale,
        moe_prefill_scale=cal.moe_prefill_scale,
    )
    engine = SimEngine(settings, perf, seed=seed, noise=noise, calibration=cal)
    # Virtual-clock clients see tokens through SGLang's output path (frontend.py); the
    # real-time server ignores it: its own HTTP layer is the output path there.
    interval = parse_flags(flags)[0].get("stream-interval", 1)
    if interval < 1:
        raise ValueError(f"--stream-interval must be at least 1; got {interval}")
    engine.frontend = FrontEnd(stream_interval=interval)
    return engine


__all__ = [
    "SimSettings",
    "available_profiles",
    "build_engine",
    "cuda_graph_batch_sizes",
    "resolve_settings",
]
