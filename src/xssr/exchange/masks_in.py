"""Finished masks back into xssr: checked against the selection, written as a manifest ``xssr train`` reads.

The masks come from a labelling tool's export (Label Studio JSON, xssr.exchange.label_studio) or
from a folder of mask files (PNG, TIFF, NIfTI, ...) named like their images. Every mask is
checked before anything is written, and every problem is listed at once with its file:

- exactly one mask per selected image (a missing one, and one for an image that was not
  selected, are both errors);
- the mask has its image's size;
- it is binary (two values at most: 0 and one foreground value), and not empty unless allowed.

The result is a round folder: ``masks/`` (0/255 PNGs named by case) and ``manifest.csv`` listing
the whole pool with the mask column filled for the annotated images, the manifest ``xssr train``
and ``xssr run`` take as ``--pool ROUND/manifest.csv#paths=any`` (its image paths are the pool's
own, outside the round folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from xssr.data import ImageRecord, InputError
from xssr.data.readers import file_stem, is_supported, read_image, read_mask
from xssr.exchange.nnunet import case_identifiers
from xssr.report.io import write_csv

MANIFEST_COLUMNS = ("image", "mask", "site", "case_id", "split")


def masks_from_folder(folder: str | Path, selected: Sequence[ImageRecord]) -> dict[str, tuple[np.ndarray, str]]:
    """Read the mask files of ``folder`` whose name (without suffix) is a selected image's file
    name or case id; returns ``{record key: (mask, file)}``. Files matching no selected image are
    returned under their own path as key, so that the check names them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of mask files")
    by_name: dict[str, ImageRecord] = {}
    for record in selected:
        if record.slice_index is not None:
            raise ValueError(f"{record.label}: importing masks of volume slices from a folder is not supported yet; "
                             "write the annotated volume's mask next to it and list it in a manifest")
        by_name[file_stem(record.image)] = record
        if record.case_id:
            by_name.setdefault(record.case_id, record)
    found: dict[str, tuple[np.ndarray, str]] = {}
    problems = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_supported(p)):
        record = by_name.get(file_stem(path))
        key = record.key if record is not None else str(path)
        if key in found:
            problems.append((str(path), f"a second mask for {record.label} (the first is {found[key][1]})"))
            continue
        try:
            found[key] = (read_mask(path), str(path))
        except ValueError as error:
            problems.append((str(path), str(error)))
    if problems:
        raise InputError(problems)
    return found


def check_masks(selected: Sequence[ImageRecord], masks: Mapping[str, tuple[np.ndarray, str]], *,
                allow_empty: bool = False) -> dict[str, np.ndarray]:
    """The checked binary {0, 1} mask of every selected image, by record key; raises InputError
    listing every problem."""
    wanted = {r.key: r for r in selected}
    problems = [(source, "is not the mask of any selected image (was it selected in another round?)")
                for key, (_, source) in masks.items() if key not in wanted]
    checked = {}
    for key, record in wanted.items():
        if key not in masks:
            problems.append((record.label, "was selected for annotation but no mask was found for it"))
            continue
        mask, source = masks[key]
        try:
            height, width = read_image(record.image, record.slice_index).shape[:2]
        except ValueError as error:
            problems.append((record.label, str(error)))
            continue
        if mask.shape != (height, width):
            problems.append((source, f"mask is {mask.shape[1]}x{mask.shape[0]} but {record.label} is {width}x{height}"))
            continue
        values = np.unique(mask)
        if len(values) > 2 or (len(values) == 2 and values[0] != 0):
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
            problems.append((source, f"not a binary mask: values {shown} (expected 0 and one foreground value)"))
            continue
        binary = (mask > 0).astype(np.uint8)
        if not allow_empty and not binary.any():
            problems.append((source, f"the mask of {record.label} is empty (pass allow_empty / --allow-empty if "
                                     "the image truly shows no foreground)"))
            continue
        checked[key] = binary
    if problems:
        raise InputError(problems)
    return checked


def write_round(out: str | Path, pool: Sequence[ImageRecord], selected: Sequence[ImageRecord],
                masks: Mapping[str, np.ndarray]) -> Path:
    """Write ``out/masks/`` and ``out/manifest.csv`` (the whole pool, masks filled for the
    annotated images); returns the manifest path. Refuses a folder that already holds a round."""
    from PIL import Image

    out = Path(out)
    manifest = out / "manifest.csv"
    if manifest.exists() or (out / "masks").exists():
        raise ValueError(f"{out}: already holds imported masks; give each round its own folder")
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".masks.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    files = {}
    try:
        for case, record in zip(case_identifiers(selected), selected):
            files[record.key] = out / "masks" / f"{case}.png"
            Image.fromarray(masks[record.key] * np.uint8(255)).save(partial / f"{case}.png")
        os.replace(partial, out / "masks")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    rows = []
    for record in pool:
        mask = files.get(record.key, record.mask)
        rows.append({"image": str(record.image), "mask": str(mask) if mask else "", "site": record.site,
                     "case_id": record.case_id, "split": record.split})
    return write_csv(manifest, rows, MANIFEST_COLUMNS)
