"""SGLang launch flags -> the effective settings of a simulated server.

Flags are given by their native names (``mem-fraction-static``, ``tp-size`` ...) with
typed or string values, exactly as a tuning trial would pass them on the command
line. Unset flags get the values SGLang 0.5.x computes at start-up from the GPU's
memory and the model (``ServerArgs.__post_init__``, ``ModelRunner.profile_max_num_token``).
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

from autotune.sim.perf import available_profiles, load_perf, load_profile, unknown_profile_message
from autotune.sim.types import SimStartupError

logger = logging.getLogger(__name__)

SGLANG_VERSION = "0.5.5.post3"  # the version whose defaults and messages are modelled
DEFAULT_MAX_PREFILL_TOKENS = 16384
SCHEDULE_POLICIES = ("fcfs", "lpm", "random", "dfs-weight", "lof", "priority")
KV_CACHE_DTYPES = ("auto", "bf16", "bfloat16", "fp8_e5m2", "fp8_e4m3", "fp4_e2m1")
# Memory the rest of the process needs outside the static pool besides activations
# and CUDA graphs (cuBLAS workspaces, NCCL buffers, allocator slack).
MIN_DYNAMIC_HEADROOM_BYTES = 1 << 30

# Flag aliases SGLang declares, or that argparse accepts as unique prefixes.
ALIASES = {
    "tp": "tp-size",
    "tensor-parallel-size": "tp-size",
    "mem-frac": "mem-fraction-static",
    "cuda-graph-max-bs-decode": "cuda-graph-max-bs",
}
INT_FLAGS = {
    "tp-size",
    "max-running-requests",
    "max-total-tokens",
    "chunked-prefill-size",
    "max-prefill-tokens",
    "cuda-graph-max-bs",
    "context-length",
}
FLOAT_FLAGS = {"mem-fraction-static", "schedule-conservativeness"}
BOOL_FLAGS = {"disable-cuda-graph", "disable-radix-cache", "enable-mixed-chunk"}
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

    def as_server_info(self) -> dict[str, Any]:
        """``/get_server_info``-style keys (underscores), labelled as simulated."""
        return {
            "model_path": self.hf_model,
            "served_model_name": self.hf_model,
            "tp_size": self.tp_size,
            "dp_size": 1,
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
            "version": f"{SGLANG_VERSION} (simulated)",
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


def _auto_chunked_prefill(gpu_mem_mb: float) -> int:
    if gpu_mem_mb < 35 * 1024:
        return 2048
    if gpu_mem_mb < 60 * 1024:
        return 4096
    if gpu_mem_mb < 160 * 1024:
        return 8192
    return 16384


def _auto_cuda_graph_max_bs(gpu_mem_mb: float, tp: int) -> int:
    if gpu_mem_mb < 20 * 1024:
        return 8
    if gpu_mem_mb < 35 * 1024:
        return 24 if tp < 4 else 80
    if gpu_mem_mb < 60 * 1024:
        return 32 if tp < 4 else 160
    if gpu_mem_mb < 160 * 1024:
        return 256 if tp < 4 else 512
    return 512


def auto_mem_fraction_static(
    gpu_mem_mb: float, tp: int, chunked_prefill: int, graph_max_bs: int
) -> float:
    """SGLang's default ``mem_fraction_static`` (``_handle_gpu_memory_settings``).

    >>> auto_mem_fraction_static(144384, 1, 8192, 256)
    0.907
    """
    reserved = 512 + 1.5 * max(chunked_prefill, 2048) + 2 * graph_max_bs + tp / 8 * 1024
    if gpu_mem_mb > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mem_mb - reserved) / gpu_mem_mb, 3)


def resolve_settings(
    flags: dict[str, Any] | None = None, *, model: str, gpu: str, dtype: str = "bf16"
) -> SimSettings:
    """Effective settings for ``flags`` on ``model``/``gpu``/``dtype``.

    Raises ValueError for an unknown profile (including a TP size the model's heads
    cannot be split over) or a malformed flag value, and SimStartupError where SGLang
    itself would fail to start with these flags (with SGLang's message).
    """
    typed, ignored = parse_flags(flags or {})
    tp = typed.get("tp-size", 1)
    known = available_profiles()
    if (model, gpu, dtype, tp) not in known:
        message = unknown_profile_message(model, gpu, dtype, tp)
        same_model = [p for p in known if p[:3] == (model, gpu, dtype)]
        if same_model and tp >= 1:
            heads = load_profile(*same_model[0])["arch"]["num_heads"]
            if heads % tp:
                # SGLang's tensor-parallel layers assert this at load time.
                message += f" (SGLang cannot shard {heads} attention heads over {tp} GPUs)"
        raise ValueError(message)
    prof = load_profile(model, gpu, dtype, tp)
    mem = prof["memory"]
    gpu_mem = float(mem["gpu_mem_bytes"])
    gpu_mem_mb = gpu_mem / (1 << 20)

    chunk = typed.get("chunked-prefill-size") or _auto_chunked_prefill(gpu_mem_mb)
    if chunk <= 0:
        chunk = -1
    graph_max_bs = typed.get("cuda-graph-max-bs") or _auto_cuda_graph_max_bs(gpu_mem_mb, tp)
    disable_graph = typed.get("disable-cuda-graph", False)
    fraction = typed.get("mem-fraction-static")
    if fraction is None:
        fraction = auto_mem_fraction_static(gpu_mem_mb, tp, chunk, graph_max_bs)
    max_prefill = typed.get("max-prefill-tokens", DEFAULT_MAX_PREFILL_TOKENS)
    context_len = int(prof["arch"]["context_len"])
    context_len = min(typed.get("context-length", context_len), context_len) or context_len

    kv_dtype = typed.get("kv-cache-dtype", "auto")
    kv_bytes = int(mem["kv_bytes_per_token"])  # bf16 KV
    if kv_dtype.startswith("fp8"):
        kv_bytes //= 2
    elif kv_dtype.startswith("fp4"):
        kv_bytes //= 4

    # Activations of the largest forward, sized the way aiconfigurator's SGLang
    # memory model does; they live outside the static pool.
    act_tokens = chunk if chunk > 0 else max_prefill
    activations = max(
        float(mem["activation_bytes_per_token"]) * act_tokens, float(mem["activation_min_bytes"])
    )
    static_use = (
        float(mem["weights_bytes"])
        + float(mem["runtime_overhead_bytes"])
        + float(mem["comm_overhead_bytes"])
    )
    kv_budget = gpu_mem * fraction - static_use - activations
    pool = int(kv_budget // kv_bytes) if kv_budget > 0 else 0
    if fraction <= 0 or pool <= 0:
        raise SimStartupError(
            "Not enough memory. Please try to increase --mem-fraction-static. "
            f"Current value: self.server_args.mem_fraction_static={fraction}"
        )
    graph_bytes = 0 if disable_graph else graph_max_bs * 2 * (1 << 20)
    headroom = gpu_mem * (1.0 - fraction)
    if headroom < activations + graph_bytes + MIN_DYNAMIC_HEADROOM_BYTES:
        if disable_graph:
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
    user_total = typed.get("max-total-tokens")
    if user_total is not None:
        if user_total < pool:
            pool = max(user_total, 1)
        else:
            logger.warning(
                "max-total-tokens=%d is larger than the profiled value %d; ignored",
                user_total,
                pool,
            )

    req_pool = min(max(int(pool / context_len * 512), 2048), 4096)
    max_running = typed.get("max-running-requests")
    if max_running is None or max_running <= 0:
        max_running = min(pool // 2, req_pool)
    max_running = max(1, max_running)

    policy = typed.get("schedule-policy", "fcfs")
    disable_radix = typed.get("disable-radix-cache", False)
    return SimSettings(
        model=model,
        gpu=gpu,
        dtype=dtype,
        tp_size=tp,
        mem_fraction_static=fraction,
        max_total_num_tokens=pool,
        max_running_requests=max_running,
        chunked_prefill_size=chunk,
        max_prefill_tokens=max_prefill,
        schedule_policy=policy,
        schedule_conservativeness=typed.get("schedule-conservativeness", 1.0),
        cuda_graph_max_bs=graph_max_bs,
        cuda_graph_bs=[] if disable_graph else cuda_graph_batch_sizes(graph_max_bs),
        disable_cuda_graph=disable_graph,
        disable_radix_cache=disable_radix,
        enable_mixed_chunk=typed.get("enable-mixed-chunk", False),
        kv_cache_dtype=kv_dtype,
        context_len=context_len,
        ignored_flags=ignored,
        flags=dict(flags or {}),
        kv_bytes_per_token=kv_bytes,
        hf_model=prof.get("hf_model", model),
    )


def build_engine(
    flags: dict[str, Any],
    *,
    model: str,
    gpu: str,
    dtype: str = "bf16",
    seed: int = 0,
    noise: Any = None,
) -> Any:
    """A ready simulated engine for ``flags`` (``tp-size`` selects the TP table).

    >>> eng = build_engine({"tp-size": 2}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
    >>> eng.server_info()["tp_size"]
    2
    """
    from autotune.sim.scheduler import SimEngine

    settings = resolve_settings(flags, model=model, gpu=gpu, dtype=dtype)
    perf = load_perf(model, gpu, dtype, settings.tp_size)
    return SimEngine(settings, perf, seed=seed, noise=noise)


__all__ = [
    "SimSettings",
    "available_profiles",
    "build_engine",
    "cuda_graph_batch_sizes",
    "resolve_settings",
]
