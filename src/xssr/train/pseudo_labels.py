"""Pseudo-masks for MedSASS pretraining (seed paper 004): each unlabeled image thresholded by itself.

Pure numpy/scipy. scikit-image has ``threshold_otsu`` and ``threshold_local``, but it is not a
dependency of xssr and these are a few lines each.
"""

from __future__ import annotations

import numpy as np

PSEUDO_LABELS = ("otsu", "adaptive-mean", "adaptive-gaussian")


def grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W): the channel mean (the paper converts to greyscale first)."""
    return image.mean(axis=0) if image.ndim == 3 else image


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu (1979): the threshold that maximises the between-class variance of the histogram."""
    values = values.ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    mass_below = np.cumsum(counts * centres)
    mean_below = mass_below / np.maximum(weight_below, 1)
    mean_above = (mass_below[-1] - mass_below) / np.maximum(weight_above, 1)
    between = weight_below * weight_above * (mean_below - mean_above) ** 2
    # Every threshold in an empty gap between the two modes separates them equally well: take the
    # middle of that plateau rather than its first bin, so the cut sits between the modes.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    return float(0.5 * (edges[1:][best[0]] + edges[1:][best[-1]]))


def pseudo_mask(image: np.ndarray, method: str = "otsu") -> np.ndarray:
    """A (H, W) {0, 1} mask of one (C, H, W) image: above its own Otsu threshold, or above the
    mean of its neighbourhood (a window of 1/8 of the side; box or Gaussian weights)."""
    plane = grey(np.asarray(image, dtype=np.float64))
    if method == "otsu":
        return (plane > otsu_threshold(plane)).astype(np.uint8)
    from scipy import ndimage

    size = max(3, plane.shape[0] // 8) | 1
    if method == "adaptive-mean":
        local = ndimage.uniform_filter(plane, size=size, mode="reflect")
    elif method == "adaptive-gaussian":
        local = ndimage.gaussian_filter(plane, sigma=size / 6, mode="reflect")
    else:
        raise ValueError(f"The 'method' parameter must be one of {', '.join(PSEUDO_LABELS)}. Got {method!r} instead.")
    return (plane > local).astype(np.uint8)


def pseudo_masks(images: np.ndarray, method: str = "otsu") -> np.ndarray:
    """(N, C, H, W) images -> (N, 1, H, W) uint8 pseudo-masks."""
    return np.stack([pseudo_mask(image, method) for image in images])[:, None]
