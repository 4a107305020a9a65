"""Confirmation: how often the verdict is right on the simulator with its default noise.

Two cases of issue 13, each run with 20 seeds (``deploy.seed``: every trial and every
confirmation run of a seed is its own deployment, with its own noise):

- **a**: a space whose best configuration is truly >= 5 % better than the engine
  defaults (Llama-3.1-8B on an H100, 256 users of D(2048,512): the KV pool limits
  the batch, mem-fraction-static 0.9 and 0.93 give +7.4 %, measured 2026-12-03) -> the
  verdict should be ``better``;
- **b**: a space where every configuration is within 0.5 % of the defaults (the
  default quick workload on an H200, where the KV pool is never the limit) -> the
  verdict should be ``indistinguishable``.

Per seed, as a study does it: the grid of the space once (each a noisy trial), the
engine defaults once, then the confirmation stage (:mod:`autotune.confirm`: top 3
distinct + the defaults, 3 fresh runs each, interleaved) and its verdict. A trial is
scored exactly as ``autotune.trial`` scores a ``deploy.clock=virtual`` trial
(launcher -> virtual benchmark -> parser -> objective); MLflow is left out. The
truth (each configuration's gain at ``deploy.noise=0``) is measured by the same
code and printed with the result, so the case's premise is checked on every run.

    python benchmarks/confirmation.py --json           # one line per case
    python benchmarks/confirmation.py --seeds 5 --case a

``--json`` prints ``{"case", "seeds", "verdict_rate", ...}`` per case: the share of
seeds with the expected verdict. Results and the method: docs/results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from autotune.config import register_configs  # noqa: E402
from autotune.confirm import Candidate, RunResult, decide, run_confirmation  # noqa: E402
from autotune.confirm.plan import top_distinct  # noqa: E402
from autotune.confirm.verdict import DEFAULTS  # noqa: E402
from autotune.objective import Objective  # noqa: E402
from autotune.params import normalize  # noqa: E402
from autotune.trial.executor import run_trial  # noqa: E402
from autotune.trial.spec import TrialSpec  # noqa: E402

log = logging.getLogger("confirmation")
VIRTUAL = ["deploy.clock=virtual", "search.confirm.top_k=3", "search.confirm.repeats=3"]


@dataclass(frozen=True)
class Case:
    name: str
    expected: str
    overrides: list[str]
    space: dict[str, list[Any]]


CASES = {
    "a": Case(
        "a",
        "better",
        [
            "deploy.gpu=h100_sxm",
            'benchmark.scenarios=["D(2048,512)"]',
            "benchmark.concurrency=[256]",
            "benchmark.max_requests_per_run=512",
        ],
        {"mem-fraction-static": [0.8, 0.85, 0.9, 0.93]},
    ),
    "b": Case(
        "b",
        "indistinguishable",
        [],  # the default quick workload on the default H200
        {"mem-fraction-static": [0.7, 0.8, 0.9], "enable-mixed-chunk": [False, True]},
    ),
}


def compose_case(case: Case, *extra: str) -> DictConfig:
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf")):
            return compose("config", overrides=[*VIRTUAL, *case.overrides, *extra])
    finally:
        GlobalHydra.instance().clear()


@dataclass
class Runner:
    """Scores one deployment with the trial executor (no tracking); counts what it ran."""

    cfg: DictConfig
    workdir: Path
    runs: int = 0

    def __call__(self, params: dict[str, Any], label: str) -> RunResult:
        cfg = self.cfg
        flags = normalize(dict(params), cfg.runtime.flags, cfg.runtime.aliases)
        self.runs += 1
        spec = TrialSpec(cfg, flags, name=label, study="bench", workdir=self.workdir / label)
        result = run_trial(spec)
        if result.score is None:
            log.warning("%s failed: %s", label, result.message.splitlines()[:1])
            return RunResult(None, False)
        return RunResult(float(result.score.value), result.score.feasible)


def configurations(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*space.values())]


def truth(case: Case, workdir: Path) -> dict[str, float]:
    """Each configuration's gain over the defaults at deploy.noise=0 (percent)."""
    run = Runner(compose_case(case, "deploy.noise=0"), workdir / "truth")
    base = run({}, "defaults").value
    assert base is not None, "the engine defaults failed at noise 0"
    out = {}
    for i, params in enumerate(configurations(case.space)):
        value = run(params, f"truth-{i}").value
        out[_label(params)] = None if value is None else 100.0 * (value / base - 1.0)
    return out


def one_seed(case: Case, seed: int, workdir: Path) -> tuple[str, float | None, int, str]:
    """Search (grid, once each) + confirmation for one seed: (verdict, gain %, runs, winner)."""
    cfg = compose_case(case, f"deploy.seed={seed}", f"search.seed={seed}")
    run = Runner(cfg, workdir / f"seed-{seed}")
    maximize = Objective.from_config(cfg.objective).directions[0] == "maximize"
    found = []
    for i, params in enumerate(configurations(case.space)):
        res = run(params, f"trial-{i + 1:03d}")
        if res.value is not None:
            found.append((f"trial-{i + 1:03d}", params, res.value))
    run({}, "trial-000-baseline")  # the baseline trial of the search (a deployment too)
    best = top_distinct(
        found,
        int(cfg.search.confirm.top_k),
        value=lambda t: t[2],
        flags=lambda t: _label(t[1]),
        maximize=maximize,
    )
    candidates = [Candidate(name, params) for name, params, _ in best]
    measured = run_confirmation(
        candidates,
        Candidate(DEFAULTS),
        run,
        repeats=int(cfg.search.confirm.repeats),
        seed=seed,
    )
    verdict = decide([measured[c.key] for c in candidates], measured[DEFAULTS], maximize)
    gain = 100.0 * verdict.gain.value if verdict.gain is not None else None
    chosen = next((_label(c.params) for c in candidates if c.key == verdict.winner), "")
    return verdict.verdict, gain, run.runs, chosen


def _label(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def benchmark(case: Case, seeds: int) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"confirm-{case.name}-") as tmp:
        workdir = Path(tmp)
        true_gains = truth(case, workdir)
        results = [one_seed(case, s, workdir) for s in range(seeds)]
    verdicts = Counter(r[0] for r in results)
    gains = [r[1] for r in results if r[1] is not None]
    return {
        "case": case.name,
        "seeds": seeds,
        "expected": case.expected,
        "verdict_rate": verdicts[case.expected] / seeds,
        "verdicts": dict(verdicts),
        "true_gain_pct": true_gains,
        "confirmed_gain_pct_range": [round(min(gains), 2), round(max(gains), 2)] if gains else None,
        "winners": dict(Counter(r[3] for r in results)),
        "deployments_per_seed": results[0][2] if results else 0,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="one JSON object per case")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--case", choices=sorted(CASES), action="append")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in args.case or sorted(CASES):
        out = benchmark(CASES[name], args.seeds)
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            print(
                f"case {name}: {out['verdict_rate']:.0%} {out['expected']} over {args.seeds} "
                f"seeds {out['verdicts']}; true gains {out['true_gain_pct']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
