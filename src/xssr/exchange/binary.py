"""The checks every exporter shares: a mask is foreground or not, nothing else, and the label is a
name every tool can hold."""

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


def check_label(label: object) -> str:
    """The foreground label's name, checked once for every exporter: Label Studio, CVAT (whose
    labelmap.txt is ``name:r,g,b:parts:actions``, one label a line, ``#`` lines comments) and
    nnU-Net (whose dataset.json reserves ``background`` for 0) must all be able to hold it."""
    if not isinstance(label, str) or not label or label != label.strip():
        raise ValueError(f"label must be a non-empty name without surrounding spaces, got {label!r}")
    if ":" in label or "\n" in label or "\r" in label or label.startswith("#"):
        raise ValueError(f"label {label!r} cannot be written to CVAT's labelmap.txt (no ':' or line breaks, "
                         "and no '#' first, which makes the line a comment)")
    if label.lower() == "background":
        raise ValueError(f"label {label!r} is the background's name; name the foreground (e.g. lung, optic_disc)")
    return label
