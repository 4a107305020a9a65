"""Launch flags of a trial: aliases → native names, validation, argv.

A runtime config declares the flags it knows and short aliases for them. The sweep
varies ``params``; this module turns them into the engine's own flags and argv items
(never a shell string), and rejects unknown or ill-typed flags before anything runs.

    >>> spec = {"mem-fraction-static": FlagSpec(type="float", min=0.05, max=0.99)}
    >>> normalize({"mem": "0.8"}, spec, {"mem": "mem-fraction-static"})
    {'mem-fraction-static': 0.8}
    >>> to_argv({"mem-fraction-static": 0.8, "enable-mixed-chunk": True}, ...)  # doctest: +SKIP
    ['--mem-fraction-static', '0.8', '--enable-mixed-chunk']
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from autotune.config import FlagSpec


class ParamError(ValueError):
    """A flag the engine does not know, or a value it would reject."""


def _spec_get(spec: Any, key: str, default: Any = None) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(key, default)
    return getattr(spec, key, default)


def suggest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Close matches for a misspelt flag, best first."""
    known = list(known)
    hits = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    # Substring hits catch abbreviations such as `prefill` -> `chunked-prefill-size`.
    for k in known:
        if len(hits) >= n:
            break
        if k not in hits and (name in k or k in name):
            hits.append(k)
    return hits


def canonical_name(name: str, flags: Mapping[str, Any], aliases: Mapping[str, str]) -> str:
    """The native flag name for ``name`` (an alias, a native name, or ``--native``)."""
    bare = str(name).lstrip("-").replace("_", "-")
    if bare in aliases:
        return aliases[bare]
    if bare in flags:
        return bare
    known = sorted(set(flags) | set(aliases))
    hint = suggest(bare, known)
    if hint:
        advice = f"Did you mean: {', '.join(hint)}?"
    else:
        advice = f"Known flags: {', '.join(sorted(flags))}; aliases: {', '.join(sorted(aliases))}."
    raise ParamError(
        f"params.{name}: unknown flag for this runtime. {advice} "
        f"(To tune another flag, add it under `flags:` in the runtime config.)"
    )


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value) if isinstance(value, float) else int(str(value))


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


_CONVERT = {"bool": _as_bool, "int": _as_int, "float": _as_float}


def coerce(name: str, value: Any, spec: Any) -> Any:
    """Check ``value`` against the flag's spec and return it with the right type."""
    kind = _spec_get(spec, "type", "str")
    try:
        out = _CONVERT.get(kind, str)(value)
    except (TypeError, ValueError):
        raise ParamError(f"params.{name}={value!r}: expected a {kind} value.") from None
    choices = _spec_get(spec, "choices")
    if choices is not None and out not in list(choices):
        hint = suggest(str(out), [str(c) for c in choices])
        did_you_mean = f" Did you mean: {', '.join(hint)}?" if hint else ""
        raise ParamError(f"params.{name}={value!r}: not one of {list(choices)}.{did_you_mean}")
    lo, hi = _spec_get(spec, "min"), _spec_get(spec, "max")
    if kind in ("int", "float"):
        if lo is not None and out < lo:
            raise ParamError(f"params.{name}={value!r}: must be >= {lo}.")
        if hi is not None and out > hi:
            raise ParamError(f"params.{name}={value!r}: must be <= {hi}.")
    return out


def normalize(
    params: Mapping[str, Any], flags: Mapping[str, Any], aliases: Mapping[str, str]
) -> dict[str, Any]:
    """Map aliases to native names and type-check every value.

    ``None`` means "engine default" and is dropped. Giving a flag twice (alias and
    native name) is an error rather than a silent pick.
    """
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for raw_name, value in params.items():
        if value is None:
            continue
        native = canonical_name(raw_name, flags, aliases)
        if native in out:
            raise ParamError(
                f"params.{raw_name} and params.{given_as[native]} both set {native}: keep one."
            )
        out[native] = coerce(raw_name, value, flags[native])
        given_as[native] = raw_name
    return out


def to_argv(params: Mapping[str, Any], flags: Mapping[str, Any]) -> list[str]:
    """Engine argv items for normalized params: booleans become bare switches."""
    argv: list[str] = []
    for name, value in params.items():
        if _spec_get(flags.get(name, FlagSpec()), "type") == "bool" or isinstance(value, bool):
            if value:
                argv.append(f"--{name}")
            continue
        argv += [f"--{name}", str(value)]
    return argv


def gpu_count(params: Mapping[str, Any], gpu_flag: str | None) -> int:
    """GPUs one trial takes (``tp-size`` for SGLang)."""
    if not gpu_flag:
        return 1
    return int(params.get(gpu_flag, 1) or 1)


# SGLang's attention data parallelism runs its dp ranks on the tp GPUs.
_DP_INSIDE_TP = "enable-dp-attention"


def gpus_used(params: Mapping[str, Any], parallel_flags: Iterable[str]) -> int:
    """GPUs one deployment occupies: the product of its parallelism flags (tp × dp × pp).

    ``parallel_flags`` are the runtime's names (``runtime.parallel_flags``: SGLang
    ``tp-size, dp-size, pp-size``; vLLM ``tensor-parallel-size`` …); an unset flag
    counts 1. With ``enable-dp-attention`` SGLang's dp ranks share the tp GPUs.

    >>> gpus_used({"tp-size": 2, "dp-size": 2}, ["tp-size", "dp-size", "pp-size"])
    4
    >>> gpus_used({"tp-size": 4, "dp-size": 4, "enable-dp-attention": True}, ["tp-size", "dp-size"])
    4
    """
    total = 1
    for flag in parallel_flags:
        if flag == "dp-size" and params.get(_DP_INSIDE_TP):
            continue
        total *= int(params.get(flag, 1) or 1)
    return total
