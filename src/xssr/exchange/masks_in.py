"""Finished masks back into xssr: checked against the selection, written as a manifest ``xssr train`` reads.

The masks come from a labelling tool's export (Label Studio JSON, xssr.exchange.label_studio) or
from a folder of mask files (PNG, TIFF, NIfTI, ...) named like their images. Every mask is
checked before anything is written, and every problem is listed at once with its file:

- exactly one mask per selected image (a missing one, and one for an image that was not
  selected, are both errors);
- the mask has its image's size;
- it is binary (two values at most: 0 and one foreground value), and not empty unless allowed.

The result is a round folder: ``masks/`` (0/255 PNGs named by case; for slices of volumes, one
NIfTI mask volume per image volume) and ``manifest.csv`` listing the whole pool (one row per slice
of a volume, ``slice_index`` column) with the mask column filled for the annotated images: the
manifest ``xssr train`` and ``xssr run`` take as ``--pool ROUND/manifest.csv#paths=any`` (its image
paths are the pool's own, outside the round folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from xssr.data import ImageRecord, InputError
from xssr.data.readers import file_stem, is_supported, read_image, read_volume, take_slice, to_mask
from xssr.exchange.nnunet import case_identifiers
from xssr.report.io import write_csv

MANIFEST_COLUMNS = ("image", "mask", "site", "case_id", "split", "slice_index")


def masks_from_folder(folder: str | Path, selected: Sequence[ImageRecord]) -> dict[str, tuple[np.ndarray, str]]:
    """Read the mask files of ``folder`` whose name (without suffix) is a selected image's file
    name or case id; returns ``{record key: (mask, file)}``. Files matching no selected image are
    returned under their own path as key, so that the check names them.

    A selected slice of a volume takes its mask from a mask volume named like the image volume
    (as 3D Slicer saves a segmentation: the selected slices drawn, the others left empty), or from
    a 2-D file named by the slice's case id (``case7_s12.png``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of mask files")
    by_name: dict[str, list[ImageRecord]] = {}
    for record in selected:
        by_name.setdefault(file_stem(record.image), []).append(record)  # an image, or each selected slice of a volume
        if record.case_id and record.case_id != file_stem(record.image):
            by_name.setdefault(record.case_id, []).append(record)
    found: dict[str, tuple[np.ndarray, str]] = {}
    problems = []
    # dot-files are a file manager's litter (macOS writes ._case1.png beside case1.png), never masks
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_supported(p) and not p.name.startswith(".")):
        records = by_name.get(file_stem(path), [])
        if not records:  # named in the check as a mask of no selected image
            found[str(path)] = (np.zeros((0, 0), np.uint8), str(path))
            continue
        try:
            stack = read_volume(path)
            if len({r.image for r in records}) > 1:
                raise ValueError(f"its name matches several selected images ({', '.join(r.label for r in records[:3])}); "
                                 "rename it after the one it belongs to")
            if len(stack) == 1 and len(records) > 1:
                raise ValueError(f"a 2-D mask, but {len(records)} slices of this volume were selected: give a mask "
                                 "volume, or one 2-D mask per slice named by its case id (e.g. "
                                 f"{records[0].case_id}.png)")
            for record in records:
                if record.key in found:
                    problems.append((str(path), f"a second mask for {record.label} (the first is {found[record.key][1]})"))
                elif len(stack) == 1:  # the 2-D mask of this image or slice
                    found[record.key] = (to_mask(stack[0], path), str(path))
                else:  # a mask volume: the selected slice of it
                    found[record.key] = (to_mask(take_slice(stack, path, record.slice_index), path),
                                         f"{path} [slice {record.slice_index}]")
        except ValueError as error:
            problems.append((str(path), str(error)))
    if problems:
        raise InputError(problems)
    return found


def check_masks(selected: Sequence[ImageRecord], masks: Mapping[str, tuple[np.ndarray | None, str]], *,
                allow_empty: bool = False) -> dict[str, np.ndarray]:
    """The checked binary {0, 1} mask of every selected image, by record key; raises InputError
    listing every problem. A mask of None is one a tool exported as "nothing drawn" without its
    size (an unannotated CVAT frame, a Label Studio annotation without regions): empty, at the
    image's size, and so accepted only with ``allow_empty``."""
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
        if mask is None:
            if not allow_empty:
                problems.append((source, f"nothing was drawn on {record.label} (annotate it, or pass allow_empty / "
                                         "--allow-empty if the image truly shows no foreground)"))
                continue
            mask = np.zeros((height, width), np.uint8)
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


def check_round_folder(out: str | Path) -> Path:
    """``out`` as a Path, if it can take a new round (checked before any mask is read)."""
    out = Path(out)
    if (out / "manifest.csv").exists() or (out / "masks").exists():
        raise ValueError(f"{out}: already holds imported masks; give each round its own folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a folder for the round")
    return out


def write_round(out: str | Path, pool: Sequence[ImageRecord], selected: Sequence[ImageRecord],
                masks: Mapping[str, np.ndarray]) -> Path:
    """Write ``out/masks/`` and ``out/manifest.csv`` (the whole pool, masks filled for the
    annotated images); returns the manifest path. Refuses a folder that already holds a round."""
    from PIL import Image

    out = check_round_folder(out)
    manifest = out / "manifest.csv"
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".masks.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    files = {}
    try:
        for case, record in zip(case_identifiers(selected), selected):
            if record.slice_index is None:
                files[record.key] = out / "masks" / f"{case}.png"
                Image.fromarray(masks[record.key] * np.uint8(255)).save(partial / f"{case}.png")
        files.update(_write_mask_volumes([r for r in selected if r.slice_index is not None], masks, partial,
                                         out / "masks"))
        os.replace(partial, out / "masks")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    rows = []
    for record in pool:
        mask = files.get(record.key, record.mask)
        rows.append({"image": str(record.image), "mask": str(mask) if mask else "", "site": record.site,
                     "case_id": record.case_id, "split": record.split,
                     "slice_index": "" if record.slice_index is None else record.slice_index})
    return write_csv(manifest, rows, MANIFEST_COLUMNS)


def _write_mask_volumes(slices: Sequence[ImageRecord], masks: Mapping[str, np.ndarray], folder: Path,
                        final: Path) -> dict[str, Path]:
    """One NIfTI mask volume per image volume with annotated slices (those slices drawn, the others
    0, slices along the last axis as xssr reads them; the image's affine when it is NIfTI), so
    the manifest lists each annotated slice with its volume's mask; ``{record key: final path}``."""
    import nibabel as nib

    from xssr.data.readers import NIFTI_SUFFIXES, count_slices, file_suffix

    by_volume: dict[Path, list[ImageRecord]] = {}
    for record in slices:
        by_volume.setdefault(record.image, []).append(record)
    names = case_identifiers([ImageRecord(image=image, case_id=file_stem(image)) for image in by_volume])
    files = {}
    for name, (image, records) in zip(names, by_volume.items()):
        height, width = masks[records[0].key].shape
        volume = np.zeros((height, width, count_slices(image)), np.uint8)
        for record in records:
            volume[:, :, record.slice_index] = masks[record.key]
        affine = nib.load(str(image)).affine if file_suffix(image) in NIFTI_SUFFIXES else np.eye(4)
        nib.save(nib.Nifti1Image(volume, affine), str(folder / f"{name}.nii.gz"))
        files.update({record.key: final / f"{name}.nii.gz" for record in records})
    return files
