"""Statistics of repeated measurements: means with intervals, gains as ratios, noise.

Pure functions on lists of floats (no MLflow, no engine), so the confirmation
stage's numbers can be checked against known samples.

- :func:`summarize`: mean, sample standard deviation and the 95 % Student-t interval
  of the mean.
- :func:`ratio_gain`: the relative gain of a candidate over a baseline with
  Fieller's interval for a ratio of two independent means, with Welch-Satterthwaite
  degrees of freedom. Fieller rather than the delta method: with 3 runs each the
  t quantile is 4.3, and the delta method's symmetric interval then misstates the
  ratio's (skewed) uncertainty; Fieller's is exact for normal means, and it says
  so honestly (unbounded) when the baseline's mean is not distinguishable from 0.
- :func:`pooled_cv`: the run-to-run coefficient of variation pooled over
  configurations (each weighted by its degrees of freedom).

    >>> s = summarize([10.0, 12.0, 14.0])
    >>> round(s.mean, 3), round(s.sd, 3), round(s.ci_low, 3), round(s.ci_high, 3)
    (12.0, 2.0, 7.032, 16.968)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _st

CONFIDENCE = 0.95


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value (inf when there are no degrees of freedom)."""
    if not df > 0:
        return math.inf
    return float(_st.t.ppf(0.5 + confidence / 2.0, df))


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` runs, their sample standard deviation and the mean's interval."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float

    @property
    def var_of_mean(self) -> float:
        return self.sd**2 / self.n if self.n else math.inf

    @property
    def cv(self) -> float:
        """Coefficient of variation (sd / |mean|); nan without a spread or a mean."""
        if self.n < 2 or self.mean == 0:
            return math.nan
        return self.sd / abs(self.mean)


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, sd (n-1) and the Student-t interval of the mean of ``values``.

    One value has no spread: its sd is nan and its interval unbounded.
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summarize() needs at least one value")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, -math.inf, math.inf)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, confidence) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class Gain:
    """Relative gain of a candidate over a baseline, with its interval (fractions).

    ``value`` > 0 means the candidate is better in the objective's direction:
    ``mean_c / mean_b - 1`` when higher is better, ``1 - mean_c / mean_b`` when lower
    is. ``low`` / ``high`` may be infinite (Fieller's interval is unbounded when the
    baseline's mean is not clearly away from 0).
    """

    value: float
    low: float
    high: float
    df: float

    @property
    def pct(self) -> tuple[float, float, float]:
        return 100.0 * self.value, 100.0 * self.low, 100.0 * self.high


def fieller_ratio(
    a: Summary, b: Summary, confidence: float = CONFIDENCE
) -> tuple[float, float, float, float]:
    """Ratio ``a.mean / b.mean`` with Fieller's interval; returns (ratio, low, high, df).

    The interval is the set of R for which ``(a - R b)^2 <= t^2 (Va + R^2 Vb)``, with
    Va, Vb the variances of the two means and t at Welch-Satterthwaite's degrees of
    freedom of ``a - R b``.
    """
    if b.mean == 0:
        return math.nan, -math.inf, math.inf, 0.0
    ratio = a.mean / b.mean
    va = a.var_of_mean if a.n > 1 else math.inf
    vb = b.var_of_mean if b.n > 1 else math.inf
    if math.isinf(va) or math.isinf(vb):
        return ratio, -math.inf, math.inf, 0.0
    df = _welch_df(va, a.n, ratio**2 * vb, b.n)
    t2 = t_quantile(df, confidence) ** 2 if df > 0 else 0.0
    if va == 0 and vb == 0:
        return ratio, ratio, ratio, math.inf
    qa = b.mean**2 - t2 * vb
    if qa <= 0:  # the baseline's mean is not distinguishable from 0: unbounded
        return ratio, -math.inf, math.inf, df
    qb = a.mean * b.mean
    disc = qb**2 - qa * (a.mean**2 - t2 * va)
    root = math.sqrt(max(disc, 0.0))
    return ratio, (qb - root) / qa, (qb + root) / qa, df


def _welch_df(v1: float, n1: int, v2: float, n2: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a difference with variances v1, v2."""
    den = (v1**2 / (n1 - 1) if v1 else 0.0) + (v2**2 / (n2 - 1) if v2 else 0.0)
    if den == 0:
        return math.inf
    return (v1 + v2) ** 2 / den


def ratio_gain(
    candidate: Summary, baseline: Summary, maximize: bool, confidence: float = CONFIDENCE
) -> Gain:
    """The candidate's relative gain over the baseline with its Fieller interval.

    >>> g = ratio_gain(summarize([110.0, 111.0, 109.0]), summarize([100.0, 101.0, 99.0]), True)
    >>> round(100 * g.value, 2), g.low > 0
    (10.0, True)
    """
    ratio, low, high, df = fieller_ratio(candidate, baseline, confidence)
    if maximize:
        return Gain(ratio - 1.0, low - 1.0, high - 1.0, df)
    return Gain(1.0 - ratio, 1.0 - high, 1.0 - low, df)


def pooled_cv(groups: Sequence[Summary]) -> float:
    """Run-to-run CV pooled over configurations: sqrt(sum (n-1) cv^2 / sum (n-1)).

    >>> round(pooled_cv([summarize([9.0, 10.0, 11.0]), summarize([18.0, 20.0, 22.0])]), 3)
    0.1
    """
    num = den = 0.0
    for g in groups:
        if g.n >= 2 and math.isfinite(g.cv):
            num += (g.n - 1) * g.cv**2
            den += g.n - 1
    return math.sqrt(num / den) if den else math.nan
