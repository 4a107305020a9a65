"""Facts about a Python interpreter's packages, found without importing them.

Stdlib only and self-contained: the doctor runs this file's source with ``python -c``
in another interpreter (an engine's virtualenv that has no autotune), or calls the
functions directly when the interpreter is its own (no child process at all).

    python -c "$(cat probe.py)" version genai-bench genai_bench/cli/cli.py
    python -c "$(cat probe.py)" module sglang.launch_server
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys


def _locations(package: str) -> list[str]:
    spec = importlib.util.find_spec(package)  # the top package only: nothing is imported
    if spec is None:
        raise ModuleNotFoundError(f"no module named {package!r}")
    return list(spec.submodule_search_locations or [])


def distribution(dist: str, package: str, inner: str) -> dict[str, object]:
    """{"version", "has": inner file exists in the package} or {"error"}."""
    try:
        version = importlib.metadata.version(dist)
        has = any(os.path.isfile(os.path.join(d, inner)) for d in _locations(package))
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"version": version, "has": has}


def module(name: str) -> dict[str, object]:
    """{"ok": True} when ``python -m name`` would find the module, else {"error"}."""
    top, _, rest = name.partition(".")
    try:
        bases = _locations(top)
    except Exception as e:
        return {"error": str(e)}
    if rest:
        rel = rest.replace(".", os.sep)
        files = (os.path.join(b, rel + ".py") for b in bases)
        inits = (os.path.join(b, rel, "__init__.py") for b in bases)
        if not any(os.path.isfile(f) for f in (*files, *inits)):
            return {"error": f"{top} has no module {rest!r}"}
    return {"ok": True}


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    out = distribution(*args) if what == "version" else module(*args)
    print(json.dumps(out))
