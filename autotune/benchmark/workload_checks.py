"""Checks of a benchmark's scenarios, dataset and shared prefix, before anything deploys.

genai-bench reports these mistakes late (after loading its tokenizer, at exit 2) or
not at all (a JSON list of objects makes it spin and send nothing), so
``autotune.study.validation`` runs them on the composed config first. Each error
names the key and the fix.

    >>> from omegaconf import OmegaConf
    >>> b = OmegaConf.create({"scenarios": ["N(300,30)/(10,2)"], "prefix_len": 250,
    ...                       "prefix_ratio": 0.0, "dataset": {"path": None}})
    >>> check_workload(b)
    ['benchmark.prefix_len=250 is longer than the shortest prompt of N(300,30)/(10,2) (210 tokens: genai-bench takes mean - 3 sd); lower it or lengthen the scenario.']
"""

from __future__ import annotations

from typing import Any

from autotune.benchmark.dataset import DATASET_SCENARIO, DatasetError, load_prompts
from autotune.benchmark.scenarios import Scenario, parse_scenario

__all__ = ["check_workload"]


def check_workload(b: Any) -> list[str]:
    """Errors in ``benchmark.scenarios``, ``benchmark.dataset`` and the prefix keys."""
    dataset = b.get("dataset") or {}
    if dataset.get("path"):
        return _check_dataset(b, dataset)
    errors: list[str] = []
    scenarios: list[Scenario] = []
    for s in b.scenarios:
        if s == DATASET_SCENARIO:
            errors.append(
                "benchmark.scenarios: 'dataset' needs benchmark.dataset.path (a prompt "
                "file); use benchmark=dataset or give D/N/U scenarios."
            )
            continue
        try:
            scenarios.append(parse_scenario(s))
        except ValueError as e:
            errors.append(f"benchmark.scenarios: {e}")
    return errors + _check_prefix(b, scenarios)


def _check_prefix(b: Any, scenarios: list[Scenario]) -> list[str]:
    plen = int(b.get("prefix_len") or 0)
    ratio = float(b.get("prefix_ratio") or 0.0)
    if plen < 0:
        return ["benchmark.prefix_len must be >= 0 (0: no shared prefix)."]
    if not 0.0 <= ratio < 1.0:
        return ["benchmark.prefix_ratio must be in [0, 1) (0: no shared prefix)."]
    if plen and ratio:
        return ["benchmark.prefix_len and benchmark.prefix_ratio exclude each other: set one."]
    errors = []
    for sc in scenarios:
        if ratio and sc.kind != "D":
            errors.append(
                f"benchmark.prefix_ratio needs deterministic D(in,out) scenarios, not "
                f"{sc.text}; use benchmark.prefix_len for N/U scenarios."
            )
        low = sc.input_range[0]
        if plen > low:
            errors.append(
                f"benchmark.prefix_len={plen} is longer than the shortest prompt of {sc.text} "
                f"({low} tokens: genai-bench takes mean - 3 sd); lower it or lengthen the scenario."
            )
    return errors


def _check_dataset(b: Any, dataset: Any) -> list[str]:
    errors = []
    if list(b.scenarios) != [DATASET_SCENARIO]:
        errors.append(
            "benchmark.scenarios must be ['dataset'] with benchmark.dataset.path set "
            "(genai-bench sends the file's prompts as they are); or unset the path."
        )
    if b.get("prefix_len") or b.get("prefix_ratio"):
        errors.append(
            "benchmark.prefix_len/prefix_ratio do not apply to a dataset (genai-bench has no "
            "prefix in dataset mode): put the shared text in the prompts themselves."
        )
    max_tokens = dataset.get("max_tokens")
    if max_tokens is not None and int(max_tokens) < 1:
        errors.append(
            "benchmark.dataset.max_tokens must be >= 1, or null for the engine's default."
        )
    try:
        load_prompts(
            dataset.path,
            format=dataset.get("format") or "auto",
            prompt_column=dataset.get("prompt_column") or "prompt",
        )
    except DatasetError as e:
        errors.append(f"benchmark.dataset: {e}")
    return errors
