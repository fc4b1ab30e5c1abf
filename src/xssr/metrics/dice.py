"""Dice similarity coefficient in plain numpy, computed from tp/fp/fn counts."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np


def confusion_counts(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image true-positive, false-positive and false-negative pixel counts.

    pred, target : (N, ...) boolean or {0, 1} arrays of the same shape.
    Returns three (N,) int64 arrays.
    """
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    if pred.shape != target.shape:
        raise ValueError(f"Prediction shape {pred.shape} differs from target shape {target.shape}.")
    flat_p = pred.reshape(len(pred), -1)
    flat_t = target.reshape(len(target), -1)
    tp = np.count_nonzero(flat_p & flat_t, axis=1)
    fp = np.count_nonzero(flat_p & ~flat_t, axis=1)
    fn = np.count_nonzero(~flat_p & flat_t, axis=1)
    return tp, fp, fn


def dice_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Dice = 2tp / (2tp + fp + fn); an image with neither prediction nor target scores 1."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 1.0)


def dice_per_image(probabilities: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N,) Dice of each image after binarising ``probabilities`` at ``threshold`` (§4.3)."""
    return dice_from_counts(*confusion_counts(np.asarray(probabilities) >= threshold, target))


def summarise_dice(dice: np.ndarray, sites: Sequence[str]) -> dict:
    """Mean, std and count of per-image Dice overall and for each site.

    dice : (N,) per-image Dice; sites : N site names (may be empty strings).
    """
    dice = np.asarray(dice, dtype=np.float64)
    if len(sites) != len(dice):
        raise ValueError(f"Got {len(dice)} Dice values but {len(sites)} site names.")
    by_site: dict[str, list[float]] = defaultdict(list)
    for value, site in zip(dice, sites):
        by_site[site or "unknown"].append(float(value))

    def stats(values) -> dict:
        values = np.asarray(values, dtype=np.float64)
        return {
            "mean": float(values.mean()) if len(values) else float("nan"),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "n": int(len(values)),
        }

    return {"overall": stats(dice), "per_site": {s: stats(v) for s, v in sorted(by_site.items())}}
