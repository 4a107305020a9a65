"""The verdict of a confirmation stage: which configuration, by how much, how sure.

Pure: from each configuration's repeated objective values (and whether each run
met the SLOs) to a :class:`Verdict` and the line a person reads.

Rule (``gain`` is the best candidate's relative gain over the engine defaults):

- ``better``: the gain's 95 % interval lies above 0;
- ``worse``: it lies below 0;
- ``indistinguishable``: it contains 0 (the defaults are the recommendation);
- ``no_baseline``: the defaults produced fewer than 2 scored runs.

The winner is the candidate with the best confirmed mean, among those that met the
SLOs in every confirmation run when any did (not the luckiest single run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from autotune.confirm.stats import Gain, Summary, pooled_cv, ratio_gain, summarize

BETTER, INDISTINGUISHABLE, WORSE, NO_BASELINE = (
    "better",
    "indistinguishable",
    "worse",
    "no_baseline",
)
DEFAULTS = "engine defaults"


@dataclass
class Measured:
    """One configuration's confirmation runs: objective values and SLO outcome per run.

    A failed run has value None (it counts as an SLO miss, not as a number).
    """

    key: str  # the trial it repeats (trial-007), or DEFAULTS
    values: list[float | None] = field(default_factory=list)
    feasible: list[bool] = field(default_factory=list)

    @property
    def scored(self) -> list[float]:
        return [v for v in self.values if v is not None and math.isfinite(v)]

    @property
    def meets_slo_always(self) -> bool:
        return bool(self.values) and all(self.feasible) and len(self.scored) == len(self.values)

    def summary(self) -> Summary | None:
        return summarize(self.scored) if self.scored else None


@dataclass
class Verdict:
    verdict: str
    winner: str | None  # key of the chosen candidate (None: nothing scored)
    gain: Gain | None  # winner over the defaults
    runner_up: str | None
    lead: Gain | None  # winner over the runner-up
    noise_cv: float
    repeats: int
    summaries: dict[str, Summary]
    slo_runs: tuple[int, int] | None  # (runs meeting the SLOs, runs) of the winner
    line: str = ""

    @property
    def keep_defaults(self) -> bool:
        return self.verdict in (INDISTINGUISHABLE, WORSE)

    def metrics(self) -> dict[str, float]:
        """``confirm.*`` metrics for the sweep run (gain metrics only with a baseline)."""
        out = {"confirm.repeats": float(self.repeats)}
        if math.isfinite(self.noise_cv):
            out["confirm.noise_cv_pct"] = 100.0 * self.noise_cv
        if self.gain is not None:
            names = ("gain_pct", "gain_ci_low_pct", "gain_ci_high_pct")
            for name, v in zip(names, self.gain.pct, strict=True):
                if math.isfinite(v):
                    out[f"confirm.{name}"] = v
        return out


def classify(gain: Gain | None) -> str:
    """better / worse / indistinguishable from the gain's interval; no_baseline without one."""
    if gain is None or math.isnan(gain.value):
        return NO_BASELINE
    if gain.low > 0:
        return BETTER
    if gain.high < 0:
        return WORSE
    return INDISTINGUISHABLE


def decide(
    candidates: Sequence[Measured], defaults: Measured, maximize: bool, has_slo: bool = False
) -> Verdict:
    """Choose the winner by confirmed mean, compare it with the defaults and the runner-up."""
    summaries = {m.key: s for m in [*candidates, defaults] if (s := m.summary()) is not None}
    scored = [m for m in candidates if m.key in summaries]
    pool = [m for m in scored if m.meets_slo_always] if has_slo else scored
    pool = pool or scored

    def rank(m: Measured) -> float:
        mean = summaries[m.key].mean
        return -mean if maximize else mean

    ordered = sorted(pool, key=rank) + sorted([m for m in scored if m not in pool], key=rank)
    repeats = max((len(m.values) for m in [*candidates, defaults]), default=0)
    noise = pooled_cv(list(summaries.values()))
    if not ordered:
        v = Verdict(NO_BASELINE, None, None, None, None, noise, repeats, summaries, None)
        v.line = "No configuration produced a score in the confirmation runs."
        return v
    win = ordered[0]
    base = summaries.get(defaults.key)
    gain = (
        ratio_gain(summaries[win.key], base, maximize)
        if base is not None and base.n >= 2 and summaries[win.key].n >= 2
        else None
    )
    second = ordered[1] if len(ordered) > 1 else None
    lead = (
        ratio_gain(summaries[win.key], summaries[second.key], maximize)
        if second is not None and summaries[win.key].n >= 2 and summaries[second.key].n >= 2
        else None
    )
    slo_runs = (
        (
            sum(1 for f, v in zip(win.feasible, win.values, strict=False) if f and v is not None),
            len(win.values),
        )
        if has_slo
        else None
    )
    v = Verdict(
        classify(gain),
        win.key,
        gain,
        second.key if second else None,
        lead,
        noise,
        repeats,
        summaries,
        slo_runs,
    )
    v.line = verdict_line(v)
    return v


def _pct(x: float) -> str:
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return f"{100.0 * x:+.1f}".replace("-", "−")


def _interval(g: Gain) -> str:
    return f"95 % CI {_pct(g.low)} … {_pct(g.high)} %"


def verdict_line(v: Verdict) -> str:
    """The sentence a person reads, e.g. ``trial-017 beats the engine defaults by +12.4 %
    (95 % CI +9.8 … +15.1 %, 3 runs each)``."""
    runs = f"{v.repeats} runs each"
    if v.verdict == NO_BASELINE or v.gain is None:
        s = v.summaries[v.winner] if v.winner else None
        mean = f" (mean {s.mean:.4g} over {s.n} runs)" if s else ""
        text = (
            f"{v.winner} has the best confirmed mean{mean}; the engine defaults produced no "
            "score to compare with, so no gain can be stated"
        )
    elif v.verdict == BETTER:
        text = (
            f"{v.winner} beats the engine defaults by {_pct(v.gain.value)} % "
            f"({_interval(v.gain)}, {runs})"
        )
    else:
        what = (
            "No configuration is measurably better than"
            if v.verdict == INDISTINGUISHABLE
            else "Every confirmed configuration is worse than"
        )
        text = (
            f"{what} the engine defaults (best {v.winner} "
            f"{_pct(v.gain.value)} %, {_interval(v.gain)}, {runs}): keep the defaults"
        )
    if v.verdict == BETTER and v.lead is not None and v.runner_up is not None:
        text += (
            f"; ahead of the runner-up {v.runner_up} by {_pct(v.lead.value)} % "
            f"({_interval(v.lead)})"
        )
    if v.slo_runs is not None:
        ok, n = v.slo_runs
        text += (
            f"; it meets the SLOs in all {n} confirmation runs"
            if ok == n
            else f"; it misses the SLOs in {n - ok} of {n} confirmation runs"
        )
    return text + "."
