"""'Save as experiment': a study given as overrides, written as a Hydra experiment file.

The file has the shape of ``examples/*/experiment/*.yaml`` (``# @package _global_``,
group choices as ``override /group: choice`` defaults, plain keys as values, sweeps
under ``hydra.sweeper.params``), so it lives in version control and
``python -m autotune --config-dir DIR +experiment=NAME`` runs exactly it.

    experiment_yaml(["model=qwen3-8b", "params.mem=0.7,0.8", "search.n_trials=4"])
    # -> "# @package _global_", defaults [{override /model: qwen3-8b}],
    #    search: {n_trials: 4}, hydra.sweeper.params: {params.mem: '0.7,0.8'}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from autotune.web.bridge import GROUPS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ExperimentError(ValueError):
    pass


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise ExperimentError(f"{dotted}: conflicts with another override of {p}")
    tree[parts[-1]] = value


def experiment_yaml(overrides: list[str], comment: str = "") -> str:
    """The experiment file's text for ``overrides`` (Hydra's override grammar)."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:
        raise ExperimentError(f"cannot parse the overrides: {e}") from e
    defaults, values, sweeps = [], {}, {}
    for ov, text in zip(parsed, overrides, strict=True):
        key = ov.key_or_group
        if ov.is_delete():
            raise ExperimentError(f"{text}: a deletion cannot be saved in an experiment file")
        if key in GROUPS and not ov.package:
            if ov.is_sweep_override():
                raise ExperimentError(f"{text}: sweeping over {key} configs cannot be saved")
            defaults.append({f"override /{key}": ov.value()})
        elif ov.is_sweep_override():
            sweeps[key] = text.split("=", 1)[1]
        else:
            _set(values, key, ov.value())
    doc: dict[str, Any] = {}
    if defaults:
        doc["defaults"] = defaults
    doc.update(values)
    if sweeps:
        doc.setdefault("hydra", {}).setdefault("sweeper", {})["params"] = sweeps
    header = "# @package _global_\n"
    if comment:
        header += "".join(f"# {line}\n" for line in comment.splitlines())
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def save(directory: Path, name: str, overrides: list[str], comment: str = "") -> Path:
    """Write ``<directory>/experiment/<name>.yaml``; returns its path."""
    if not NAME.match(name):
        raise ExperimentError(
            f"experiment name {name!r}: use letters, digits, '-', '_' or '.' (max 64)"
        )
    path = Path(directory) / "experiment" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(experiment_yaml(overrides, comment))
    return path


def launch_args(directory: Path, name: str) -> list[str]:
    """The CLI arguments that run the saved experiment ``name`` exactly."""
    if not NAME.match(name) or not (Path(directory) / "experiment" / f"{name}.yaml").is_file():
        raise ExperimentError(
            f"no experiment {name!r} in {Path(directory) / 'experiment'}: save it first"
        )
    return ["--config-dir", str(Path(directory).resolve()), f"+experiment={name}"]
