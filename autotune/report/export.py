"""Best-configuration export: what to deploy, and how to reproduce it.

At the end of every study the recommended trial (the best one; for a multi-objective
study the one the pick rule chooses, plus every Pareto-optimal trial) is written to
``<sweep dir>/best/`` and attached to the sweep run under ``best/``:

- ``launch.sh``: the engine command with exactly the trial's flags (deploy=local's
  renderer, the real engine even when the study ran on the simulator);
- ``docker_run.sh``: the same engine as a ``docker run`` line (deploy=docker's renderer);
- ``inferenceservice.yaml``: an OME InferenceService (deploy=ome's template);
- ``params.yaml``: a Hydra primary config that re-runs the trial as a one-trial study:
  ``python -m autotune --config-dir best --config-name params``;
- ``README.md``: the trial's flags and numbers, and which file is for what.

Every file says so in its first lines when the numbers come from the simulated engine.

    exports = export_study(cfg, info, client, info.parent_run_id, sweep_dir)
    exports[0].directory / "launch.sh"

The launch files come from the launchers' own ``render`` (``create_launcher(deploy
config).render(spec)``), never from templates of our own.
"""

from __future__ import annotations

import copy
import logging
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from autotune.config import config_dir
from autotune.deploy import LaunchSpec, TrialFailure, create_launcher
from autotune.deploy.plugins import launchers
from autotune.params import normalize
from autotune.report.records import MASKED, StudyRecord, TrialRecord, load_study, trial_config
from autotune.report.summary import chosen_trial, label, study_front, tied_with
from autotune.secrets import MASK

log = logging.getLogger(__name__)

CONF_DIR = config_dir()
EXPORT_DIR = "best"
PARAMS_FILE = "params.yaml"
# Config groups a trial's params.yaml pins (search is always `none`: one trial).
GROUPS = ("model", "runtime", "deploy", "benchmark", "objective")
# Top-level keys that do not change what a trial measures.
_NOT_REPRODUCED = ("hydra", "study", "search", "dry_run", "export")
# Labels the docker target uses to find (and remove) containers a dead tuner left
# behind: an exported command must not carry them, or the next study would remove
# the deployment.
_TUNER_LABELS = ("autotune.managed=", "autotune.owner=")
_TUNER_ANNOTATIONS = ("autotune.io/owner:",)


@dataclass
class Export:
    """One exported trial: where its files are, locally and on the sweep run."""

    trial: TrialRecord
    directory: Path
    artifact_path: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)  # trials with the same objective

    @property
    def reproduce(self) -> str:
        return (
            f"python -m autotune --config-dir {shlex.quote(str(self.directory))} "
            f"--config-name {Path(PARAMS_FILE).stem}"
        )


# -- composing configs like `python -m autotune` does ------------------------------------
class Composer:
    """Compose autotune configs from a search path, off Hydra's global state.

    Works inside a running sweep (where Hydra's global instance is busy) and from
    plain scripts alike.

        Composer().compose(["deploy=local"])["deploy"]["name"]   # 'local'
    """

    def __init__(self, sources: list[str] | None = None, extra: list[str] | None = None) -> None:
        from autotune.config import register_configs

        register_configs()
        self.sources = sources or [f"file://{CONF_DIR}"]
        # Config dirs the study added (--config-dir, hydra.searchpath) beyond conf/.
        self.extra = list(extra or [])
        # Exports of several (Pareto) trials compose the same deploy configs again.
        self._cache: dict[tuple[str, ...], dict[str, Any]] = {}

    @classmethod
    def from_hydra(cls, hydra_cfg: Any) -> Composer:
        """The search path a study used (``hydra.runtime.config_sources``)."""
        found = [
            (s.get("provider"), f"{s['schema']}://{s['path']}")
            for s in (OmegaConf.select(hydra_cfg, "runtime.config_sources") or [])
            if s.get("provider") not in ("hydra", "schema")
        ]
        extra = [src for provider, src in found if provider != "main"]
        return cls([src for _, src in found] or None, extra)

    def standalone(self) -> Composer:
        """What ``python -m autotune --config-dir <dir>`` sees: conf/ alone."""
        return Composer()

    def compose(
        self, overrides: list[str], config_name: str = "config", extra_dir: Path | None = None
    ) -> dict[str, Any]:
        """The composed config without its ``hydra`` node, resolved (a fresh copy)."""
        key = (config_name, *overrides)
        if extra_dir is None and key in self._cache:
            return copy.deepcopy(self._cache[key])
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.utils import create_config_search_path_from_sources
        from hydra.types import RunMode

        search_path = create_config_search_path_from_sources(self.sources)
        if extra_dir is not None:
            search_path.prepend("autotune-export", f"file://{Path(extra_dir).resolve()}")
        loader = ConfigLoaderImpl(config_search_path=search_path)
        cfg = loader.load_configuration(
            config_name, overrides=list(overrides), run_mode=RunMode.MULTIRUN, from_shell=False
        )
        with open_dict(cfg):
            del cfg["hydra"]
        out = OmegaConf.to_container(cfg, resolve=True)
        if extra_dir is None:
            self._cache[key] = copy.deepcopy(out)
        return out


# -- params.yaml -----------------------------------------------------------------------------
def config_diff(
    trial: Mapping[str, Any], base: Mapping[str, Any], path: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """Values of ``trial`` that differ from ``base``, and keys only ``base`` has.

    Masked secrets (``***``) are left to the config they came from.

    >>> config_diff({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 1, "c": 3, "e": 0}, "d": [1]})
    ({'a': {'c': 2}}, ['a.e'])
    """
    out: dict[str, Any] = {}
    extra = [f"{path}{k}" for k in base if k not in trial]
    for k, v in trial.items():
        if isinstance(v, str) and (MASK in v or MASKED in v):
            continue
        if k not in base:
            out[k] = v
        elif isinstance(v, Mapping) and isinstance(base[k], Mapping):
            sub, sub_extra = config_diff(v, base[k], f"{path}{k}.")
            if sub:
                out[k] = sub
            extra += sub_extra
        elif v != base[k]:
            out[k] = v
    return out, extra


def _comparable(cfg: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in cfg.items() if k not in _NOT_REPRODUCED}
    out["tracking"] = {k: v for k, v in dict(cfg.get("tracking") or {}).items() if k != "uri"}
    return out


def _native_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    runtime = cfg["runtime"]
    return normalize(dict(cfg.get("params") or {}), runtime["flags"], runtime["aliases"])


def _group_choices(
    trial_cfg: Mapping[str, Any], study_choices: Mapping[str, Any]
) -> dict[str, str]:
    """Group options for the trial: the study's, with model/runtime/deploy by their names."""
    choices = {g: str(study_choices[g]) for g in GROUPS if study_choices.get(g)}
    for g in ("model", "runtime", "deploy"):
        name = (trial_cfg.get(g) or {}).get("name")
        if name:
            choices[g] = str(name)
    return choices


def params_document(
    trial_cfg: Mapping[str, Any], study_choices: Mapping[str, Any], composer: Composer
) -> tuple[dict[str, Any], list[str]]:
    """The params.yaml content (a Hydra primary config) and notes on what it cannot pin."""
    notes: list[str] = []
    candidates = [_group_choices(trial_cfg, study_choices)]
    candidates.append({g: str(study_choices[g]) for g in GROUPS if study_choices.get(g)})
    candidates.append({})
    for choices in candidates:
        overrides = [f"{g}={c}" for g, c in choices.items()] + ["search=none"]
        try:
            base = composer.compose(overrides)
            break
        except Exception as e:  # an option the search path lacks: try the next guess
            log.debug("composing %s failed: %s", overrides, e)
    else:
        raise RuntimeError("cannot compose the study's config to export params.yaml")
    trial = _comparable(trial_cfg)
    values, extra = config_diff(trial, _comparable(base))
    if extra:
        notes.append(f"keys this trial did not have cannot be removed: {', '.join(extra)}")
    raw = {k: v for k, v in dict(trial_cfg.get("params") or {}).items() if v is not None}
    if base.get("params"):
        values["params"] = raw  # the configs' own params: extend them as the trial did
    else:
        values["params"] = _native_params(trial_cfg)
    doc: dict[str, Any] = {
        "defaults": [
            "config",
            *({f"override {g}": c} for g, c in choices.items()),
            {"override search": "none"},
            "_self_",
        ],
        # The primary config must say it runs a sweep (config.yaml does, one level down).
        "hydra": {"mode": "MULTIRUN"},
        "params": values.pop("params"),
        **values,
    }
    return doc, notes


def verify_params(path: Path, trial_cfg: Mapping[str, Any], composer: Composer) -> list[str]:
    """Compose ``path`` as `python -m autotune` would; list what differs from the trial."""
    composed = composer.compose([], config_name=path.stem, extra_dir=path.parent)
    problems = []
    if _native_params(composed) != _native_params(trial_cfg):
        problems.append(f"params {_native_params(composed)} != {_native_params(trial_cfg)}")
    a, b = _comparable(trial_cfg), _comparable(composed)
    a.pop("params", None)
    b.pop("params", None)
    diff, _ = config_diff(a, b)
    problems += [f"{k} differs" for k in _flatten(diff)]
    return problems


def write_params(
    path: Path,
    trial_cfg: Mapping[str, Any],
    study_choices: Mapping[str, Any],
    composer: Composer,
    header: list[str],
) -> list[str]:
    """Write params.yaml and check it composes back to the trial; return what does not.

    It is checked as a user runs it (conf/ plus its own directory); when it needs
    config dirs the study added (``--config-dir``), it names them in
    ``hydra.searchpath``.
    """
    doc, notes = params_document(trial_cfg, study_choices, composer)

    def write_and_check() -> list[str]:
        path.write_text(_with_header(path.name, yaml.safe_dump(doc, sort_keys=False), header))
        try:
            return verify_params(path, trial_cfg, composer.standalone())
        except Exception as e:
            return [f"does not compose: {type(e).__name__}: {str(e).splitlines()[0][:200]}"]

    problems = write_and_check()
    if problems and composer.extra:
        doc["hydra"]["searchpath"] = list(composer.extra)
        problems = write_and_check()
    return notes + [f"params.yaml: {p}" for p in problems]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


# -- launch files ----------------------------------------------------------------------------
def deploy_configs(trial_cfg: Mapping[str, Any], composer: Composer) -> dict[str, Any]:
    """Config of every deploy target that exports files (``Launcher.export_as``): the
    study's own for its target, the target's conf/ defaults otherwise."""
    own = trial_cfg["deploy"]
    out = {}
    for target, cls in launchers().items():
        if not cls.export_as:
            continue
        if own.get("name") == target:
            out[target] = dict(own)
            continue
        try:
            composed = composer.compose([f"deploy={target}", "search=none"])["deploy"]
        except Exception as e:
            log.warning("no deploy=%s config to render the best trial with: %s", target, e)
            continue
        out[target] = cls.export_config(dict(composed), trial_cfg)
    return out


def _strip_tuner_marks(name: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    if name.endswith(".sh"):
        lines = [
            ln
            for ln in lines
            if not any(f"--label {m}" in ln.replace("'", "") for m in _TUNER_LABELS)
        ]
    elif name.endswith((".yaml", ".yml")):
        lines = [ln for ln in lines if not ln.strip().startswith(_TUNER_ANNOTATIONS)]
    return "".join(lines)


def _with_header(name: str, text: str, header: list[str]) -> str:
    """Comment lines after a shebang or at the top (files with no comments: unchanged)."""
    if name.endswith(".json"):
        return text
    comment = "".join(f"# {h}\n" if h else "#\n" for h in header)
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{comment}{rest}"
    return comment + text


def launch_files(
    trial_cfg: Mapping[str, Any],
    params: dict[str, Any],
    trial_name: str,
    study_name: str,
    deploys: Mapping[str, Any],
    workdir: Path,
) -> tuple[dict[str, str], list[str]]:
    """``launch.sh``, ``docker_run.sh``, ``inferenceservice.yaml`` from the launchers."""
    cfg = OmegaConf.create(dict(trial_cfg))
    spec = LaunchSpec.for_trial(cfg, params, study=study_name, trial=trial_name, workdir=workdir)
    files, notes = {}, []
    for target, cls in launchers().items():
        if not cls.export_as:
            continue
        if target not in deploys:
            notes.append(f"no {target} export: deploy={target} has no config")
            continue
        try:
            rendered = create_launcher(OmegaConf.create(dict(deploys[target]))).render(spec)
        except (TrialFailure, ValueError, TypeError) as e:
            notes.append(f"no {target} export: {e}")
            continue
        for src, dst in cls.export_as.items():
            if src in rendered:
                files[dst] = _strip_tuner_marks(dst, rendered[src])
    return files, notes


# -- the export ------------------------------------------------------------------------------
def _header(study: StudyRecord, trial: TrialRecord, what: str, extra: list[str]) -> list[str]:
    values = ", ".join(
        f"{lb} {v:.4g}" for lb, v in zip(study.objective_labels(), trial.values or [], strict=False)
    )
    lines = [
        f"autotune: {what}",
        f"{trial.name} of study {study.name} (MLflow run {trial.run_id}).",
    ]
    lines.append(f"Flags: {trial.flags_label}. Objective: {values or 'n/a'}.")
    if study.simulated:
        lines.append(
            "SIMULATED: these numbers come from the simulated SGLang engine "
            f"({study.describe_target()}), not from hardware; confirm on a real engine."
        )
    return lines + extra


def _readme(study: StudyRecord, trial: TrialRecord, export: Export, tied: list[str]) -> str:
    sim = (
        "\n> **SIMULATED**: measured on the simulated SGLang engine "
        f"({study.describe_target()}), not on hardware. Confirm on a real engine.\n"
        if study.simulated
        else ""
    )
    metrics = "\n".join(
        f"| {label(m)} | {trial.metrics[m]:.4g} |"
        for m in (
            "output_throughput_tok_s",
            "ttft_p99_ms",
            "tpot_mean_ms",
            "e2e_p99_ms",
            "error_rate",
        )
        if m in trial.metrics
    )
    ties = (
        f"\n{len(tied)} other trial(s) tie on the objective: {', '.join(tied)}.\n" if tied else ""
    )
    files = {
        "launch.sh": "the engine command with exactly these flags (a GPU host)",
        "docker_run.sh": "the same engine as a container (`docker run`)",
        "inferenceservice.yaml": "an OME InferenceService (`kubectl apply -f`)",
        PARAMS_FILE: "re-runs this trial with autotune (a one-trial study)",
    }
    listing = "\n".join(f"- `{f}`: {files[f]}" for f in export.files if f in files)
    notes = "".join(f"\n- {n}" for n in export.notes)
    verdict = study.tags.get("autotune.verdict_line")
    confirmed = f"\nConfirmed: {verdict}\n" if verdict else ""
    return (
        f"# Best configuration: {trial.name} of study {study.name}\n{sim}\n"
        f"Flags: `{trial.flags_label}` (MLflow run `{trial.run_id}`).\n{confirmed}{ties}\n"
        f"| metric | value |\n|---|---|\n{metrics}\n\n{listing}\n\n"
        f"Reproduce:\n\n    {export.reproduce}\n" + (f"\nNotes:{notes}\n" if notes else "")
    )


def export_trial(
    client: Any,
    study: StudyRecord,
    trial: TrialRecord,
    directory: Path,
    artifact_path: str,
    composer: Composer,
    study_choices: Mapping[str, Any],
) -> Export:
    """Write one trial's export into ``directory`` and attach it under ``artifact_path``."""
    directory.mkdir(parents=True, exist_ok=True)
    trial_cfg = trial_config(client, trial.run_id)
    params = _native_params(trial_cfg)
    export = Export(trial=trial, directory=directory, artifact_path=artifact_path)
    tied = [t.name for t in tied_with(study, trial)] if artifact_path == EXPORT_DIR else []
    export.tied = tied
    tie_note = (
        [f"{len(tied)} other trial(s) tie on the objective ({', '.join(tied)}); see the report."]
        if tied
        else []
    )
    files, notes = launch_files(
        trial_cfg, params, trial.name, study.name, deploy_configs(trial_cfg, composer), directory
    )
    export.notes += notes
    what = {
        "launch.sh": "engine launch command of the best configuration",
        "docker_run.sh": "the best configuration as a container",
        "inferenceservice.yaml": "the best configuration as an OME InferenceService",
    }
    for name, text in files.items():
        (directory / name).write_text(
            _with_header(name, text, _header(study, trial, what[name], tie_note))
        )
        export.files.append(name)
    notes = write_params(
        directory / PARAMS_FILE,
        trial_cfg,
        study_choices,
        composer,
        _header(study, trial, "Hydra config that re-runs this trial", tie_note)
        + ["", "Run it (one trial, recorded as a new study; add overrides as usual):"]
        + [f"  {export.reproduce}"],
    )
    export.files.append(PARAMS_FILE)
    for n in notes:
        log.warning("export of %s: %s", trial.name, n)
    export.notes += notes
    (directory / "README.md").write_text(_readme(study, trial, export, tied))
    export.files.append("README.md")
    for name in export.files:
        client.log_artifact(study.run_id, str(directory / name), artifact_path)
    return export


def export_record(
    client: Any,
    study: StudyRecord,
    out_dir: Path,
    composer: Composer | None = None,
    study_choices: Mapping[str, Any] | None = None,
    rule: str | None = None,
) -> list[Export]:
    """Export the chosen trial to ``out_dir/best`` (and each Pareto trial to ``best/pareto/``)."""
    composer = composer or Composer()
    chosen = chosen_trial(study, rule)
    if chosen is None:
        log.warning("study %s has no successful trial: nothing to export", study.name)
        return []
    base = out_dir / EXPORT_DIR
    if base.is_dir():  # a re-export: no stale Pareto folders from an earlier pick
        shutil.rmtree(base)
    exports = [export_trial(client, study, chosen, base, EXPORT_DIR, composer, study_choices or {})]
    if study.multi_objective:
        for t in study_front(study):
            if t.run_id == chosen.run_id:
                continue  # already in best/
            exports.append(
                export_trial(
                    client,
                    study,
                    t,
                    base / "pareto" / t.name,
                    f"{EXPORT_DIR}/pareto/{t.name}",
                    composer,
                    study_choices or {},
                )
            )
    client.set_tag(study.run_id, "autotune.export", f"{EXPORT_DIR}/ ({chosen.name})")
    return exports


def export_study(
    cfg: DictConfig,
    study: Any,
    client: Any,
    parent_run_id: str,
    sweep_dir: Path | None,
    record: StudyRecord | None = None,
) -> list[Export]:
    """Export a finished study's best configuration (called when the sweep ends).

    ``cfg`` is the sweep's config (with its ``hydra`` node: the config search path and
    group choices the trials were composed with); ``study`` the
    :class:`~autotune.study.StudyInfo`. The pick rule of multi-objective studies is
    ``export.pick`` (``max:<metric>`` / ``min:<metric>``) when set. ``record``: the
    study as already loaded from MLflow (else it is loaded here).
    """
    record = record or load_study(client, parent_run_id)
    hydra_cfg = OmegaConf.select(cfg, "hydra")
    composer = Composer.from_hydra(hydra_cfg) if hydra_cfg is not None else Composer()
    choices = OmegaConf.to_container(OmegaConf.select(cfg, "hydra.runtime.choices") or {})
    rule = OmegaConf.select(cfg, "export.pick", default=None)
    out = Path(sweep_dir) if sweep_dir is not None else Path(tempfile.mkdtemp(prefix="autotune-"))
    return export_record(client, record, out, composer, choices, rule)


def composer_for_sweep(sweep_dir: str | Path | None) -> tuple[Composer, dict[str, Any]]:
    """Search path and group choices of a sweep, read from its directory when it is here.

    ``multirun.yaml`` (grid sweeps) or a job's ``.hydra/hydra.yaml`` (every sweep).
    """
    if sweep_dir and Path(sweep_dir).is_dir():
        root = Path(sweep_dir)
        for path in [root / "multirun.yaml", *sorted(root.glob("*/.hydra/hydra.yaml"))]:
            if not path.is_file():
                continue
            cfg = OmegaConf.load(path)
            hydra_cfg = cfg.hydra if "hydra" in cfg else None
            if hydra_cfg is None:
                continue
            choices = OmegaConf.to_container(OmegaConf.select(hydra_cfg, "runtime.choices") or {})
            return Composer.from_hydra(hydra_cfg), choices
    return Composer(), {}


def describe(exports: list[Export]) -> str:
    """One entry per export for the terminal."""
    lines = []
    for e in exports:
        extra = "" if e.artifact_path == EXPORT_DIR else " (Pareto-optimal)"
        if e.tied:
            extra += (
                f" (ties on the objective with {', '.join(e.tied)}: lower p99 TTFT, "
                "then the most recent trial, wins)"
            )
        lines.append(
            f"{e.trial.name}{extra}: {e.directory}  [{', '.join(e.files)}]\n"
            f"  reproduce: {e.reproduce}"
        )
    return "\n".join(lines)
