"""Summary and paired statistics over training seeds (numpy and scipy only).

Experiments repeat each selection method over several seeds. For a given seed every method
trains its U-Net from the same initial weights with the same batch order, so two methods'
scores at one seed differ only by the images selected. Comparing them seed by seed (a
paired comparison) removes the seed-to-seed spread that both share, which an unpaired
comparison of two means would count as noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

CONFIDENCE = 0.95


def _as_values(values, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite numbers; raises naming ``name``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"The '{name}' parameter must be a 1-D sequence of numbers. "
            f"Got {type(values).__name__} instead."
        ) from None
    if array.ndim != 1:
        raise ValueError(
            f"The '{name}' parameter must be 1-D. Got an array of shape {array.shape} instead."
        )
    if array.size == 0:
        raise ValueError(f"The '{name}' parameter must hold at least one value. Got 0 instead.")
    n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if n_bad:
        raise ValueError(
            f"The '{name}' parameter must contain only finite values. "
            f"Got {n_bad} NaN or infinite values instead."
        )
    return array


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (``ddof=1``) and count of ``values``.

    Parameters
    ----------
    values : array-like of shape (n,), n >= 1, finite

    Returns
    -------
    (mean, std, n) : (float, float, int); std is NaN when n == 1 (no spread to estimate)
    """
    array = _as_values(values, "values")
    n = array.size
    std = float(array.std(ddof=1)) if n > 1 else float("nan")
    return float(array.mean()), std, int(n)


@dataclass(frozen=True)
class PairedDifference:
    """Paired comparison of ``a - b`` over the seeds both have.

    Attributes
    ----------
    mean : float
        Mean of the per-seed differences ``a[s] - b[s]``.
    std : float
        Sample standard deviation (``ddof=1``) of the differences; NaN when n == 1.
    n : int
        Number of paired seeds.
    ci_low, ci_high : float
        95 % confidence interval of the mean difference,
        ``mean -/+ t_{0.975, n-1} * std / sqrt(n)``; NaN when n == 1.
    p_value : float
        Two-sided paired t-test of "mean difference = 0"; NaN when n < 2 or when every
        difference is 0, and 0 when the differences are equal but not 0.
    seeds : tuple
        The paired keys in sorted order (positions 0..n-1 for array input).
    """

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    p_value: float
    seeds: tuple


def _pair(a, b) -> tuple[np.ndarray, np.ndarray, tuple]:
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError(
            "The 'a' and 'b' parameters must both be dicts (seed -> value) or both be "
            f"aligned sequences. Got {type(a).__name__} and {type(b).__name__} instead."
        )
    if isinstance(a, Mapping):
        common = set(a) & set(b)
        if not common:
            raise ValueError(
                "The 'a' and 'b' parameters must share at least one seed. "
                f"Got seeds {sorted(a, key=repr)} and {sorted(b, key=repr)} instead."
            )
        try:
            seeds = tuple(sorted(common))
        except TypeError:  # keys of mixed types
            seeds = tuple(sorted(common, key=repr))
        values_a = _as_values([a[s] for s in seeds], "a")
        values_b = _as_values([b[s] for s in seeds], "b")
        return values_a, values_b, seeds
    values_a, values_b = _as_values(a, "a"), _as_values(b, "b")
    if values_a.size != values_b.size:
        raise ValueError(
            f"The 'b' parameter must have as many values as 'a' ({values_a.size}) when both "
            f"are sequences. Got {values_b.size} instead."
        )
    return values_a, values_b, tuple(range(values_a.size))


def paired_difference(a, b) -> PairedDifference:
    """Mean difference ``a - b`` over paired seeds, with a 95 % t interval and p-value.

    Pairing: value ``a[s]`` and ``b[s]`` come from runs with the same seed ``s``, hence the
    same U-Net initialisation and batch order, so the difference isolates the effect of
    the selection. Only seeds present in both are used.

    Parameters
    ----------
    a, b : dict of seed -> float, or array-like of shape (n,) aligned by position

    Returns
    -------
    PairedDifference
    """
    values_a, values_b, seeds = _pair(a, b)
    diff = values_a - values_b
    mean, std, n = mean_std(diff)
    if n < 2:
        nan = float("nan")
        return PairedDifference(mean, std, n, nan, nan, nan, seeds)
    half_width = float(_scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    if std == 0.0:
        # Degenerate t statistic: 0/0 (no difference at all) or mean/0 (a constant shift).
        p_value = float("nan") if mean == 0.0 else 0.0
    else:
        t_stat = mean / (std / math.sqrt(n))
        p_value = float(2.0 * _scipy_stats.t.sf(abs(t_stat), n - 1))
    return PairedDifference(
        mean=mean, std=std, n=n, ci_low=mean - half_width, ci_high=mean + half_width,
        p_value=p_value, seeds=seeds,
    )
