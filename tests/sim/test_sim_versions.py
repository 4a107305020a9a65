"""SGLang's start-up defaults follow the simulated version (shared/notes/sglang-versions.md)."""

from __future__ import annotations

import pytest

from autotune.sim.settings import resolve_settings
from autotune.sim.versions import UnsupportedVersion, gpu_memory_mb, sglang_defaults

# The notes' computed mem_fraction_static table (H100 / H200, TP 1, 2, 4, 8).
EXPECTED_FRACTIONS = {
    "0.4.3": ([0.88, 0.87, 0.85, 0.81], [0.88, 0.87, 0.85, 0.81]),
    "0.4.6": ([0.88, 0.87, 0.85, 0.81], [0.9074] * 4),
    "0.5.1.post1": ([0.874, 0.868, 0.856, 0.831], [0.911, 0.907, 0.900, 0.886]),
    "0.5.6.post2": ([0.835, 0.834, 0.824, 0.818], [0.907, 0.906, 0.900, 0.897]),
    "0.5.10": ([0.830, 0.828, 0.819, 0.812], [0.903, 0.902, 0.897, 0.893]),
}


@pytest.mark.parametrize("version", sorted(EXPECTED_FRACTIONS))
def test_default_mem_fraction_matches_the_notes(version):
    rules = sglang_defaults(version)
    for gpu, expected in zip(("h100_sxm", "h200_sxm"), EXPECTED_FRACTIONS[version], strict=True):
        mem = gpu_memory_mb(gpu, 0.0)
        got = [
            rules.mem_fraction_static(
                mem, tp, rules.chunked_prefill_size(mem), rules.cuda_graph_max_bs(mem, tp)
            )
            for tp in (1, 2, 4, 8)
        ]
        assert got == pytest.approx(expected, abs=5e-5), (gpu, got)


def test_other_defaults_follow_the_version():
    h100, h200 = gpu_memory_mb("h100_sxm", 0.0), gpu_memory_mb("h200_sxm", 0.0)
    old, mid, new = sglang_defaults("0.4.3"), sglang_defaults("0.5.1.post1"), sglang_defaults()
    assert (old.schedule_policy, mid.schedule_policy, new.schedule_policy) == (
        "lpm",
        "fcfs",
        "fcfs",
    )
    assert [old.cuda_graph_max_bs(h200, 1), mid.cuda_graph_max_bs(h100, 1)] == [160, 160]
    assert [mid.cuda_graph_max_bs(h200, 8), new.cuda_graph_max_bs(h100, 8)] == [256, 512]
    assert not mid.retract_to_next_step and new.retract_to_next_step
    assert new.chunked_prefill_size(h200) == mid.chunked_prefill_size(h100) == 8192


def test_resolved_settings_carry_the_version():
    old = resolve_settings({}, model="llama-3.1-8b", gpu="h100_sxm", dtype="fp8",
                           sglang_version="0.4.3")  # fmt: skip
    new = resolve_settings({}, model="llama-3.1-8b", gpu="h100_sxm", dtype="fp8")
    assert (old.mem_fraction_static, old.schedule_policy, old.cuda_graph_max_bs) == (
        0.88,
        "lpm",
        160,
    )
    assert (new.mem_fraction_static, new.schedule_policy, new.cuda_graph_max_bs) == (
        0.835,
        "fcfs",
        256,
    )
    assert old.max_total_num_tokens > new.max_total_num_tokens  # a larger static fraction
    assert old.as_server_info()["version"] == "0.4.3 (simulated)"


@pytest.mark.parametrize("version", ["0.3.6", "0.6.0", "nightly-dev", ""])
def test_unknown_versions_are_refused_not_guessed(version):
    if not version:  # blank means the default
        assert sglang_defaults(version).version == sglang_defaults().version
        return
    with pytest.raises(UnsupportedVersion):
        sglang_defaults(version)


def test_a_dense_32b_model_fits_one_h100_as_on_sglang():
    # SGLang sizes the pool from the memory free after the weights load (profile_max_num_token):
    # Qwen3-32B BF16 (61 GiB of weights) serves on one 80 GB H100 with 0.5.8's 0.835.
    s = resolve_settings({}, model="qwen3-32b", gpu="h100_sxm", dtype="bf16",
                         sglang_version="0.5.8.post1")  # fmt: skip
    assert s.mem_fraction_static == 0.835
    assert 10_000 < s.max_total_num_tokens < 30_000
