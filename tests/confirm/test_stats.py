"""Statistics of the confirmation stage: known samples give known intervals."""

from __future__ import annotations

import math
import random

import pytest

from autotune.confirm.stats import fieller_ratio, pooled_cv, ratio_gain, summarize, t_quantile


def test_t_quantiles_match_printed_tables():
    # Two-sided 95 % critical values as printed in every t table.
    assert t_quantile(2) == pytest.approx(4.303, abs=5e-4)
    assert t_quantile(4) == pytest.approx(2.776, abs=5e-4)
    assert t_quantile(30) == pytest.approx(2.042, abs=5e-4)
    assert t_quantile(0) == math.inf


def test_summary_of_three_runs():
    s = summarize([10.0, 12.0, 14.0])
    assert (s.n, s.mean, s.sd) == (3, 12.0, 2.0)
    half = 4.302653 * 2.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert s.ci_low == pytest.approx(12.0 - half, abs=1e-5)
    assert s.ci_high == pytest.approx(12.0 + half, abs=1e-5)
    assert s.cv == pytest.approx(2.0 / 12.0)


def test_one_run_has_no_interval_and_no_runs_is_an_error():
    s = summarize([5.0])
    assert math.isnan(s.sd) and s.ci_low == -math.inf and s.ci_high == math.inf
    with pytest.raises(ValueError):
        summarize([])


def test_fieller_endpoints_solve_its_equation():
    a, b = summarize([110.0, 111.0, 109.0]), summarize([100.0, 101.0, 99.0])
    ratio, low, high, df = fieller_ratio(a, b)
    assert ratio == pytest.approx(1.1)
    # Welch-Satterthwaite df of a - R b: Va = Vb = 1/3, R = 1.1.
    va = vb = 1 / 3
    assert df == pytest.approx((va + 1.21 * vb) ** 2 / (va**2 / 2 + 1.21**2 * vb**2 / 2))
    t = t_quantile(df)
    for r in (low, high):
        assert (a.mean - r * b.mean) ** 2 == pytest.approx(t**2 * (va + r**2 * vb))
    # Known numbers for this sample; the delta method's 1.1 +- t * 0.00858 gives
    # 1.0761 ... 1.1239, as it should when the baseline's CV is this small.
    assert (round(low, 4), round(high, 4)) == (1.0764, 1.1242)
    assert low < ratio < high


def test_gain_direction_and_verdict_sign():
    fast, slow = summarize([110.0, 111.0, 109.0]), summarize([100.0, 101.0, 99.0])
    up = ratio_gain(fast, slow, maximize=True)
    assert up.value == pytest.approx(0.10) and up.low > 0 and up.high > up.value
    # Latency: lower is better; 100 ms vs 110 ms is a gain of 1 - 100/110.
    down = ratio_gain(slow, fast, maximize=False)
    assert down.value == pytest.approx(1 - 100 / 110) and down.low > 0


def test_noise_free_runs_give_a_point_interval():
    g = ratio_gain(summarize([105.0] * 3), summarize([100.0] * 3), maximize=True)
    assert g.value == g.low == g.high == pytest.approx(0.05)


def test_baseline_indistinguishable_from_zero_is_unbounded():
    g = ratio_gain(summarize([10.0, 11.0, 12.0]), summarize([-1.0, 0.5, 1.0]), maximize=True)
    assert g.low == -math.inf and g.high == math.inf


def test_fieller_interval_covers_the_true_ratio_95_percent_of_the_time():
    rng = random.Random(7)
    trials, covered = 2000, 0
    for _ in range(trials):
        a = summarize([rng.gauss(105.0, 3.0) for _ in range(3)])
        b = summarize([rng.gauss(100.0, 3.0) for _ in range(3)])
        _, low, high, _ = fieller_ratio(a, b)
        covered += low <= 1.05 <= high
    assert 0.93 <= covered / trials <= 0.97


def test_pooled_cv_weights_by_degrees_of_freedom():
    groups = [summarize([9.0, 10.0, 11.0]), summarize([18.0, 20.0, 22.0, 20.0, 20.0])]
    cv1, cv2 = groups[0].cv, groups[1].cv
    assert pooled_cv(groups) == pytest.approx(math.sqrt((2 * cv1**2 + 4 * cv2**2) / 6))
    assert math.isnan(pooled_cv([summarize([1.0])]))
