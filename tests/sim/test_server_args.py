"""The simulator's SGLang flag table (autotune/sim/sglang_flags.yaml) against the runtime config."""

from __future__ import annotations

from pathlib import Path

import yaml

from autotune.sim.server_args import build_parser, flag_table, known_flags

RUNTIME = Path(__file__).resolve().parents[2] / "conf" / "runtime" / "sglang.yaml"


def test_every_runtime_flag_is_known_to_the_simulator():
    runtime = yaml.safe_load(RUNTIME.read_text())
    declared = set(runtime["flags"]) | set(runtime.get("aliases", {}).values())
    unknown = sorted(declared - known_flags())
    assert not unknown, f"conf/runtime/sglang.yaml flags the simulator rejects: {unknown}"


def test_runtime_choices_are_accepted_by_the_simulator():
    runtime = yaml.safe_load(RUNTIME.read_text())
    table = {name.lstrip("-"): e for e in flag_table() for name in e["names"]}
    for flag, spec in runtime["flags"].items():
        sim_choices = table[flag].get("choices")
        if spec.get("choices") and sim_choices is not None:
            extra = set(spec["choices"]) - set(sim_choices)
            assert not extra, f"{flag}: choices {sorted(extra)} rejected by the simulator"


def test_flag_table_builds_sglangs_parser():
    entries = flag_table()
    assert len(entries) == 171 and len(known_flags()) > len(entries)  # aliases count too
    ns = build_parser().parse_args(["--model", "m", "--ep", "4", "--cuda-graph-bs", "1", "8"])
    assert (ns.model_path, ns.ep_size, ns.cuda_graph_bs) == ("m", 4, [1, 8])
    assert ns.schedule_policy == "fcfs" and ns.watchdog_timeout == 300.0
    assert ns.disaggregation_mode == "null" and ns.model_loader_extra_config == "{}"
    assert ns.enable_multimodal is None and ns.torchao_config == ""
