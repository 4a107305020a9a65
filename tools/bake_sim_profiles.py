"""Bake the simulated engine's step-time and KV-capacity tables from aiconfigurator-core.

Build-time only: the package never imports aiconfigurator-core at run time. Run it in
a separate virtual environment that has the pinned wheel:

    python3 -m venv /work/aic-venv
    /work/aic-venv/bin/pip install aiconfigurator-core==0.12.0
    /work/aic-venv/bin/python tools/bake_sim_profiles.py            # all profiles
    /work/aic-venv/bin/python tools/bake_sim_profiles.py --gpu h200_sxm --model llama-3.1-8b

Each (GPU, model, dtype, TP) becomes one small JSON file under
``autotune/sim/profiles/<gpu>/`` holding four tables, all in milliseconds of kernel
time measured on real SGLang kernels (FA3 attention, sgl-kernel / DeepGEMM GEMMs,
custom all-reduce) and the memory numbers that size the KV pool:

- ``na``: non-attention cost of one forward pass over T tokens (GEMMs, norms,
  activations, all-reduces), without the LM head;
- ``lg``: LM-head (logits) GEMM for n sampled sequences;
- ``ca``: causal attention of one sequence's prefill chunk of q tokens on top of p
  cached tokens;
- ``da``: decode attention of B sequences at mean context length L;
- ``memory``: per-GPU capacity, weights, runtime/NCCL overheads, activation bytes
  per token and KV bytes per token, as aiconfigurator's SGLang memory model has them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("bake_sim_profiles")

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "autotune" / "sim" / "profiles"

# Our model names -> the name aiconfigurator knows (its bundled config.json), the
# context length SGLang uses (max_position_embeddings of the served checkpoint).
MODELS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": {
        "aic": "meta-llama/Meta-Llama-3.1-8B",
        "hf": "meta-llama/Llama-3.1-8B-Instruct",
    },
    "llama-3.1-70b": {
        "aic": "meta-llama/Meta-Llama-3.1-70B",
        "hf": "meta-llama/Llama-3.1-70B-Instruct",
    },
    "qwen3-8b": {"aic": "Qwen/Qwen3-8B", "hf": "Qwen/Qwen3-8B"},
    "qwen3-32b": {"aic": "Qwen/Qwen3-32B", "hf": "Qwen/Qwen3-32B"},
    "qwen2.5-7b": {"aic": None, "hf": "Qwen/Qwen2.5-7B-Instruct"},
}

# Mixture-of-experts models: FP8 only (their released FP8 checkpoints), H200, the TP
# sizes whose weights fit. Each profile carries, besides SGLang's default layout (MoE
# split by TP), the variants a study can choose with SGLang's flags: ``ep<N>``
# (--ep-size N: experts split over N GPUs), ``dpa<N>`` (--enable-dp-attention
# --dp-size N: attention data-parallel over N ranks, MoE by TP) and ``ep<N>_dpa<N>``.
MOE_MODELS: dict[str, dict[str, Any]] = {
    "qwen3-235b-a22b": {
        "aic": "Qwen/Qwen3-235B-A22B",
        "hf": "Qwen/Qwen3-235B-A22B-FP8",
        "tps": [2, 4, 8],
    },
    "deepseek-v3": {"aic": "deepseek-ai/DeepSeek-V3", "hf": "deepseek-ai/DeepSeek-V3", "tps": [8]},
}
MOE_GPUS = ["h200_sxm"]
# aiconfigurator 0.12.0 bundles no Qwen2.5 config; these are the public values of
# Qwen/Qwen2.5-7B-Instruct's config.json (Qwen2ForCausalLM is in aiconfigurator's
# LLAMA family).
QWEN25_7B_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "vocab_size": 152064,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "sliding_window": 131072,
    "use_sliding_window": False,
    "max_window_layers": 28,
}

GPUS = ["h100_sxm", "h200_sxm"]
TPS = [1, 2, 4, 8]
# Our dtype -> aiconfigurator GEMM quant mode. fp8 is block-scaled FP8 (DeepGEMM),
# the mode of the measured SGLang rows in silicon_sample.csv and of Qwen's FP8
# checkpoints.
DTYPES = {"bf16": "bfloat16", "fp8": "fp8_block"}

NA_TOKENS = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768]
NA_TOKENS += [
    1024,
    1280,
    1536,
    2048,
    2560,
    3072,
    4096,
    5120,
    6144,
    8192,
    10240,
    12288,
    16384,
    24576,
    32768,
]
LG_SEQS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
CA_Q = [1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
CA_P = [0, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
DA_B = [1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
DA_L = [64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
# Tokens the activation estimate is taken at (SGLang's default chunked prefill).
ACT_PROBE_TOKENS = 8192


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def monotone(values: list[float]) -> list[float]:
    """Least-squares non-decreasing fit (pool adjacent violators).

    Kernel tables carry measurement noise (a GEMM at 1280 tokens measured faster than
    at 1024); the simulator's sanity properties (more work never takes less time)
    need monotone tables, and PAV changes the data as little as possible.

    >>> monotone([1.0, 3.0, 2.0, 4.0])
    [1.0, 2.5, 2.5, 4.0]
    """
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out: list[float] = []
    for s, c in blocks:
        out.extend([s / c] * int(c))
    return out


def monotone_2d(rows: list[list[float]]) -> list[list[float]]:
    """Make a table non-decreasing along both axes (rows first, then columns)."""
    rows = [monotone(r) for r in rows]
    cols = [monotone(list(c)) for c in zip(*rows, strict=True)]
    return [[_round(v) for v in r] for r in zip(*cols, strict=True)]


def moe_layouts(tp: int) -> dict[str, dict[str, int]]:
    """aiconfigurator's parallel layout for each variant of a ``tp``-GPU MoE replica:
    ``--ep-size E`` and ``--enable-dp-attention --dp-size D`` for every E, D dividing tp
    (attention TP tp/D inside each DP rank; experts TP tp/E x EP E).

    >>> sorted(moe_layouts(2))
    ['', 'dpa2', 'ep2', 'ep2_dpa2']
    """
    sizes = [n for n in range(1, tp + 1) if tp % n == 0]
    out = {}
    for ep in sizes:
        for dp in sizes:
            key = "_".join(p for p in (f"ep{ep}" * (ep > 1), f"dpa{dp}" * (dp > 1)) if p)
            out[key] = {
                "tp_size": tp // dp,
                "attention_dp_size": dp,
                "moe_tp_size": tp // ep,
                "moe_ep_size": ep,
            }
    return out


def _model_path(name: str, tmp: Path) -> str:
    spec = MODELS.get(name) or MOE_MODELS[name]
    if spec["aic"]:
        return spec["aic"]
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(QWEN25_7B_CONFIG))
    return str(d)


def _hf_config(name: str) -> dict:
    spec = MODELS.get(name) or MOE_MODELS[name]
    if spec["aic"] is None:
        return QWEN25_7B_CONFIG
    from aiconfigurator_core.sdk.utils import _load_pre_downloaded_hf_config

    return _load_pre_downloaded_hf_config(spec["aic"])


# Attention ops by name (MLA models have one block: projections + attention).
CTX_ATTENTION = ("context_attention", "context_mla_block")
GEN_ATTENTION = ("generation_attention", "generation_mla_block")
LOGITS = ("context_logits_gemm", "generation_logits_gemm")


def _tables(handle: Any) -> dict[str, Any]:
    """The four kernel tables (ms) of one compiled engine."""
    ctx_ops, gen_ops = handle.run_static_per_op(batch_size=1, isl=128, osl=2)
    ctx_names = [op[0] for op in ctx_ops]
    gen_names = [op[0] for op in gen_ops]
    na_idx = [i for i, n in enumerate(ctx_names) if n not in CTX_ATTENTION + LOGITS]
    ca_idx = [i for i, n in enumerate(ctx_names) if n in CTX_ATTENTION]
    da_idx = [i for i, n in enumerate(gen_names) if n in GEN_ATTENTION]

    def ctx(idx: list[int], batch: int, s: int, prefix: int = 0) -> float:
        return sum(
            op[1] for op in handle.evaluate_context_ops(idx, batch_size=batch, s=s, prefix=prefix)
        )

    def gen(idx: list[int], batch: int, s: int) -> float:
        return sum(op[1] for op in handle.evaluate_generation_ops(idx, batch_size=batch, s=s))

    na = [_round(v) for v in monotone([ctx(na_idx, 1, t) for t in NA_TOKENS])]
    # The logits GEMM runs once per sampled sequence: batch n of 1-token rows (some
    # models list it among the generation ops only).
    if "context_logits_gemm" in ctx_names:
        lg_raw = [ctx([ctx_names.index("context_logits_gemm")], n, 1) for n in LG_SEQS]
    else:
        lg_raw = [gen([gen_names.index("generation_logits_gemm")], n, 1) for n in LG_SEQS]
    lg = [_round(v) for v in monotone(lg_raw)]
    # context attention: s = new (query) tokens, prefix = tokens already in the KV cache.
    ca = monotone_2d([[ctx(ca_idx, 1, q, p) for p in CA_P] for q in CA_Q])
    da = monotone_2d([[gen(da_idx, b, ell) for ell in DA_L] for b in DA_B])
    return {
        "na": {"tokens": NA_TOKENS, "ms": na},
        "lg": {"seqs": LG_SEQS, "ms": lg},
        "ca": {"q": CA_Q, "p": CA_P, "ms": ca},
        "da": {"b": DA_B, "l": DA_L, "ms": da},
    }


def _memory(path: str, gpu: str, data_version: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    from aiconfigurator_core.sdk.memory import KVCacheEstimator

    est = KVCacheEstimator.from_request(
        path,
        gpu,
        "sglang",
        data_version,
        max_num_tokens=ACT_PROBE_TOKENS,
        max_batch_size=1,
        **kwargs,
    )
    bd = est.breakdown
    return {
        "gpu_mem_bytes": int(bd["gpu_memory_capacity_bytes"]),
        "weights_bytes": int(bd["weights_bytes"]),
        "runtime_overhead_bytes": int(bd["runtime_overhead_bytes"]),
        "comm_overhead_bytes": int(bd["comm_overhead_bytes"]),
        "activation_bytes_per_token": _round(bd["activations_bytes"] / ACT_PROBE_TOKENS),
        "activation_min_bytes": int(90 * 1024 * 1024 * 1.15),
        "kv_bytes_per_token": int(bd["kv_size_per_token_bytes"]),
    }


def _arch(name: str) -> dict[str, Any]:
    cfg = _hf_config(name)
    heads = cfg["num_attention_heads"]
    arch = {
        "num_layers": cfg["num_hidden_layers"],
        "hidden_size": cfg["hidden_size"],
        "num_heads": heads,
        "num_kv_heads": cfg["num_key_value_heads"],
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "vocab_size": cfg["vocab_size"],
        "context_len": cfg["max_position_embeddings"],
    }
    experts = cfg.get("num_experts") or cfg.get("n_routed_experts")
    if experts:
        arch["num_experts"] = experts
        arch["experts_per_token"] = cfg.get("num_experts_per_tok")
        arch["mla"] = bool(cfg.get("kv_lora_rank"))
    return arch


def bake_one(
    name: str,
    gpu: str,
    dtype: str,
    tp: int,
    tmp: Path,
    data_version: str,
    layout: dict[str, int] | None = None,
) -> dict:
    """Query aiconfigurator for one profile and return the JSON-ready dict.

    ``layout`` (aiconfigurator's tp_size, attention_dp_size, moe_tp_size, moe_ep_size)
    defaults to plain tensor parallelism over ``tp`` GPUs.
    """
    from aiconfigurator_core.sdk.engine import EngineHandle

    path = _model_path(name, tmp)
    quant = DTYPES[dtype]
    kwargs: dict[str, Any] = {"tp_size": tp, "gemm_quant_mode": quant, **(layout or {})}
    if layout is not None:
        # MoE checkpoints: FP8 experts; BF16 KV cache and attention (SGLang's default).
        kwargs.update(
            moe_quant_mode=quant, kvcache_quant_mode="bfloat16", fmha_quant_mode="bfloat16"
        )
    handle = EngineHandle.compile(path, gpu, "sglang", backend_version=data_version, **kwargs)
    spec = MODELS.get(name) or MOE_MODELS[name]
    return {
        "schema": 1,
        "model": name,
        "hf_model": spec["hf"],
        "gpu": gpu,
        "dtype": dtype,
        "tp": tp,
        "gemm_quant_mode": quant,
        "arch": _arch(name),
        "memory": _memory(path, gpu, data_version, kwargs),
        **_tables(handle),
    }


def bake_moe(name: str, gpu: str, tp: int, tmp: Path, data_version: str) -> dict:
    """SGLang's default MoE layout at the top level, the other layouts under ``variants``.

    A layout SGLang cannot load (e.g. FP8 block-quantised experts whose per-GPU slice
    is not a whole number of 128-wide blocks) is kept in ``layout_errors`` with the
    reason; if that is the default layout, the top-level tables are the first valid
    variant's, so that the file still loads, and the simulator fails start-up.
    """
    tables: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for key, layout in moe_layouts(tp).items():
        try:
            tables[key] = bake_one(name, gpu, "fp8", tp, tmp, data_version, layout)
        except ValueError as err:
            errors[key] = str(err).strip()
            logger.info("%s tp%d %r: not a valid layout (%s)", name, tp, key, errors[key])
    if not tables:
        raise ValueError(f"{name} tp{tp}: no valid layout: {errors}")
    prof = dict(tables.get("") or next(iter(tables.values())))
    prof["variants"] = {
        key: {k: var[k] for k in ("memory", "na", "lg", "ca", "da")}
        for key, var in tables.items()
        if key
    }
    prof["layout_errors"] = errors
    return prof


def _sglang_data_version(gpu: str) -> str:
    """The SGLang version of the kernel data aiconfigurator queries for ``gpu``."""
    import aiconfigurator_core
    import yaml

    qv = Path(aiconfigurator_core.__file__).parent / "systems" / "query_versions.yaml"
    data = yaml.safe_load(qv.read_text())
    override = data.get("overrides", {}).get(gpu, {}).get("sglang")
    return (override or data["defaults"]["sglang"])["current"]


def _write(out_dir: Path, prof: dict, version: str, data_version: str, today: str) -> None:
    prof["provenance"] = {
        "source": "aiconfigurator-core (NVIDIA, Apache-2.0)",
        "source_version": version,
        "sglang_data_version": data_version,
        "baked_on": today,
        "tool": "tools/bake_sim_profiles.py",
    }
    out = out_dir / prof["gpu"] / f"{prof['model']}__{prof['dtype']}__tp{prof['tp']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(prof, separators=(",", ":")) + "\n")
    logger.info("wrote %s (%d bytes)", out, out.stat().st_size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="append", choices=GPUS)
    ap.add_argument("--model", action="append", choices=sorted(MODELS))
    ap.add_argument("--dtype", action="append", choices=sorted(DTYPES))
    ap.add_argument("--tp", action="append", type=int, choices=TPS)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument(
        "--moe", action="store_true", help="also bake the MoE profiles (MOE_MODELS, MOE_GPUS)"
    )
    ap.add_argument("--moe-only", action="store_true", help="bake only the MoE profiles")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # aiconfigurator logs every low-fidelity fallback table it loads; keep ours readable.
    logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)

    version = importlib.metadata.version("aiconfigurator-core")
    today = dt.date.today().isoformat()
    index_path = args.out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"profiles": []}
    known = {(p["gpu"], p["model"], p["dtype"], p["tp"]) for p in index["profiles"]}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        args.moe = args.moe or args.moe_only
        for gpu in [] if args.moe_only else args.gpu or GPUS:
            data_version = _sglang_data_version(gpu)
            for name in args.model or sorted(MODELS):
                heads = _hf_config(name)["num_attention_heads"]
                for dtype in args.dtype or sorted(DTYPES):
                    for tp in args.tp or TPS:
                        if heads % tp:
                            # SGLang refuses such a TP size; there is nothing to measure.
                            logger.info("skip %s tp%d: %d heads not divisible", name, tp, heads)
                            continue
                        prof = bake_one(name, gpu, dtype, tp, tmp, data_version)
                        _write(args.out, prof, version, data_version, today)
                        known.add((gpu, name, dtype, tp))
        if args.moe:
            for gpu in MOE_GPUS:
                data_version = _sglang_data_version(gpu)
                for name, spec in MOE_MODELS.items():
                    for tp in spec["tps"]:
                        prof = bake_moe(name, gpu, tp, tmp, data_version)
                        _write(args.out, prof, version, data_version, today)
                        known.add((gpu, name, "fp8", tp))
    index = {
        "source": "aiconfigurator-core",
        "source_version": version,
        "baked_on": today,
        "profiles": [{"gpu": g, "model": m, "dtype": d, "tp": t} for g, m, d, t in sorted(known)],
    }
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
