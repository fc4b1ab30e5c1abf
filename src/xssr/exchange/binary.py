"""The one check of a mask handed to an exporter: a labelling tool accepts foreground or not, nothing else."""

from __future__ import annotations

import numpy as np


def binary_mask(mask: object) -> np.ndarray:
    """A 2-D bool array from a bool, {0, 1} or {0, 255} mask; other values raise ValueError."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"mask is empty (shape {array.shape})")
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "iuf":
        raise ValueError(f"mask must be bool or numbers 0/1 or 0/255, got dtype {array.dtype}")
    zero = array == 0
    if not ((zero | (array == 1)).all() or (zero | (array == 255)).all()):
        found = np.unique(array)
        shown = ", ".join(f"{v:g}" for v in found[:6]) + (", ..." if found.size > 6 else "")
        raise ValueError(f"mask must be binary (bool, 0/1 or 0/255), found values {shown}; threshold it first")
    return ~zero
