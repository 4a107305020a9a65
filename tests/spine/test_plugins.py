"""A deploy target from another package (tests/plugins/nice_sim: one module, one YAML,
an entry point) runs a study without any edit to autotune."""

from __future__ import annotations

import pytest
from study_runner import SMALL, artifact_text, run_study, runs

from autotune.deploy.plugins import launchers


def test_the_target_is_found_through_the_entry_point():
    # tests/conftest.py installed the package the way a user installs theirs.
    cls = launchers()["nice_sim"]
    assert cls.__module__ == "autotune_nice_sim"
    assert cls.Config().niceness == 10  # its dataclass states the defaults


@pytest.mark.slow
def test_a_study_runs_on_a_plugin_target(tmp_path):
    niceness: list[int] = []

    def engine_niceness(running) -> bool:
        engines = running.alive("autotune.sim.server")
        niceness.extend(p.nice() for p in engines)
        return bool(engines)

    study = run_study(
        tmp_path, "deploy=nice_sim", "params.mem=0.8", "search=none", *SMALL,
        on_tick=engine_niceness,
    )  # fmt: skip
    assert study.returncode == 0, study.output[-3000:]
    study.assert_nothing_left()
    _, trials = runs(tmp_path)
    assert len(trials) == 1
    trial = trials.iloc[0]
    assert trial["tags.autotune.status"] == "ok" and trial["tags.autotune.deploy"] == "nice_sim"
    assert trial["metrics.output_throughput_tok_s"] > 0
    # The package's YAML (niceness: 5) over its dataclass default (10), in the command run.
    command = artifact_text(tmp_path, trial["run_id"], "launch/command.sh")
    assert "nice -n 5 " in command and "autotune.sim.server" in command
    assert niceness and set(niceness) == {5}, niceness
