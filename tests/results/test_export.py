"""Best-config export: launch files from the launchers, a params.yaml that composes back."""

from __future__ import annotations

import shlex

import pytest
import yaml
from results_helpers import trial_config

from autotune.report import load_study
from autotune.report.export import (
    MASKED,
    PARAMS_FILE,
    config_diff,
    deploy_configs,
    export_record,
    launch_files,
    params_document,
    verify_params,
)

STUDY_CHOICES = {
    "model": "llama-3.1-8b-instruct",
    "runtime": "sglang",
    "deploy": "sim",
    "benchmark": "quick",
    "objective": "throughput",
}


def test_config_diff_skips_masked_secrets():
    diff, extra = config_diff(
        {"benchmark": {"api_key": MASKED, "concurrency": [8]}, "seed": 1},
        {"benchmark": {"api_key": "k", "concurrency": [8, 32]}, "seed": 0, "x": 1},
    )
    assert diff == {"benchmark": {"concurrency": [8]}, "seed": 1}
    assert extra == ["x"]


@pytest.mark.parametrize(
    "overrides, params",
    [
        (["deploy.clock=virtual", "params.mem=0.8"], {"mem-fraction-static": 0.8}),
        (
            ["deploy.clock=virtual", "params.mem=0.85", "params.chunk=4096", "benchmark=standard"],
            {"mem-fraction-static": 0.85, "chunked-prefill-size": 4096},
        ),
        (["deploy.clock=virtual", "params.mem=null"], {}),  # a baseline trial
    ],
)
def test_params_yaml_composes_back_to_the_trial(composer, tmp_path, overrides, params):
    cfg = trial_config(composer, *overrides)
    doc, notes = params_document(cfg, STUDY_CHOICES, composer)
    assert notes == []
    assert doc["params"] == params
    assert {"override search": "none"} in doc["defaults"]
    assert doc["defaults"][0] == "config" and doc["defaults"][-1] == "_self_"
    path = tmp_path / PARAMS_FILE
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert verify_params(path, cfg, composer) == []


def test_params_yaml_follows_the_trial_not_the_study_default(composer, tmp_path):
    # The study said benchmark=quick, the trial ran benchmark=standard (a swept group).
    cfg = trial_config(composer, "benchmark=standard", "model=qwen3-8b")
    doc, _ = params_document(cfg, STUDY_CHOICES, composer)
    assert {"override model": "qwen3-8b"} in doc["defaults"]
    path = tmp_path / PARAMS_FILE
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert verify_params(path, cfg, composer) == []


def test_launch_files_carry_exactly_the_flags(composer, tmp_path):
    cfg = trial_config(composer, "deploy.clock=virtual", "params.mem=0.83", "params.tp=2")
    params = {"mem-fraction-static": 0.83, "tp-size": 2}
    files, notes = launch_files(
        cfg, params, "trial-004", "study-x", deploy_configs(cfg, composer), tmp_path
    )
    assert notes == []
    assert set(files) == {"launch.sh", "docker_run.sh", "inferenceservice.yaml"}
    argv = shlex.split(files["launch.sh"].splitlines()[-1])
    # The real engine, not the simulator, and not this host's virtualenv.
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert argv[argv.index("--mem-fraction-static") + 1] == "0.83"
    assert argv[argv.index("--tp-size") + 1] == "2"
    # Containers labelled as the tuner's would be removed by the next study's cleanup.
    assert "autotune.managed" not in files["docker_run.sh"]
    assert "autotune.owner" not in files["docker_run.sh"]
    assert "--gpus 2" in files["docker_run.sh"]
    isvc = yaml.safe_load(files["inferenceservice.yaml"])
    assert isvc["kind"] == "InferenceService"
    args = isvc["spec"]["engine"]["runner"]["args"]
    assert args[args.index("--mem-fraction-static") + 1] == "0.83"
    assert isvc["spec"]["engine"]["runner"]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "autotune.io/owner" not in isvc["metadata"]["annotations"]


def test_export_record_to_sweep_dir_and_run(store, composer):
    client = store["client"]
    study = load_study(client, store["a"])
    exports = export_record(client, study, store["sweep_a"], composer, STUDY_CHOICES)
    assert len(exports) == 1
    e = exports[0]
    assert e.trial.name == "trial-003"  # mem 0.9, the highest throughput
    best = store["sweep_a"] / "best"
    for name in ("launch.sh", "docker_run.sh", "inferenceservice.yaml", PARAMS_FILE, "README.md"):
        text = (best / name).read_text()
        assert "SIMULATED" in text, name
    assert "--mem-fraction-static 0.9" in (best / "launch.sh").read_text()
    doc = yaml.safe_load((best / PARAMS_FILE).read_text())
    assert doc["params"] == {"mem-fraction-static": 0.9}
    on_run = {a.path for a in client.list_artifacts(store["a"], "best")}
    assert {"best/launch.sh", "best/params.yaml", "best/inferenceservice.yaml"} <= on_run
    assert e.notes == []


def test_params_yaml_names_the_study_config_dir(tmp_path):
    """A study run with --config-dir (a model only defined there) re-runs from params.yaml."""
    from autotune.report.export import CONF_DIR, Composer, write_params

    extra = tmp_path / "myconf"
    (extra / "model").mkdir(parents=True)
    (extra / "model" / "tiny.yaml").write_text(
        "defaults:\n  - model_schema\n  - _self_\nname: tiny\npath: org/tiny\nsim_profile: llama-3.1-8b\n"
    )
    study = Composer([f"file://{CONF_DIR}", f"file://{extra}"], extra=[f"file://{extra}"])
    cfg = trial_config(study, "model=tiny", "deploy.clock=virtual", "params.mem=0.8")
    notes = write_params(tmp_path / PARAMS_FILE, cfg, {"model": "tiny"}, study, ["header"])
    assert notes == []
    doc = yaml.safe_load((tmp_path / PARAMS_FILE).read_text())
    assert doc["hydra"]["searchpath"] == [f"file://{extra}"]
    assert {"override model": "tiny"} in doc["defaults"]
    # As a user runs it: conf/ plus params.yaml (which names the study's dir).
    assert verify_params(tmp_path / PARAMS_FILE, cfg, Composer()) == []


def test_params_yaml_without_extra_dirs_has_no_searchpath(composer, tmp_path):
    from autotune.report.export import write_params

    cfg = trial_config(composer, "deploy.clock=virtual")
    assert write_params(tmp_path / PARAMS_FILE, cfg, STUDY_CHOICES, composer, []) == []
    assert "searchpath" not in yaml.safe_load((tmp_path / PARAMS_FILE).read_text())["hydra"]
