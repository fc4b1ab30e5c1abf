"""The test images a person looks at: the best and worst predictions of one evaluation.

The evaluate stage keeps them in ``examples.npz`` (a few images at the model's input size,
uint8 and booleans, compressed: tens of kilobytes) so that a report can show overlays without
running a model (reports consume a run folder; they never run stages).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xssr.report.io import atomic_path

EXAMPLES_FILE = "examples.npz"


def best_and_worst(dice: np.ndarray, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` highest Dice (best first) and the ``n`` lowest (worst first).

    The two never share an image: with fewer than ``2 n`` images the best get the larger half.
    NaN counts as the lowest.
    """
    dice = np.asarray(dice, dtype=np.float64)
    if dice.ndim != 1:
        raise ValueError(f"The 'dice' parameter must be 1-D (n_images,). Got shape {dice.shape} instead.")
    if n < 1:
        raise ValueError(f"The 'n' parameter must be at least 1. Got {n} instead.")
    order = np.argsort(np.nan_to_num(dice, nan=-np.inf), kind="stable")  # ascending
    n_best = min(n, (len(dice) + 1) // 2)
    n_worst = min(n, len(dice) - n_best)
    return order[::-1][:n_best].copy(), order[:n_worst].copy()


def _display_uint8(images: np.ndarray) -> np.ndarray:
    """(k, C, S, S) float -> (k, S, S, C) uint8, each image stretched to 0..255 on its own."""
    images = np.asarray(images, dtype=np.float32)
    lo = images.min(axis=(1, 2, 3), keepdims=True)
    span = images.max(axis=(1, 2, 3), keepdims=True) - lo
    scaled = np.where(span > 0, (images - lo) / np.where(span > 0, span, 1), 0)
    return np.round(scaled * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def save_examples(path: str | os.PathLike, images: np.ndarray, masks: np.ndarray, predicted: np.ndarray,
                  dice: np.ndarray, *, n: int = 3) -> Path:
    """Write the best and worst ``n`` test images of an evaluation to ``path`` (atomically).

    images : (N, C, S, S) float, as the model saw them; masks, predicted : (N, 1, S, S) in {0, 1};
    dice : (N,) Dice of each image. The file holds ``index`` (into the test set), ``kind``
    ("best" / "worst"), ``dice``, ``image`` (k, S, S, C) uint8, ``truth`` and ``predicted``
    (k, S, S) bool.
    """
    dice = np.asarray(dice, dtype=np.float64)
    if not (len(images) == len(masks) == len(predicted) == len(dice)):
        raise ValueError(f"Expected one image, mask, prediction and Dice per test image, got {len(images)}, "
                         f"{len(masks)}, {len(predicted)} and {len(dice)}.")
    best, worst = best_and_worst(dice, n)
    chosen = np.concatenate([best, worst]).astype(np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle, index=chosen, kind=np.array(["best"] * len(best) + ["worst"] * len(worst)),
                dice=dice[chosen], image=_display_uint8(np.asarray(images)[chosen]),
                truth=np.asarray(masks)[chosen, 0] > 0, predicted=np.asarray(predicted)[chosen, 0] > 0)
    return Path(path)


def read_examples(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays :func:`save_examples` wrote (read as data: no pickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
