"""SGLang's command line, as the simulated server accepts it.

The flag table is data (``sglang_flags.yaml`` next to this module, shipped as package
data): names, types, defaults and choices of SGLang's ``ServerArgs`` flags. This
module turns it into SGLang's argparse front (prog ``launch_server.py``) plus the
simulator's own ``--sim-*`` options, and tells which flags were given explicitly.

    >>> "mem-fraction-static" in known_flags()
    True
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import yaml

FLAG_TABLE = Path(__file__).resolve().parent / "sglang_flags.yaml"

# Flags the HTTP front itself honours; every other flag given on the command line
# goes to ``build_engine``, which models it or lists it in ``ignored_flags``.
SERVER_FLAGS = frozenset(
    {
        "model_path",
        "tokenizer_path",
        "host",
        "port",
        "served_model_name",
        "enable_metrics",
        "enable_cache_report",
        "api_key",
        "decode_log_interval",
        "log_level",
        "skip_server_warmup",
        "weight_version",
        "log_requests",
    }
)

_TYPES = {"int": int, "float": float, "str": str}


@functools.cache
def _table() -> dict[str, Any]:
    return yaml.safe_load(FLAG_TABLE.read_text())


def table_version() -> str:
    """The SGLang version the flag table was read from."""
    return str(_table()["sglang_version"])


@functools.cache
def flag_table() -> tuple[dict[str, Any], ...]:
    """The flag entries of ``sglang_flags.yaml``, named choice lists resolved."""
    data = _table()
    named = data.get("choices") or {}
    entries = []
    for entry in data["flags"]:
        entry = dict(entry)
        if isinstance(entry.get("choices"), str):
            entry["choices"] = named[entry["choices"]]
        entries.append(entry)
    return tuple(entries)


def known_flags() -> frozenset[str]:
    """Every SGLang flag name the simulator accepts, aliases included, without dashes."""
    return frozenset(name.lstrip("-") for entry in flag_table() for name in entry["names"])


def _argparse_kwargs(entry: dict[str, Any], suppress_defaults: bool) -> dict[str, Any]:
    kind = entry["type"]
    kw: dict[str, Any] = {}
    if entry.get("choices") is not None:
        kw["choices"] = entry["choices"]
    if suppress_defaults:
        kw["default"] = argparse.SUPPRESS
    else:
        kw["default"] = entry.get("default")
        if entry.get("required"):
            kw["required"] = True
    if kind == "bool":
        kw["action"] = "store_true"
    elif kind.startswith("list_"):
        kw["nargs"] = "+"
        kw["type"] = _TYPES[kind[5:]]
    else:
        kw["type"] = _TYPES[kind]
    return kw


def build_parser(*, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """SGLang's argparse front (prog ``launch_server.py``) plus the ``--sim-*`` options.

    ``suppress_defaults`` leaves unset options out of the namespace, which tells which
    flags were given explicitly.

        >>> build_parser().parse_args(["--model-path", "m", "--mem-frac", "0.7"]).mem_fraction_static
        0.7
    """
    p = argparse.ArgumentParser(prog="launch_server.py")
    for entry in flag_table():
        p.add_argument(*entry["names"], **_argparse_kwargs(entry, suppress_defaults))
    _add_sim_options(p.add_argument_group("simulator (autotune.sim)"), suppress_defaults)
    return p


def _add_sim_options(sim: argparse._ArgumentGroup, suppress_defaults: bool) -> None:
    def simarg(*names: str, **kw: Any) -> None:
        if suppress_defaults:
            kw["default"] = argparse.SUPPRESS
        sim.add_argument(*names, **kw)

    simarg("--sim-model", default="llama-3.1-8b", help="simulated model profile")
    simarg("--sim-gpu", default="h200_sxm", help="simulated GPU (h200_sxm, h100_sxm, ...)")
    simarg("--sim-dtype", default="bf16", choices=["bf16", "fp8"], help="weight/compute dtype")
    simarg("--sim-seed", type=int, default=0, help="seed of the simulator's randomness")
    simarg("--sim-noise", type=float, default=0.0, help="run-to-run noise (autotune.sim.noise)")
    simarg("--sim-noise-key", default="", help="seed key of this deployment's noise")
    simarg(
        "--sim-sglang-version",
        "--sglang-version",
        default=None,
        help="SGLang version whose start-up defaults are imitated (default: "
        "autotune.sim.versions.DEFAULT_SGLANG_VERSION)",
    )
    simarg(
        "--sim-calibration",
        action="append",
        default=[] if not suppress_defaults else argparse.SUPPRESS,
        help="calibration constant KEY=VALUE, repeatable (autotune.sim.calibration)",
    )
    simarg("--sim-startup-s", type=float, default=1.0, help="simulated load time (seconds)")
    simarg("--sim-max-chunks", type=int, default=4, help="streamed chunks per response (>=2)")
    simarg(
        "--sim-fault",
        action="append",
        default=[] if not suppress_defaults else argparse.SUPPRESS,
        help="fault knob, repeatable (see autotune.sim.faults)",
    )


def explicit_flags(argv: list[str]) -> set[str]:
    """ServerArgs field names given on the command line (defaults excluded)."""
    ns, _ = build_parser(suppress_defaults=True).parse_known_args(argv)
    return set(vars(ns))


def engine_flags(args: argparse.Namespace, given: set[str]) -> dict[str, Any]:
    """The explicitly given flags (SGLang's dash names) for ``build_engine``.

    >>> engine_flags(build_parser().parse_args(["--model", "m", "--tp", "2"]), {"model_path", "tp_size"})
    {'tp-size': 2}
    """
    return {
        name.replace("_", "-"): getattr(args, name)
        for name in sorted(given)
        if not name.startswith("sim_") and name not in SERVER_FLAGS
    }
