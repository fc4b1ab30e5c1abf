"""Small pictures for the HTML report: thumbnails of images and outlines of masks (Pillow, numpy)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from xssr.report.html import PREDICTION_COLOUR, TRUTH_COLOUR


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


def display_uint8(image: np.ndarray) -> np.ndarray:
    """A decoded image ``(H, W)`` or ``(H, W, 3)`` of any range as uint8, clipped to its 0.5th and
    99.5th percentiles so that one bright pixel of a 16-bit file does not leave it black."""
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    scaled = np.clip((np.nan_to_num(image, nan=lo) - lo) / (hi - lo), 0, 1)
    return np.round(scaled * 255).astype(np.uint8)


def thumbnail_jpeg(image: np.ndarray, size: int = 132, quality: int = 85) -> bytes:
    """JPEG of a decoded image scaled to fit ``size`` x ``size`` (aspect ratio kept)."""
    picture = Image.fromarray(display_uint8(image))
    picture.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a (H, W) boolean mask that touch the background (4-neighbourhood)."""
    mask = np.asarray(mask, bool)
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def overlay_png(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, scale: int = 1) -> bytes:
    """PNG of an (S, S, C) uint8 image with the prediction tinted and outlined in red and the
    annotation outlined in green; ``scale`` enlarges it (nearest neighbour) first, so the
    outlines stay one pixel wide on small images."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    if scale > 1:
        rgb, truth, predicted = (np.kron(a, np.ones((scale, scale) + (1,) * (a.ndim - 2), dtype=a.dtype))
                                 for a in (rgb, truth, predicted))
    out = rgb.astype(np.float32)
    red, green = _rgb(PREDICTION_COLOUR), _rgb(TRUTH_COLOUR)
    out[predicted] = 0.75 * out[predicted] + 0.25 * red
    out[outline(predicted)] = red
    out[outline(truth)] = green
    buffer = io.BytesIO()
    Image.fromarray(np.round(out).astype(np.uint8)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
