"""How much Dice the next batch of annotations is likely to add: a learning curve fitted to
cross-validated Dice on the images annotated so far (numpy and scipy only).

The labeled images are split into ``folds``; for each fold the others train U-Nets on nested
subsets of a few sizes and the fold's images measure them, so every image is measured once per
size by a model that never saw it. An inverse power law

    dice(n) = a - b * n ** (-c)     (a <= 1, b >= 0, c > 0)

is fitted to the mean Dice per size, the form learning curves of classifiers and segmenters
are usually modelled with (Figueroa et al. 2012, BMC Med Inform Decis Mak 12:8; Cho et al. 2015,
arXiv:1511.06348). The gain of ``n_next`` over ``n_now`` annotated images is read off the fitted
curve; its interval comes from a bootstrap over the measured images (each resample refits the
curve), so it shows how far the few held-out images let the curve move. It does not include the
spread between training seeds, and extrapolating beyond the largest trained size assumes the
curve keeps its form: docs/advice.md reports how close it came on the committed budget sweeps.
The images of one fold share one U-Net per size, so they are not independent draws and the
interval is narrower than a bootstrap over folds would give (three folds are too few for that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Bounds of the fitted parameters (a, b, c): a is a Dice, c keeps the curve from jumping.
_LOWER, _UPPER = (0.0, 0.0, 0.05), (1.0, 10.0, 3.0)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class CurveTask:
    """One U-Net of the plan: trained on ``train`` (labeled indices), measured on ``held_out``."""

    fold: int
    size: int
    train: tuple[int, ...]
    held_out: tuple[int, ...]


def curve_plan(n: int, *, folds: int = 3, n_sizes: int = 4, seed: int = 0) -> list[CurveTask]:
    """The U-Nets to train: ``folds`` × ``n_sizes`` tasks over ``n`` labeled images.

    Sizes are geometric, from about a quarter of the smallest training share up to all of it
    (at least 2 images each), and the same in every fold so the folds' Dice can be pooled per
    size. A fold's subsets are nested (each smaller one is the start of the larger), drawn
    with ``seed``.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2 (got {folds}): one fold measures, the others train")
    if n_sizes < 2:
        raise ValueError(f"n_sizes must be at least 2 (got {n_sizes}): a curve needs two sizes")
    smallest_train = n - math.ceil(n / folds)
    if smallest_train < 2 * n_sizes or n < folds:
        need = next(m for m in range(folds, 10 * folds * n_sizes) if m - math.ceil(m / folds) >= 2 * n_sizes)
        raise ValueError(f"A {folds}-fold learning curve with {n_sizes} sizes needs at least {need} annotated "
                         f"images; there are {n}. Annotate more, or use fewer sizes or folds.")
    sizes = sorted({max(2, round(smallest_train * 4 ** (-(n_sizes - 1 - i) / (n_sizes - 1))))
                    for i in range(n_sizes)})
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    tasks = []
    for fold, held_out in enumerate(np.array_split(order, folds)):
        rest = np.setdiff1d(order, held_out, assume_unique=True)
        rest = rest[rng.permutation(len(rest))]
        for size in sizes:
            tasks.append(CurveTask(fold, size, tuple(int(i) for i in rest[:size]),
                                   tuple(int(i) for i in np.sort(held_out))))
    return tasks


def power_law(n, a: float, b: float, c: float):
    return a - b * np.power(np.asarray(n, dtype=np.float64), -c)


def fit_power_law(sizes, dice) -> tuple[float, float, float]:
    """(a, b, c) of the inverse power law nearest to the mean Dice at each size (least squares,
    within the bounds above). Exactly flat or falling Dice gives b = 0; with noise, a few points
    can pin a parameter at its bound (:func:`at_bounds` says which)."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    sizes = np.asarray(sizes, dtype=np.float64)
    dice = np.asarray(dice, dtype=np.float64)
    if len(sizes) != len(dice) or len(np.unique(sizes)) < 2:
        raise ValueError("A learning curve needs the mean Dice at two or more sizes.")
    start = (min(1.0, float(dice.max()) + 0.02), max(float(dice.max() - dice.min()), 1e-3) * 2.0, 0.5)
    try:
        with warnings.catch_warnings():  # the covariance of 3 points is often singular; it is not used
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(power_law, sizes, dice, p0=start, bounds=(_LOWER, _UPPER), maxfev=20000)
    except RuntimeError:  # no convergence: fall back to the flat curve through the mean
        return float(dice.mean()), 0.0, 1.0
    return tuple(float(p) for p in params)


def at_bounds(params: tuple[float, float, float]) -> tuple[str, ...]:
    """Names of the fitted parameters that ended at a bound: the points did not decide them."""
    return tuple(name for name, value, low, high in zip("abc", params, _LOWER, _UPPER)
                 if min(abs(value - low), abs(value - high)) <= 1e-6 * max(1.0, abs(high)) and not
                 (name == "b" and value <= 1e-6))  # b = 0 is a real answer: no gain


@dataclass(frozen=True)
class GainEstimate:
    n_now: int
    n_next: int
    dice_now: float  # the curve's Dice at n_now (all images annotated so far)
    dice_next: float
    gain: float
    low: float  # 95 % bootstrap interval of the gain
    high: float
    params: tuple[float, float, float]
    sizes: tuple[int, ...]
    mean_dice: tuple[float, ...]  # measured: mean held-out Dice per size
    at_bound: tuple[str, ...] = ()  # parameters the points left at a bound of the fit


def estimate_gain(sizes, per_image_dice, n_now: int, n_next: int, *, n_boot: int = 1000,
                  seed: int = 0) -> GainEstimate:
    """The Dice ``n_next`` annotated images are expected to add over ``n_now``.

    Parameters
    ----------
    sizes : (k,) training sizes of the curve
    per_image_dice : (k, m) Dice of each of the m labeled images at each size, measured by the
        U-Net of the fold that held it out
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    dice = np.asarray(per_image_dice, dtype=np.float64)
    if dice.ndim != 2 or dice.shape[0] != len(sizes) or not np.isfinite(dice).all():
        raise ValueError(f"per_image_dice must be finite, one row per size ({len(sizes)}); got shape {dice.shape}")
    if not n_next > n_now > 0:
        raise ValueError(f"n_next ({n_next}) must exceed n_now ({n_now}) > 0")
    params = fit_power_law(sizes, dice.mean(axis=1))
    now, after = power_law([n_now, n_next], *params)
    rng = np.random.default_rng(seed)
    gains = np.empty(n_boot)
    for i in range(n_boot):
        images = rng.integers(0, dice.shape[1], dice.shape[1])  # the same images at every size: paired
        a_now, a_next = power_law([n_now, n_next], *fit_power_law(sizes, dice[:, images].mean(axis=1)))
        gains[i] = a_next - a_now
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return GainEstimate(n_now, n_next, float(now), float(after), float(after - now), float(low), float(high),
                        params, tuple(int(s) for s in sizes), tuple(float(d) for d in dice.mean(axis=1)),
                        at_bounds(params))
