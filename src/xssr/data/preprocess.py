"""Turn decoded images and masks into fixed-size network inputs.

Images are resized whole to ``size x size`` (no cropping, as in the shared data, where
every image was resized whole to 256x256). Resizing uses Pillow on 32-bit float
('F' mode) planes: its bilinear filter widens its support when shrinking, so it
averages instead of aliasing (``scipy.ndimage.zoom(order=1)`` samples points and
aliases fine texture when downscaling), it keeps float values exactly, and it is fast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from .readers import SliceReader
from .records import ImageRecord, record_order

logger = logging.getLogger(__name__)

NORMALIZATIONS = ("minmax", "percentile", "zscore")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_params(size, channels, normalize) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"The 'size' parameter must be a positive integer, got {size!r}.")
    if channels not in (1, 3):
        raise ValueError(f"The 'channels' parameter must be 1 or 3, got {channels!r}.")
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"The 'normalize' parameter must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}."
        )


def _planes(arr: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` -> ``(channels, H, W)`` float32."""
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return np.repeat(arr[None], channels, axis=0)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if channels == 3:
            return np.ascontiguousarray(np.moveaxis(rgb, -1, 0))
        return (rgb @ _LUMA)[None]
    raise ValueError(
        f"Expected an image of shape (H, W) or (H, W, 3), got shape {arr.shape}."
    )


def _resize_plane(plane: np.ndarray, size: int, resample) -> np.ndarray:
    if plane.shape == (size, size):
        return plane
    out = Image.fromarray(np.ascontiguousarray(plane)).resize((size, size), resample)
    return np.asarray(out)


def normalize_image(arr: np.ndarray, method: str) -> np.ndarray:
    """Per-image intensity normalisation of an array of any shape (float32 out).

    ``minmax``: to [0, 1]. ``percentile``: clip to the 0.5th/99.5th percentiles, then
    [0, 1] (robust to outliers, suits CT/MR/DICOM). ``zscore``: mean 0, std 1.
    A constant image becomes zeros.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(
            f"The 'normalize' parameter must be one of {', '.join(NORMALIZATIONS)}, got {method!r}."
        )
    arr = np.asarray(arr, dtype=np.float32)
    if method == "zscore":
        std = float(arr.std())
        if std == 0.0:
            return np.zeros_like(arr)
        return ((arr - arr.mean()) / std).astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if method == "percentile":
        p_lo, p_hi = (float(v) for v in np.percentile(arr, [0.5, 99.5]))
        # A mostly-blank image can have equal percentiles; min-max still shows its content.
        if p_hi > p_lo:
            lo, hi = p_lo, p_hi
            arr = np.clip(arr, lo, hi)
    if hi == lo:
        return np.zeros_like(arr)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def prepare_image(arr: np.ndarray, size: int, channels: int, normalize: str) -> np.ndarray:
    """Resize, set channels and normalise one image.

    Parameters
    ----------
    arr : np.ndarray
        ``(H, W)`` grayscale or ``(H, W, 3)`` RGB.
    size : int
        Output side; the whole image is resized (aspect ratio not kept, nothing cropped).
    channels : {1, 3}
        1: RGB becomes luminance (0.299 R + 0.587 G + 0.114 B); 3: gray is replicated.
    normalize : {"minmax", "percentile", "zscore"}

    Returns
    -------
    np.ndarray
        float32 ``(channels, size, size)``.
    """
    _check_params(size, channels, normalize)
    planes = _planes(arr, channels)
    resized = np.stack([_resize_plane(p, size, Image.Resampling.BILINEAR) for p in planes])
    return normalize_image(resized, normalize)


def prepare_mask(arr: np.ndarray, size: int) -> np.ndarray:
    """Binarise (value > 0) and resize a mask with nearest neighbour.

    Parameters
    ----------
    arr : np.ndarray
        ``(H, W)`` raw mask values (or ``(H, W, C)``: channel maximum).
    size : int

    Returns
    -------
    np.ndarray
        uint8 ``(1, size, size)`` with values in {0, 1}.
    """
    _check_params(size, 1, "minmax")
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.max(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"Expected a mask of shape (H, W), got shape {arr.shape}.")
    binary = (arr > 0).astype(np.uint8)
    return _resize_plane(binary, size, Image.Resampling.NEAREST)[None].astype(np.uint8)


def _missing_masks(records: Sequence[ImageRecord]) -> None:
    missing = [r.label for r in records if r.mask is None]
    if missing:
        shown = "; ".join(missing[:5]) + (f"; ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise ValueError(f"with_masks=True, but {len(missing)} record(s) have no mask: {shown}")


def _fill(records, reader, images, masks, size, channels, normalize, progress) -> None:
    """Write records[i] into images[i] (and masks[i]), visiting files in sorted order."""
    order = sorted(range(len(records)), key=lambda i: record_order(records[i]))
    for i in order:
        record = records[i]
        images[i] = prepare_image(reader.image(record.image, record.slice_index),
                                  size, channels, normalize)
        if masks is not None:
            masks[i] = prepare_mask(reader.mask(record.mask, record.slice_index), size)
        if progress is not None:
            progress(1)


def load_arrays(
    records: Sequence[ImageRecord],
    size: int,
    channels: int,
    normalize: str,
    with_masks: bool = False,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and prepare every record, in the order given.

    Returns
    -------
    images : np.ndarray
        float32 ``(n_records, channels, size, size)``.
    masks : np.ndarray or None
        uint8 ``(n_records, 1, size, size)`` in {0, 1} when ``with_masks``.

    ``progress(1)`` is called after each record. Read errors raise
    :class:`~xssr.data.readers.ImageReadError`; run
    :func:`~xssr.data.validate.check_inputs` first to get all problems at once.
    """
    _check_params(size, channels, normalize)
    records = list(records)
    if with_masks:
        _missing_masks(records)
    images = np.empty((len(records), channels, size, size), dtype=np.float32)
    masks = np.empty((len(records), 1, size, size), dtype=np.uint8) if with_masks else None
    _fill(records, SliceReader(), images, masks, size, channels, normalize, progress)
    return images, masks


def iter_arrays(
    records: Sequence[ImageRecord],
    size: int,
    channels: int,
    normalize: str,
    batch_size: int = 64,
    progress: Callable[[int], object] | None = None,
) -> Iterator[np.ndarray]:
    """Prepared images in consecutive batches, so a large pool is embedded in bounded memory.

    Yields
    ------
    np.ndarray
        float32 ``(b, channels, size, size)`` with ``b <= batch_size``, records in the
        order given. Masks are not read (use :func:`load_arrays` for training data).
    """
    _check_params(size, channels, normalize)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"The 'batch_size' parameter must be a positive integer, got {batch_size!r}.")
    records = list(records)
    reader = SliceReader()  # shared across batches: a volume spanning two batches is decoded once
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        images = np.empty((len(chunk), channels, size, size), dtype=np.float32)
        _fill(chunk, reader, images, None, size, channels, normalize, progress)
        yield images
