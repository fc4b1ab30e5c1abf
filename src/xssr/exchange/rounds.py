"""A run's selection out to a labelling tool or nnU-Net, and the finished masks back in as a round.

A *run folder* (what ``xssr select`` / ``xssr run`` wrote) holds ``config.json`` and
``select/<method>/selection.csv``; together they name the pool and the chosen images. A *round
folder* holds what came back: ``masks/`` and ``manifest.csv`` (xssr.exchange.masks_in).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from xssr.config import RunConfig, from_dict
from xssr.data import ImageRecord, load_records
from xssr.data.names import read_named_rows


def run_selection(run: str | Path, method: str) -> tuple[RunConfig, list[ImageRecord], list[ImageRecord]]:
    """(configuration, pool records, selected records in rank order) of ``method`` in ``run``."""
    run = Path(run)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{run}: not an xssr run folder (no config.json); give the --out folder of xssr select or run")
    selection = run / "select" / method / "selection.csv"
    if not selection.is_file():
        made = sorted(p.parent.name for p in (run / "select").glob("*/selection.csv"))
        raise ValueError(f"{selection}: no selection by {method!r} in this run"
                         + (f"; it has: {', '.join(made)}" if made else ""))
    try:
        config = from_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{config_path}: {error}") from None
    d = config.data
    pool = load_records(d.pool, data_root=d.data_root)
    by_key = {r.key: r for r in pool}
    rows = read_named_rows(selection)
    if rows and "key" not in rows[0]:
        raise ValueError(f"{selection}: no 'key' column; this is not a selection.csv that xssr wrote")
    missing = [row["key"] for row in rows if row["key"] not in by_key]
    if missing:
        raise ValueError(f"{selection}: {len(missing)} selected image(s) are no longer in the pool "
                         f"{d.pool!r} (first: {missing[0]}); the pool changed since this selection")
    return config, pool, [by_key[row["key"]] for row in rows]


def export_stem(record: ImageRecord) -> str:
    """The name, without extension, a selected image has in a 2-D tool: its file's, or for a volume
    slice that of the PNG it is exported as (``case7_s12`` for slice 12 of ``case7.nii.gz``)."""
    from xssr.data.readers import file_stem

    return file_stem(record.image) + (f"_s{record.slice_index}" if record.slice_index is not None else "")


#: Image files a browser (and so Label Studio and CVAT) shows as they are, if 8-bit.
BROWSER_SUFFIXES = (".png", ".jpg", ".jpeg")


def write_display_images(selected: list[ImageRecord], folder: Path) -> dict[str, Path]:
    """Label Studio and CVAT show what a browser shows: 8-bit PNG and JPEG files. Every other
    selected image (a slice of a CT or MR volume, a DICOM or TIFF file, a 16-bit PNG) is written to
    ``folder`` as an 8-bit PNG named ``export_stem(record)``, windowed to its own 0.5-99.5
    intensity percentiles (CT in HU and MR alike), in the orientation and size xssr reads it, so
    the masks drawn on it come back in that shape. Returns ``{record key: PNG path}`` for those.

    Two selected images that the tools would call by the same name (they match masks to images by
    file name without extension) are refused before anything is written."""
    import io

    from PIL import Image

    from xssr.data.readers import read_image
    from xssr.report.io import write_bytes
    from xssr.report.pictures import display_uint8

    names: dict[str, ImageRecord] = {}
    for record in selected:
        other = names.setdefault(export_stem(record), record)
        if other is not record:
            raise ValueError(f"{record.label} and {other.label} would both be called {export_stem(record)} in the "
                             "labelling tool, which matches masks to images by name; give the files distinct names")
    files = {}
    for record in (r for r in selected if not _browser_shows(r)):
        image = np.asarray(read_image(record.image, record.slice_index))
        if image.ndim == 3 and (record.slice_index is not None or image.shape[-1] != 3):
            image = image[..., 0]  # one channel of a volume slice; colour stays colour
        buffer = io.BytesIO()
        Image.fromarray(display_uint8(image)).save(buffer, format="PNG")
        files[record.key] = write_bytes(folder / f"{export_stem(record)}.png", buffer.getvalue())
    return files


def _browser_shows(record: ImageRecord) -> bool:
    from PIL import Image

    from xssr.data.readers import file_suffix

    if record.slice_index is not None or file_suffix(record.image) not in BROWSER_SUFFIXES:
        return False
    try:
        with Image.open(record.image) as image:
            return image.mode in ("1", "L", "LA", "P", "RGB", "RGBA")  # 8 bits a channel
    except OSError:
        return False  # read_image names the problem when the PNG is written


def predicted_masks(records: list[ImageRecord], checkpoint: str | Path, config: RunConfig) -> dict[str, np.ndarray]:
    """Binary masks of ``records`` at each image's own size, predicted by an xssr U-Net checkpoint
    (for pre-annotations that annotators correct instead of drawing from scratch)."""
    import torch
    from PIL import Image

    from xssr.data.preprocess import prepare_image
    from xssr.data.readers import read_image
    from xssr.pipeline import resolve_device
    from xssr.train import load_unet, segment_images

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        first = next(iter(state.values()))
        channels = first.shape[1] if first.ndim == 4 else 1
        model = load_unet(state, channels, config.train)
    except OSError:
        raise
    except Exception as error:  # an unpickling, key or shape error all mean: not this U-Net's weights
        raise ValueError(f"{checkpoint}: not the state dict of an xssr U-Net trained with this run's settings "
                         f"(give a run's train/<method>/unet.pt): {type(error).__name__}: {error}") from None
    out = {}
    for record in records:
        raw = read_image(record.image, record.slice_index)
        image = prepare_image(raw, config.data.image_size, channels, config.data.normalize)[None]
        mask = segment_images(model, image, config.train, device=resolve_device(config.device))[0, 0]
        height, width = raw.shape[:2]
        out[record.key] = np.asarray(Image.fromarray(mask * np.uint8(255)).resize((width, height), Image.NEAREST)) > 0
    return out


def selection_rows(selected: list[ImageRecord]) -> list[dict[str, Any]]:
    return [{"rank": i + 1, "key": r.key, "image": str(r.image), "case_id": r.case_id, "site": r.site}
            for i, r in enumerate(selected)]


def export_label_studio(run: str | Path, method: str, out: str | Path, *, image_url_prefix: str = "",
                        model: str | Path | None = None, label: str = "foreground") -> Path:
    """Write Label Studio tasks for the selection (``out``, JSON) and ``<out>.labeling.xml``.

    Each task's image is ``image_url_prefix + path`` (Label Studio's local-files storage, for
    one, serves ``/data/local-files/?d=<path relative to its document root>``: give that prefix and
    paths are made relative to ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` when it is set). Selected
    volume slices and images a browser cannot show (DICOM, TIFF, 16-bit) are written as 8-bit PNGs to
    ``<out minus suffix>.images/`` and the tasks show those.
    """
    import os
    from urllib.parse import quote

    from xssr.exchange.binary import check_label
    from xssr.exchange.label_studio import labeling_config, tasks_for_selection
    from xssr.report.io import write_json, write_text

    label = check_label(label)
    out = Path(out).resolve()  # the tasks name files by absolute path, wherever Label Studio runs
    config, _, selected = run_selection(run, method)
    predictions = predicted_masks(selected, model, config) if model else None
    display_files = write_display_images(selected, out.with_suffix(".images"))
    root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    root = Path(root).resolve() if root else None

    def image_url(path: str) -> str:
        if not image_url_prefix:
            return path
        if root and Path(path).is_relative_to(root):
            path = Path(path).relative_to(root).as_posix()
        return image_url_prefix + quote(path)  # a '+', '&', '#' or space in a name must survive the URL

    rows = [{**row, "image": str(display_files.get(row["key"], row["image"]))} for row in selection_rows(selected)]
    if predictions is not None:
        predictions = {k: v.astype(np.uint8) for k, v in predictions.items()}
    tasks = tasks_for_selection(rows, image_url, predictions=predictions, label=label)
    write_json(out, tasks)
    write_text(out.with_suffix(".labeling.xml"), labeling_config(label))
    return out


def export_cvat(run: str | Path, method: str, out: str | Path, *, model: str | Path | None = None,
                label: str = "foreground") -> Path:
    """For a CVAT task of the selected images: ``out`` lists their paths (make the task from these
    files, in this order), and with ``model`` ``<out>.masks.zip`` holds its predicted masks as a
    "Segmentation mask 1.1" archive to upload as the task's annotations (pre-annotations). Selected
    volume slices and images a browser cannot show are listed as the 8-bit PNGs written to
    ``<out minus suffix>.images/``."""
    from xssr.exchange.binary import check_label
    from xssr.exchange.cvat import cvat_task_manifest, export_cvat_masks

    label = check_label(label)
    out = Path(out)
    config, _, selected = run_selection(run, method)
    predictions = predicted_masks(selected, model, config) if model else None
    display_files = write_display_images(selected, out.with_suffix(".images"))
    images = [display_files.get(r.key, r.image) for r in selected]
    path = cvat_task_manifest(images, out)
    if predictions is not None:
        export_cvat_masks([(image.name, predictions[r.key]) for r, image in zip(selected, images)],
                          out.with_suffix(".masks.zip"), label=label)
    return path


def export_nnunet_round(run: str | Path, method: str, out: str | Path, *, round: str | Path | None = None,
                        dataset_id: int = 501, name: str = "xssr", label: str = "foreground") -> Path:
    """The selected images with their masks (from the round folder, else the pool's) for nnU-Net."""
    from xssr.exchange.nnunet import export_nnunet

    _, _, selected = run_selection(run, method)
    if round is not None:
        manifest = Path(round) / "manifest.csv"
        if not manifest.is_file():
            raise ValueError(f"{round}: no manifest.csv; import the masks first (xssr import)")
        with_masks = {r.key: r for r in load_records(f"{manifest}#paths=any")}
        selected = [with_masks.get(r.key, r) for r in selected]
    return export_nnunet(selected, out, dataset_id=dataset_id, name=name, label=label)


def import_round(run: str | Path, method: str, source: str, path: str | Path, out: str | Path, *,
                 allow_empty: bool = False, label: str | None = None) -> Path:
    from xssr.exchange.masks_in import check_masks, check_round_folder, masks_from_folder, write_round

    if source not in ("label-studio", "cvat", "folder"):
        raise ValueError(f"Unknown mask source {source!r}; valid: label-studio, cvat, folder.")
    out = check_round_folder(out)
    _, pool, selected = run_selection(run, method)
    if source == "folder":
        found = masks_from_folder(path, selected)
    elif source == "cvat":
        from xssr.exchange.cvat import read_cvat_masks

        # CVAT calls a frame by its uploaded file's name (export_stem; the export refused two
        # selected images with one name), inside any folder the files were uploaded in
        by_stem = {export_stem(r): r for r in selected}
        found = {}
        for item, mask in read_cvat_masks(path, label=label).items():
            record = by_stem.get(Path(item).name)
            if record is None and mask is None:
                continue  # a frame of the task outside this selection that nobody annotated
            key = record.key if record else f"{path}: {item}"
            if key in found:
                raise ValueError(f"{path}: items {found[key][1]} and {item} are both {record.label}; "
                                 "import one task's export at a time")
            found[key] = (mask, f"{path} ({item})")
    elif source == "label-studio":
        from xssr.exchange.label_studio import read_label_studio_export

        found = {key: (mask, f"{path} ({key})") for key, mask in read_label_studio_export(path, label=label).items()}
    return write_round(out, pool, selected, check_masks(selected, found, allow_empty=allow_empty))
