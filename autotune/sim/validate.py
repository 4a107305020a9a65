"""Check the simulator against measured serving runs in aiconfigurator's
``silicon_sample.csv`` format (one row = one closed-loop run at fixed isl/osl).

Each SGLang aggregated row (backend ``sglang``, mode ``agg``) is replayed with the
default flags of the row's SGLang version (``backend_version``) at its TP size and
concurrency (``batch_size``). Every such row either gets a prediction or a classified
reason why it cannot (``FAILURE_REASONS``: an unknown model, GPU, dtype or version, a
TP size or parallelism the profiles lack, a start-up failure the simulator predicts,
a malformed row). The MAPEs of mean TTFT and mean TPOT are over the predicted rows;
``coverage`` is the share of SGLang rows predicted. Rows of other backends or modes
are counted as ``excluded`` and are not part of the coverage.

    >>> rows = read_rows("tests/fixtures/silicon_sample_sglang_llama31_8b_fp8_h200.csv")
    >>> len(rows), summarize(row_errors(rows[:2]))["coverage"]
    (46, 1.0)
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.sim.calibration import Calibration
from autotune.sim.perf import HostOverhead, available_profiles
from autotune.sim.predict import length_sampler
from autotune.sim.replay import replay_closed_loop
from autotune.sim.settings import build_engine
from autotune.sim.types import SimStartupError
from autotune.sim.versions import UnsupportedVersion, sglang_defaults

logger = logging.getLogger(__name__)

# Checkpoint names whose simulated model is not found by ``sim_model_name``'s rules:
# same architecture under another name (Llama 3.3 70B is Llama 3.1 70B's architecture).
MODEL_ALIASES = {
    "llama-3.3-70b": "llama-3.1-70b",
    "deepseek-r1": "deepseek-v3",
    "deepseek-r1-0528": "deepseek-v3",
    "deepseek-v3-0324": "deepseek-v3",
}
# The rows do not say how they were produced: how many requests each closed-loop
# user sent, and how far output lengths drifted from osl (exactly fixed lengths keep
# every round one synchronised wave, which the measurements do not show). Both were
# chosen on the 46 dense calibration rows with the host constants as shipped
# (tools/fit_sim_overhead.py --workload-only); docs/simulator.md has the choice's
# cross-validation and the error of other choices.
DEFAULT_OSL_SPREAD = 0.15
DEFAULT_REQUESTS_PER_USER = 4
SPAWN_AT_ONCE = float("inf")
REQUIRED_COLUMNS = (
    "backend",
    "model_path",
    "system",
    "isl",
    "osl",
    "batch_size",
    "tp_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
)
FAILURE_REASONS = (
    "malformed_row",
    "unknown_model",
    "unknown_gpu",
    "unknown_dtype",
    "unsupported_version",
    "unsupported_tp",
    "unsupported_profile",
    "unsupported_parallelism",
    "startup_failure",
    "requests_rejected",
    "simulation_error",
)


class RowsError(ValueError):
    """The file is not in silicon_sample.csv format (unreadable, or columns missing)."""


class RowFailure(Exception):
    """Why one row gets no prediction: ``reason`` is one of ``FAILURE_REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SiliconRow:
    row_id: str
    model: str  # simulated model name; "" when unknown
    gpu: str
    dtype: str  # "fp8" | "bf16"; "" when not simulated
    tp: int
    isl: int
    osl: int
    concurrency: int
    ttft_ms: float
    tpot_ms: float
    model_path: str = ""
    precision: str = ""
    sglang_version: str = ""
    pp: int = 1
    ep: int = 1  # moe_ep_size
    attention_dp: int = 1  # attention_dp_size (> 1: SGLang's --enable-dp-attention)
    problem: str = ""  # a malformed row: what is wrong with it


def sim_model_name(model_path: str) -> str:
    """The simulated model for a checkpoint name, or "" if none.

    >>> sim_model_name("meta-llama/Meta-Llama-3.1-8B-Instruct"), sim_model_name("Qwen/Qwen3-32B-FP8")
    ('llama-3.1-8b', 'qwen3-32b')
    """
    name = model_path.strip().rstrip("/").rsplit("/", 1)[-1].lower()
    name = name.removeprefix("meta-")
    name = re.sub(r"-(instruct|chat|fp8|fp8-dynamic|bf16)$", "", name)
    name = re.sub(r"-(instruct|chat)$", "", name)
    name = MODEL_ALIASES.get(name, name)
    return name if name in {p[0] for p in available_profiles()} else ""


def _dtype(precision: str) -> str:
    """aiconfigurator's precision column -> the simulated dtype ("" if not simulated).
    A blank precision means BF16 in silicon_sample.csv."""
    p = precision.strip().lower()
    if p.startswith("fp8"):
        return "fp8"
    return "bf16" if p in ("", "bf16", "bfloat16") else ""


def _number(rec: dict[str, str], key: str, default: float | None = None) -> float:
    text = (rec.get(key) or "").strip()
    if not text:
        if default is None:
            raise ValueError(f"{key} is empty")
        return default
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{key}={text!r} is not a finite number")
    return value


def _parse_row(rec: dict[str, str]) -> SiliconRow:
    common = {
        "row_id": rec.get("id") or "",
        "model_path": rec.get("model_path") or "",
        "precision": rec.get("precision") or "",
        "sglang_version": (rec.get("backend_version") or "").strip(),
        "gpu": (rec.get("system") or "").strip(),
        "model": sim_model_name(rec.get("model_path") or ""),
        "dtype": _dtype(rec.get("precision") or ""),
    }
    try:
        numbers = {
            "tp": int(_number(rec, "tp_size", 1)),
            "pp": int(_number(rec, "pp_size", 1)),
            "ep": int(_number(rec, "moe_ep_size", 1)),
            "attention_dp": int(_number(rec, "attention_dp_size", 1)),
            "isl": int(_number(rec, "isl")),
            "osl": int(_number(rec, "osl")),
            "concurrency": int(_number(rec, "batch_size")),
            "ttft_ms": _number(rec, "silicon_ttft_ms"),
            "tpot_ms": _number(rec, "silicon_tpot_ms"),
        }
        positive = ("tp", "pp", "ep", "attention_dp", "isl", "osl", "concurrency")
        bad = [k for k in positive if numbers[k] < 1]
        bad += [k for k in ("ttft_ms", "tpot_ms") if numbers[k] <= 0]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive")
        return SiliconRow(**common, **numbers)
    except ValueError as err:
        zeros = dict.fromkeys(("tp", "isl", "osl", "concurrency"), 0)
        return SiliconRow(**common, **zeros, ttft_ms=0.0, tpot_ms=0.0, problem=str(err))


def read_all_rows(path: str | Path) -> tuple[list[SiliconRow], Counter[str]]:
    """Every SGLang aggregated row of a silicon_sample.csv-format file, and the count of
    other rows by ``backend/mode`` (excluded). Raises ``RowsError`` for a file that is
    not in that format."""
    rows: list[SiliconRow] = []
    excluded: Counter[str] = Counter()
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RowsError(f"{path}: not a silicon_sample.csv file; missing {missing}")
            for rec in reader:
                backend, mode = rec.get("backend") or "", rec.get("mode") or "agg"
                if backend != "sglang" or mode != "agg":
                    excluded[f"{backend or '?'}/{mode}"] += 1
                    continue
                rows.append(_parse_row(rec))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RowsError(f"{path}: cannot read rows ({err})") from err
    return rows, excluded


def read_rows(path: str | Path) -> list[SiliconRow]:
    """The SGLang aggregated rows of ``path`` that have a simulated profile."""
    rows, _ = read_all_rows(path)
    profiles = set(available_profiles())
    return [r for r in rows if not r.problem and (r.model, r.gpu, r.dtype, r.tp) in profiles]


def check_row(row: SiliconRow) -> None:
    """Raise ``RowFailure`` if ``row`` cannot be simulated, before building anything."""
    if row.problem:
        raise RowFailure("malformed_row", row.problem)
    profiles = available_profiles()
    if not row.model:
        raise RowFailure("unknown_model", f"no simulated model for {row.model_path!r}")
    if row.gpu not in {p[1] for p in profiles}:
        raise RowFailure("unknown_gpu", f"no simulated GPU {row.gpu!r}")
    if not row.dtype:
        raise RowFailure("unknown_dtype", f"precision {row.precision!r} is not simulated")
    try:
        sglang_defaults(row.sglang_version or None)
    except UnsupportedVersion as err:
        raise RowFailure("unsupported_version", str(err)) from err
    if row.pp != 1:
        raise RowFailure("unsupported_parallelism", f"pp_size={row.pp} is not simulated")
    if (row.model, row.gpu, row.dtype, row.tp) not in profiles:
        same = any(p[:3] == (row.model, row.gpu, row.dtype) for p in profiles)
        reason = "unsupported_tp" if same else "unsupported_profile"
        raise RowFailure(reason, f"no profile {row.model}/{row.gpu}/{row.dtype}/tp{row.tp}")


def row_flags(row: SiliconRow) -> dict[str, Any]:
    """The SGLang flags of a row's parallel layout (``tp_size`` is the replica's GPUs).

    >>> row_flags(SiliconRow("", "m", "g", "fp8", 8, 1, 1, 1, 1.0, 1.0, ep=8, attention_dp=8))
    {'tp-size': 8, 'ep-size': 8, 'enable-dp-attention': True, 'dp-size': 8}
    """
    flags: dict[str, Any] = {"tp-size": row.tp}
    if row.ep > 1:
        flags["ep-size"] = row.ep
    if row.attention_dp > 1:
        flags.update({"enable-dp-attention": True, "dp-size": row.attention_dp})
    return flags


def simulate_row(
    row: SiliconRow,
    *,
    host: HostOverhead | None = None,
    calibration: Calibration | None = None,
    osl_spread: float = DEFAULT_OSL_SPREAD,
    requests_per_user: float = DEFAULT_REQUESTS_PER_USER,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean (TTFT ms, TPOT ms) of one simulated replay of ``row``."""
    engine = build_engine(
        row_flags(row),
        model=row.model,
        gpu=row.gpu,
        dtype=row.dtype,
        seed=seed,
        sglang_version=row.sglang_version or None,
        calibration=calibration,
    )
    if host is not None:
        engine.perf.host = host
    records = replay_closed_loop(
        engine,
        concurrency=row.concurrency,
        num_requests=max(int(requests_per_user * row.concurrency), row.concurrency),
        sample_lengths=length_sampler(row.isl, row.osl, osl_spread),
        seed=seed,
        # The rows' load generator is not genai-bench; like sglang.bench_serving with
        # --max-concurrency, all users send their first request at once.
        spawn_rate=SPAWN_AT_ONCE,
    )
    ok = [r for r in records if r.ok]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    tpot = [r.tpot_s for r in ok if r.tpot_s is not None]
    if not ttft or not tpot:
        if engine.rejects(row.isl, row.osl):  # a prediction, not a fault of the simulator
            settings = engine.settings
            raise RowFailure(
                "requests_rejected",
                f"a {row.isl}-token prompt does not fit: KV pool "
                f"{settings.max_total_num_tokens} tokens, context {settings.context_len}",
            )
        raise RowFailure("simulation_error", f"{len(records) - len(ok)} simulated requests failed")
    return 1000.0 * sum(ttft) / len(ttft), 1000.0 * sum(tpot) / len(tpot)


def _row_head(row: SiliconRow) -> dict[str, Any]:
    return {
        "id": row.row_id,
        "model": row.model or row.model_path,
        "gpu": row.gpu,
        "dtype": row.dtype or row.precision,
        "sglang_version": row.sglang_version,
        "tp": row.tp,
        "ep": row.ep,
        "attention_dp": row.attention_dp,
        "isl": row.isl,
        "osl": row.osl,
        "concurrency": row.concurrency,
    }


def evaluate_row(row: SiliconRow, **kwargs: Any) -> dict[str, Any]:
    """Simulated vs measured values and absolute percentage errors of one row, or its
    ``failure`` (a reason of ``FAILURE_REASONS``) and ``message``."""
    out = _row_head(row)
    try:
        check_row(row)
        ttft, tpot = simulate_row(row, **kwargs)
    except RowFailure as err:
        return {**out, "failure": err.reason, "message": str(err)}
    except SimStartupError as err:
        return {**out, "failure": "startup_failure", "message": str(err).splitlines()[0]}
    except ValueError as err:  # a layout the profiles lack (ep-size, dp attention ...)
        return {**out, "failure": "unsupported_parallelism", "message": str(err)}
    except Exception as err:  # one bad row must not cost the report of all the others
        logger.exception("row %s: simulation failed", row.row_id)
        return {**out, "failure": "simulation_error", "message": f"{type(err).__name__}: {err}"}
    return {
        **out,
        "ttft_ms": ttft,
        "ttft_ms_measured": row.ttft_ms,
        "tpot_ms": tpot,
        "tpot_ms_measured": row.tpot_ms,
        "ttft_ape": abs(ttft - row.ttft_ms) / row.ttft_ms,
        "tpot_ape": abs(tpot - row.tpot_ms) / row.tpot_ms,
    }


def row_errors(rows: list[SiliconRow], **kwargs: Any) -> list[dict[str, Any]]:
    """``evaluate_row`` for each row."""
    return [evaluate_row(row, **kwargs) for row in rows]


def summarize(errs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows, predicted, failed, failures by reason, coverage, and the MAPEs (fractions)
    over the predicted rows (None when none was predicted)."""
    ok = [e for e in errs if "failure" not in e]
    failures = Counter(e["failure"] for e in errs if "failure" in e)
    n = len(ok)
    return {
        "rows": len(errs),
        "predicted": n,
        "failed": len(errs) - n,
        "failures": dict(sorted(failures.items())),
        "coverage": n / len(errs) if errs else None,
        "tpot_mape": sum(e["tpot_ape"] for e in ok) / n if n else None,
        "ttft_mape": sum(e["ttft_ape"] for e in ok) / n if n else None,
    }


def validate(rows: list[SiliconRow], **kwargs: Any) -> dict[str, Any]:
    """``summarize(row_errors(rows))``: ``{"rows", "predicted", "failed", "failures",
    "coverage", "tpot_mape", "ttft_mape"}``."""
    return summarize(row_errors(rows, **kwargs))
