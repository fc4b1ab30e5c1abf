"""mean_std and paired_difference, checked against numbers worked out by hand."""

import math

import numpy as np
import pytest

from xssr.metrics.stats import PairedDifference, mean_std, paired_difference


def test_mean_std_by_hand():
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; sample variance 5/3
    mean, std, n = mean_std([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4)
    assert std == pytest.approx(math.sqrt(5 / 3), rel=1e-12)


def test_mean_std_single_value_has_no_spread():
    mean, std, n = mean_std(np.array([0.7]))
    assert mean == 0.7 and n == 1 and math.isnan(std)


def test_paired_two_seeds_by_hand():
    # Differences 1 and 3: mean 2, sample std sqrt(2), n 2. With 1 degree of freedom the
    # t distribution is Cauchy: t_{0.975,1} = tan(0.475 pi) = 12.7062..., so the half
    # width is 12.7062 * sqrt(2) / sqrt(2); t = 2 / (sqrt(2)/sqrt(2)) = 2 and the
    # two-sided p-value is 1 - (2/pi) * atan(2).
    result = paired_difference({0: 5.0, 1: 7.0}, {0: 4.0, 1: 4.0})
    assert isinstance(result, PairedDifference)
    half = math.tan(0.475 * math.pi)
    assert result.mean == 2.0 and result.n == 2 and result.seeds == (0, 1)
    assert result.std == pytest.approx(math.sqrt(2), rel=1e-12)
    assert result.ci_low == pytest.approx(2 - half, rel=1e-9)
    assert result.ci_high == pytest.approx(2 + half, rel=1e-9)
    assert result.p_value == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-9)


def test_paired_uses_only_common_seeds_by_hand():
    # Seeds 0, 1, 2 are shared (3 only in a, 4 only in b): differences 0.1, -0.05, 0.3.
    # mean 0.35/3; squared deviations sum to 0.0616667, variance 0.0308333.
    # For 2 degrees of freedom t_{0.975,2} = 0.95 * sqrt(2 / (4 * 0.975 * 0.025)) and the
    # two-sided p-value is 1 - t / sqrt(t^2 + 2).
    a = {2: 0.90, 0: 0.80, 1: 0.70, 3: 0.50}
    b = {0: 0.70, 1: 0.75, 2: 0.60, 4: 0.10}
    result = paired_difference(a, b)
    mean, var = 0.35 / 3, 0.185 / 6
    se = math.sqrt(var / 3)
    t_crit = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    t_stat = mean / se
    assert result.seeds == (0, 1, 2) and result.n == 3
    assert result.mean == pytest.approx(mean, rel=1e-12)
    assert result.std == pytest.approx(math.sqrt(var), rel=1e-12)
    assert result.ci_low == pytest.approx(mean - t_crit * se, rel=1e-9)
    assert result.ci_high == pytest.approx(mean + t_crit * se, rel=1e-9)
    assert result.p_value == pytest.approx(1 - t_stat / math.sqrt(t_stat**2 + 2), rel=1e-9)


def test_paired_matches_scipy_ttest_rel():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=7)
    result = paired_difference(a, b)
    assert result.p_value == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-10)
    assert result.seeds == tuple(range(7))


def test_paired_single_seed_has_nan_interval():
    result = paired_difference({3: 0.9}, {3: 0.8, 4: 0.1})
    assert result.n == 1 and result.mean == pytest.approx(0.1)
    assert all(math.isnan(v) for v in (result.std, result.ci_low, result.ci_high, result.p_value))


def test_paired_constant_differences():
    same = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.mean == 0 and same.std == 0 and math.isnan(same.p_value)
    assert (same.ci_low, same.ci_high) == (0.0, 0.0)
    shifted = paired_difference([1.5, 2.5], [0.5, 1.5])
    assert shifted.p_value == 0.0 and shifted.ci_low == shifted.ci_high == 1.0


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: mean_std([]), ValueError, r"'values'.*at least one value. Got 0"),
        (lambda: mean_std([1.0, float("nan")]), ValueError, r"'values'.*finite.*Got 1 NaN"),
        (lambda: mean_std([[1.0, 2.0]]), ValueError, r"'values'.*1-D.*\(1, 2\)"),
        (lambda: mean_std(["x"]), TypeError, r"'values'.*numbers. Got list"),
        (lambda: paired_difference({0: 1.0}, {1: 1.0}), ValueError,
         r"'a' and 'b'.*share at least one seed. Got seeds \[0\] and \[1\]"),
        (lambda: paired_difference({0: 1.0}, [1.0]), TypeError, r"'a' and 'b'.*Got dict and list"),
        (lambda: paired_difference([1.0, 2.0], [1.0]), ValueError,
         r"'b'.*as many values as 'a' \(2\).*Got 1 instead"),
        (lambda: paired_difference({0: float("inf")}, {0: 1.0}), ValueError, r"'a'.*finite"),
    ],
)
def test_errors_name_the_parameter(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
