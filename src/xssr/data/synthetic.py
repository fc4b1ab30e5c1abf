"""Built-in demo data: small SYNTHETIC images with a cross-domain shift.

Each image is a smooth, noisy background with an "organ" made of one or two
ellipses; the mask is those ellipses. The source site has a bright, clean organ.
The target comes in three styles of unequal frequency, each shifted from the source
in a different way, so a segmenter trained on the source does worse on the target
and does worst on the rare style:

- ``synthetic_target_a`` (60 %): low contrast, gamma-brightened, noisier.
- ``synthetic_target_b`` (30 %): inverted (dark organ on a bright background) with stripes.
- ``synthetic_target_c`` (10 %): faint organ, speckle noise, blur and bright distractor blobs.

The data are only for demos and tests; results on them say nothing about real images.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

logger = logging.getLogger(__name__)

SOURCE_SITE = "synthetic_source"
TARGET_SITES = ("synthetic_target_a", "synthetic_target_b", "synthetic_target_c")
TARGET_SHARES = (0.6, 0.3, 0.1)
_ROLES = {"source": 0, "pool": 1, "test": 2}

README_TEXT = """\
SYNTHETIC DATA - NOT REAL MEDICAL IMAGES.

Made by xssr.data.synthetic.make_synthetic_dataset for demos and tests.
Images are smooth noisy backgrounds with one or two ellipses (the "organ");
masks (0/255) mark the ellipses. Nothing measured on these images says
anything about real data.

Sites:
  synthetic_source     split=train  bright organ, clean (the labelled source domain)
  synthetic_target_a   pool: split=train, test: split=test  (~60%) low contrast, gamma, noise
  synthetic_target_b   (~30%) inverted intensities with stripe texture
  synthetic_target_c   (~10%, rare) faint organ, speckle, blur, distractor blobs

Generation: n_source={n_source}, n_pool={n_pool}, n_test={n_test}, size={size}, seed={seed}.
"""


@dataclass(frozen=True)
class _Style:
    background: float  # mean background level
    organ: float  # added to the background inside the organ (negative: darker organ)
    gamma: float
    noise: float  # additive Gaussian noise, std
    speckle: float = 0.0  # multiplicative noise, std
    stripes: float = 0.0  # stripe texture amplitude
    blur: float = 0.0  # Gaussian blur sigma in pixels
    distractors: int = 0  # bright blobs that are not organ


STYLES = {
    SOURCE_SITE: _Style(background=0.25, organ=0.45, gamma=1.0, noise=0.03),
    "synthetic_target_a": _Style(background=0.35, organ=0.2, gamma=0.6, noise=0.08),
    "synthetic_target_b": _Style(background=0.7, organ=-0.35, gamma=1.0, noise=0.05, stripes=0.12),
    "synthetic_target_c": _Style(background=0.4, organ=0.15, gamma=1.4, noise=0.03,
                                 speckle=0.25, blur=1.0, distractors=2),
}


def _ellipse(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
             centre_range=(0.3, 0.7), axis_range=(0.08, 0.22)) -> np.ndarray:
    cy, cx = rng.uniform(*centre_range, size=2)
    ay, ax = rng.uniform(*axis_range, size=2)
    theta = rng.uniform(0.0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def make_case(rng: np.random.Generator, size: int, site: str) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image and mask in the style of ``site``.

    Returns
    -------
    image : np.ndarray
        uint8 ``(size, size)``.
    mask : np.ndarray
        bool ``(size, size)``, the organ.
    """
    style = STYLES[site]
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    mask = _ellipse(rng, yy, xx)
    if rng.random() < 0.5:
        mask |= _ellipse(rng, yy, xx)
    # Smooth background: blurred noise plus a random linear gradient.
    field = gaussian_filter(rng.standard_normal((size, size)), sigma=size / 8, mode="reflect")
    field /= max(float(np.abs(field).max()), 1e-6)
    slope = rng.uniform(-0.1, 0.1, size=2)
    image = style.background + 0.1 * field + slope[0] * (yy - 0.5) + slope[1] * (xx - 0.5)
    # Soft organ edge, as real boundaries are not step functions.
    organ = gaussian_filter(mask.astype(np.float64), sigma=0.7)
    image = image + style.organ * rng.uniform(0.85, 1.15) * organ
    if style.stripes:
        angle, freq = rng.uniform(0, np.pi), rng.uniform(6, 10)
        image += style.stripes * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    for _ in range(style.distractors):
        blob = _ellipse(rng, yy, xx, centre_range=(0.1, 0.9), axis_range=(0.03, 0.07)) & ~mask
        image = image + 0.3 * gaussian_filter(blob.astype(np.float64), sigma=0.7)
    if style.speckle:
        image *= 1.0 + style.speckle * rng.standard_normal((size, size))
    if style.blur:
        image = gaussian_filter(image, sigma=style.blur)
    image = image + style.noise * rng.standard_normal((size, size))
    image = np.clip(image, 0.0, 1.0) ** style.gamma
    return np.round(image * 255).astype(np.uint8), mask


def _target_sites(n: int, rng: np.random.Generator) -> list[str]:
    counts = [int(round(share * n)) for share in TARGET_SHARES[:-1]]
    counts.append(n - sum(counts))
    while counts[-1] < 0:  # rounding can overshoot for tiny n
        counts[int(np.argmax(counts[:-1]))] -= 1
        counts[-1] += 1
    sites = [site for site, count in zip(TARGET_SITES, counts) for _ in range(count)]
    return [sites[i] for i in rng.permutation(n)]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _png_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"The '{name}' parameter must be an integer >= {minimum}, got {value!r}.")


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    n_source: int = 60,
    n_pool: int = 60,
    n_test: int = 30,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a small SYNTHETIC two-domain segmentation dataset.

    Layout: ``out_dir/images/*.png`` (8-bit gray), ``out_dir/masks/*.png`` (0/255),
    ``out_dir/manifest.csv`` (image,mask,site,case_id,split; written last) and
    ``out_dir/README.txt``. Source images are site ``synthetic_source``, split
    ``train``; pool images are target sites, split ``train``; test images are target
    sites, split ``test``. Target sites ``synthetic_target_a/b/c`` come in about
    60/30/10 % proportions. Every file is written atomically. The same arguments
    give byte-identical files; each image depends only on (seed, role, index).

    Returns
    -------
    Path
        ``out_dir``.
    """
    for name, value, minimum in (("n_source", n_source, 0), ("n_pool", n_pool, 0),
                                 ("n_test", n_test, 0), ("size", size, 16), ("seed", seed, 0)):
        _check_count(name, value, minimum)
    out = Path(out_dir)
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    plan = (("source", n_source, "train"), ("pool", n_pool, "train"), ("test", n_test, "test"))
    rows = []
    for role, n, split in plan:
        code = _ROLES[role]
        if role == "source":
            sites = [SOURCE_SITE] * n
        else:
            sites = _target_sites(n, np.random.default_rng((seed, 100 + code)))
        for i, site in enumerate(sites):
            image, mask = make_case(np.random.default_rng((seed, code, i)), size, site)
            case_id = f"{role}_{i:04d}"
            _atomic_write(out / "images" / f"{case_id}.png", _png_bytes(image))
            _atomic_write(out / "masks" / f"{case_id}.png", _png_bytes(mask.astype(np.uint8) * 255))
            rows.append((f"images/{case_id}.png", f"masks/{case_id}.png", site, case_id, split))
    _atomic_write(out / "README.txt", README_TEXT.format(
        n_source=n_source, n_pool=n_pool, n_test=n_test, size=size, seed=seed).encode())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("image", "mask", "site", "case_id", "split"))
    writer.writerows(rows)
    # The manifest goes last: its presence means the dataset is complete.
    _atomic_write(out / "manifest.csv", text.getvalue().encode())
    logger.info("wrote %d synthetic images to %s", len(rows), out)
    return out
