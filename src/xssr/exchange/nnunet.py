"""Annotated images as an nnU-Net v2 raw dataset, for teams that train with nnU-Net elsewhere.

Layout (nnU-Net v2's dataset format)::

    DatasetXXX_Name/
      dataset.json        channel_names, labels {"background": 0, LABEL: 1}, numTraining, file_ending
      imagesTr/CASE_0000.png   (or .nii.gz)
      labelsTr/CASE.png        (or .nii.gz), values 0 and 1
      xssr_cases.csv      which xssr image (file, slice, site) each case is

Written by hand: nnU-Net itself is a training framework with heavy pins (and a torchvision
that does not import here), and the layout is a few files. The file format is one per dataset,
as nnU-Net requires: 2-D raster files (PNG, JPEG, TIFF, BMP) with whole-number pixel values are
written as lossless PNG (nnU-Net's NaturalImage2DIO; an RGB image stays one file with channels
R, G, B); anything else (NIfTI or DICOM slices, float pixels) as NIfTI with one slice, the
"pseudo-3D" form nnU-Net's 2-D configuration reads. Images keep their own size and values.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from xssr.data import ImageRecord, InputError
from xssr.data.readers import file_suffix, read_image, read_mask
from xssr.exchange.binary import check_label
from xssr.report.io import write_csv, write_json

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def case_identifiers(records: Sequence[ImageRecord]) -> list[str]:
    """One nnU-Net case name per record: its case id (or file stem), slice, made unique."""
    names, seen = [], set()
    for record in records:
        base = re.sub(r"[^A-Za-z0-9-]+", "-", record.case_id or Path(record.image).stem).strip("-") or "case"
        if record.slice_index is not None:
            base += f"-s{record.slice_index}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        names.append(name)
    return names


def _as_png_pixels(image: np.ndarray, record: ImageRecord) -> np.ndarray | None:
    """The image as uint8/uint16 when it is a raster file with whole-number values, else None."""
    if file_suffix(record.image) not in RASTER_SUFFIXES or not np.all(np.equal(np.mod(image, 1), 0)):
        return None
    if image.min() < 0 or image.max() > 65535:
        return None
    return image.astype(np.uint8 if image.max() <= 255 else np.uint16)


def export_nnunet(records: Sequence[ImageRecord], root: str | Path, *, dataset_id: int, name: str,
                  label: str = "foreground") -> Path:
    """Write ``records`` (each with its mask) as ``root/DatasetXXX_name``; returns that folder.

    Every record is read and checked before anything is written (a missing mask, an unreadable
    file, a mask of another size: all listed at once); the dataset appears under its final name
    only once complete.
    """
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1 to 999, got {dataset_id}")
    if not _NAME.match(name):
        raise ValueError(f"nnU-Net dataset name {name!r}: use letters, digits, '-' and '_' only")
    if not records:
        raise ValueError("No annotated images to export.")
    label = check_label(label)
    target = Path(root) / f"Dataset{int(dataset_id):03d}_{name}"
    if target.exists():
        raise ValueError(f"{target}: already exists; choose another dataset id or name, or remove it")

    problems, pairs = [], []
    for record in records:
        if record.mask is None or not Path(record.mask).is_file():
            problems.append((record.label, "has no mask to export" + (f" ({record.mask} does not exist)"
                                                                      if record.mask else "")))
            continue
        try:
            image = read_image(record.image, record.slice_index)
            mask = read_mask(record.mask, record.slice_index)
        except ValueError as error:
            problems.append((record.label, str(error)))
            continue
        if mask.shape != image.shape[:2]:
            problems.append((str(record.mask), f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                                               f"{image.shape[1]}x{image.shape[0]}"))
            continue
        pairs.append((image, (mask > 0).astype(np.uint8)))
    if problems:
        raise InputError(problems)

    png = [_as_png_pixels(image, record) for (image, _), record in zip(pairs, records)]
    as_png = all(p is not None for p in png)
    rgb = any(image.ndim == 3 for image, _ in pairs)
    if rgb and not as_png:
        first = next(r for p, r in zip(png, records) if p is None)
        raise ValueError(f"{first.label}: not a whole-number raster image, in a dataset with colour images; "
                         "nnU-Net needs one file layout for all cases, and colour is written as PNG only")
    if rgb:  # Pillow writes RGB PNGs of 8 bits only
        deep = [r for p, r in zip(png, records) if p.dtype != np.uint8]
        if deep:
            raise ValueError(f"{deep[0].label}: a 16-bit image in a dataset with colour images; nnU-Net reads "
                             "one channel layout for all cases, so convert it to 8 bits or export the "
                             "colour and the grey images as two datasets")
    ending = ".png" if as_png else ".nii.gz"
    cases = case_identifiers(records)

    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "imagesTr").mkdir(parents=True)
    (partial / "labelsTr").mkdir()
    try:
        for case, (image, mask), pixels in zip(cases, pairs, png):
            if as_png:
                from PIL import Image

                if rgb and pixels.ndim == 2:  # one dataset, one channel layout
                    pixels = np.repeat(pixels[..., None], 3, axis=-1)
                Image.fromarray(pixels).save(partial / "imagesTr" / f"{case}_0000.png")
                Image.fromarray(mask).save(partial / "labelsTr" / f"{case}.png")
            else:
                import nibabel as nib

                nib.save(nib.Nifti1Image(image[..., None].astype(np.float32), np.eye(4)),
                         partial / "imagesTr" / f"{case}_0000.nii.gz")
                nib.save(nib.Nifti1Image(mask[..., None], np.eye(4)), partial / "labelsTr" / f"{case}.nii.gz")
        write_json(partial / "dataset.json", {
            "channel_names": {"0": "R", "1": "G", "2": "B"} if rgb else {"0": "image"},
            "labels": {"background": 0, label: 1},
            "numTraining": len(cases),
            "file_ending": ending,
            "name": name,
            "description": "Annotated images exported by xssr; xssr_cases.csv names each case's source image.",
        })
        write_csv(partial / "xssr_cases.csv", [
            {"case": case, "image": str(r.image), "slice_index": r.slice_index, "mask": str(r.mask),
             "site": r.site, "case_id": r.case_id} for case, r in zip(cases, records)])
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target
