"""CVAT: the model's masks go out as pre-annotations and the masks people drew come back, both in
CVAT's "Segmentation mask 1.1" format, so a team can label in CVAT (the open-source Computer Vision
Annotation Tool) without any CVAT or Datumaro package installed (only numpy and Pillow are needed).

"Segmentation mask 1.1" is the Pascal VOC segmentation layout that CVAT writes with Datumaro's
``voc_segmentation`` exporter and reads back with Datumaro's ``voc`` importer. A zip archive holds:

* ``labelmap.txt``: a comment line ``# label:color_rgb:parts:actions``, then one line per label,
  ``name:r,g,b:parts:actions`` (exactly four ``:``-separated fields; parts and actions are empty
  for segmentation). The background label is the one coloured 0,0,0 (else the one named
  ``background``). CVAT writes every label of the task, background first;
* ``ImageSets/Segmentation/<subset>.txt``: one item id per line, where an item id is the image's
  path in the task without its extension (``default.txt`` for a task without subsets). CVAT lists
  the task's images there, those without annotations too;
* ``SegmentationClass/<item id>.png``: an RGB PNG in which each pixel has its label's colour,
  written only for images with at least one mask;
* ``SegmentationObject/<item id>.png``: the same pixels coloured by instance, instance ``k`` in
  colour ``k`` of the Pascal VOC colormap (so 0,0,0 is no instance and 128,0,0 the first one).

Two details matter for the import into CVAT. An item id is matched to a task frame by the frame's
path without extension, so ``SegmentationClass/case12.png`` annotates the frame uploaded as
``case12.png`` (or ``case12.jpg``). And when ``SegmentationObject`` is present the importer makes
one mask annotation per instance, labelled from the class mask; without it, it falls back to one
mask per class colour, background included, which would put a "background" mask on every frame.
So the export writes both folders.

What the format allows beyond what the VOC layout above suggests, and this module follows: a
class mask may also be an 8-bit one-channel PNG whose values are label indices in labelmap.txt
order (Datumaro reads a one-channel mask that way), and a labelmap without any colours gets the
Pascal VOC colormap by label index. labelmap.txt itself is optional in the format (Datumaro then
assumes the 21 Pascal VOC classes), but no medical label is one of those, so it is required here.
"""

from __future__ import annotations

import io
import os
import posixpath
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from xssr.exchange.binary import binary_mask, check_label
from xssr.report.io import atomic_path, write_text

LABELMAP = "labelmap.txt"
SUBSET_LIST = "ImageSets/Segmentation/default.txt"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
LABELMAP_HEADER = "# label:color_rgb:parts:actions"
BACKGROUND = "background"
BACKGROUND_COLOR = (0, 0, 0)
# Fixed timestamp for every zip entry, so the same masks always give the same archive bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

Color = tuple[int, int, int]


def voc_color(index: int) -> Color:
    """Colour ``index`` of the Pascal VOC colormap: the bits of the index are dealt out to red,
    green and blue in turn, most significant colour bit first. CVAT colours instances this way in
    SegmentationObject, and labels this way when labelmap.txt gives them no colour."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= (index & 1) << shift
        green |= ((index >> 1) & 1) << shift
        blue |= ((index >> 2) & 1) << shift
        index >>= 3
    return red, green, blue


FIRST_INSTANCE_COLOR = voc_color(1)  # (128, 0, 0)


# ----------------------------------------------------------------------------- export


def export_cvat_masks(items: Sequence[tuple[str, np.ndarray]], out_zip: str | os.PathLike, *,
                      label: str = "foreground", color: Sequence[int] = (250, 50, 83)) -> Path:
    """Write masks as a CVAT "Segmentation mask 1.1" zip, to upload into a task as annotations.

    ``items`` is a list of ``(image_name, mask)``: ``image_name`` is the image's path as the CVAT
    task knows it (for files uploaded one by one, the file name, e.g. ``"case12.png"``), because
    CVAT matches each mask to the frame whose path without extension is the same; ``mask`` is a
    (H, W) bool, {0, 1} or {0, 255} array at the image's own size (CVAT cannot check the size, so
    it is the caller's to get right). Anything else, such as a probability map, is refused rather
    than thresholded.

    The task must have a label called ``label``: CVAT attaches each mask to the task label of that
    name, whatever colour the task gives it (``color`` only ties the PNGs to labelmap.txt). The
    whole foreground of a mask becomes one instance, which CVAT shows as one mask annotation that
    annotators correct. An all-zero mask is written too (all black): CVAT imports no annotation
    for it, and reading the archive back still gives the image's size.

    Everything is checked before anything is written, and the zip appears complete or not at all.
    Returns the path of the zip.
    """
    out_zip = Path(out_zip)
    where = str(out_zip)
    label = _check_label(label, where)
    color = _check_color(color, where)
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(f"{where}: items must be a list of (image name, mask) pairs, got {type(items).__name__}")
    if not items:
        raise ValueError(f"{where}: no items to export")

    prepared = []  # (item id, bool mask)
    owner: dict[str, str] = {}
    for number, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{where}: item {number} is not an (image name, mask) pair")
        name, mask = item
        item_id = _item_id(name, f"{where}: item {number}")
        if item_id in owner:
            raise ValueError(f"{where}: {owner[item_id]} and {name} both become CVAT item '{item_id}' (CVAT "
                             "matches frames by name without extension); give each image its own name")
        owner[item_id] = name
        try:
            painted = binary_mask(mask)
        except ValueError as error:
            raise ValueError(f"{where}: {name}: {error}") from None
        prepared.append((item_id, painted))

    labelmap = "\n".join([LABELMAP_HEADER, _labelmap_line(BACKGROUND, BACKGROUND_COLOR),
                          _labelmap_line(label, color), ""])
    subset = "".join(f"{item_id}\n" for item_id, _ in prepared)
    with atomic_path(out_zip) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            _add(archive, LABELMAP, labelmap.encode("utf-8"))
            _add(archive, SUBSET_LIST, subset.encode("utf-8"))
            for item_id, painted in prepared:
                _add(archive, f"{CLASS_DIR}/{item_id}.png", _paint(painted, color))
                _add(archive, f"{OBJECT_DIR}/{item_id}.png", _paint(painted, FIRST_INSTANCE_COLOR))
    return out_zip


def cvat_task_manifest(image_paths: Sequence[str | os.PathLike], out_txt: str | os.PathLike) -> Path:
    """Write the image paths, one per line in the order given (xssr's rank order), to ``out_txt``.

    The list says exactly which files to upload when creating the CVAT task for this round, e.g.
    by selecting them in CVAT's task form, or by passing them as the local files of CVAT's command
    line client or SDK. Names matter twice: CVAT calls a frame by the uploaded file's name, and the
    pre-annotation archive and CVAT's export name each mask after that frame name without its
    extension. So pass ``Path(p).name`` of these paths as the image names of
    :func:`export_cvat_masks`, and expect :func:`read_cvat_masks` to return those names without
    extension as keys. For that reason two paths with the same file name are refused (uploaded
    together they could not be told apart); copy or rename them first.

    CVAT orders a task's frames by its "sorting method" (lexicographical by default); this order
    never affects which mask goes with which image. To annotate in rank order choose "Predefined"
    (for uploaded files CVAT then wants its own manifest.jsonl among them) or rank-prefixed file
    names.
    """
    where = str(out_txt)
    if isinstance(image_paths, (str, bytes)) or not isinstance(image_paths, Sequence):
        raise ValueError(f"{where}: image_paths must be a list of paths, got {type(image_paths).__name__}")
    if not image_paths:
        raise ValueError(f"{where}: no image paths to list")
    lines: list[str] = []
    by_name: dict[str, str] = {}
    for number, path in enumerate(image_paths):
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"{where}: path {number} is a {type(path).__name__}, not a path")
        text = os.fspath(path)
        if not text.strip() or "\n" in text or "\r" in text:
            raise ValueError(f"{where}: path {number} ({text!r}) is empty or holds a line break, "
                             "which a one-path-per-line list cannot hold")
        name = Path(text).name
        if name in by_name:
            raise ValueError(f"{where}: {by_name[name]} and {text} have the same file name {name!r}; CVAT would "
                             "not tell them apart, so copy or rename one before creating the task")
        by_name[name] = text
        lines.append(text)
    return write_text(out_txt, "".join(f"{line}\n" for line in lines))


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    """One zip entry with a fixed timestamp and ordinary file permissions."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _paint(painted: np.ndarray, color: Color) -> bytes:
    """An RGB PNG: ``color`` where the mask is set, black elsewhere."""
    rgb = np.zeros((*painted.shape, 3), dtype=np.uint8)
    rgb[painted] = color
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _labelmap_line(name: str, color: Color) -> str:
    return f"{name}:{','.join(str(c) for c in color)}::"


def _item_id(name: object, where: str) -> str:
    """The CVAT item id of an image name: its path without extension, checked to be one that the
    subset list (one stripped line per id) and the zip (``/``-separated entries) can hold."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: image name must be a non-empty string, got {name!r}")
    if name != name.strip() or "\n" in name or "\r" in name:
        raise ValueError(f"{where}: image name {name!r} starts or ends with white space or holds a line "
                         "break; ImageSets lists one stripped name per line, so CVAT would read another name")
    if "\\" in name or name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"{where}: image name {name!r} must be a relative path with '/' between folders, "
                         "as the CVAT task shows it")
    if posixpath.basename(name).startswith("."):
        raise ValueError(f"{where}: image name {name!r} is a hidden file's name; readers of the archive "
                         "(this module's too) skip such files as litter from file managers")
    return posixpath.splitext(name)[0]


def _check_label(label: object, where: str) -> str:
    try:
        return check_label(label)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _check_color(color: object, where: str) -> Color:
    values = list(color) if isinstance(color, (tuple, list, np.ndarray)) else None
    if (values is None or len(values) != 3
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
                       for v in values)):
        raise ValueError(f"{where}: color must be three integers 0-255 (r, g, b), got {color!r}")
    rgb = (int(values[0]), int(values[1]), int(values[2]))
    if rgb == BACKGROUND_COLOR:
        raise ValueError(f"{where}: color (0, 0, 0) is the background's; choose another colour for the label")
    return rgb


# ----------------------------------------------------------------------------- export in


def read_cvat_masks(path: str | os.PathLike, *, label: str | None = None) -> dict[str, np.ndarray | None]:
    """Masks from a CVAT "Segmentation mask 1.1" export: {item id: (H, W) uint8 in {0, 1}}.

    ``path`` is the exported zip, or the folder it was unzipped to (also accepted: the same inside
    one top-level folder, as zipping a folder by hand makes it). The item id is the image's name
    in the task without extension (``case12`` for ``case12.png``; ``scans/case12`` for an image
    uploaded inside a folder). The mask is the pixels in ``label``'s colour; without ``label`` the
    labelmap must have exactly one label besides the background, and that one is read.

    CVAT lists every image of the task in ImageSets but writes a SegmentationClass PNG only for
    images someone annotated. An image listed without its PNG comes back as None: the archive does
    not record its size, and the caller knows best whether "not annotated" means "no foreground".
    Every SegmentationClass PNG is read, listed or not. Anything not as the format says (no
    labelmap.txt, a malformed labelmap line, an unknown label, a pixel colour the labelmap lacks,
    an image that is not an RGB PNG) raises ValueError naming the file, the entry inside it and
    the reason.
    """
    with _Export.open(path) as export:
        labelmap_entry = export.root + LABELMAP
        labels = _parse_labelmap(export.read(labelmap_entry), f"{export.name}: {labelmap_entry}")
        chosen = _choose_label(labels, label, f"{export.name}: {labelmap_entry}")
        names = [name for name, _ in labels]
        colors = {color: name for name, color in labels if color is not None}
        target = labels[names.index(chosen)][1]

        prefix = f"{export.root}{CLASS_DIR}/"
        masks: dict[str, np.ndarray | None] = {}
        for entry in export.entries:
            if not entry.startswith(prefix) or not entry.endswith(".png"):
                continue
            if posixpath.basename(entry).startswith("."):
                continue  # hidden files a file manager or macOS zip adds, not masks
            where = f"{export.name}: {entry}"
            item_id = entry[len(prefix):-len(".png")]
            masks[item_id] = _class_mask(export.read(entry), where, names, colors, target, chosen)
        for item_id in _listed_items(export):
            masks.setdefault(item_id, None)  # listed, never annotated: no PNG, so no size either
    return masks


def _listed_items(export: "_Export") -> list[str]:
    """The item ids of the subset lists (``ImageSets/Segmentation/*.txt``), one stripped id a line."""
    folder = f"{export.root}{posixpath.dirname(SUBSET_LIST)}/"
    items = []
    for entry in export.entries:
        if entry.startswith(folder) and entry.endswith(".txt") and "/" not in entry[len(folder):]:
            try:
                text = export.read(entry).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{export.name}: {entry}: not UTF-8 text, so not a subset list") from None
            items += [line.strip() for line in text.splitlines() if line.strip()]
    return items


def _choose_label(labels: list[tuple[str, Color | None]], label: str | None, where: str) -> str:
    """The label to read: ``label`` when given, else the one label besides the background."""
    names = [name for name, _ in labels]
    background = _background(labels)
    if label is None:
        candidates = [name for name in names if name != background]
        if not candidates:
            raise ValueError(f"{where}: lists no label besides the background {background!r}")
        if len(candidates) > 1:
            raise ValueError(f"{where}: lists several labels ({', '.join(candidates)}); say which to read "
                             "with label=")
        label = candidates[0]
    elif label not in names:
        raise ValueError(f"{where}: label {label!r} is not in labelmap.txt (its labels: {', '.join(names)})")
    if labels[names.index(label)][1] is None:
        raise ValueError(f"{where}: label {label!r} has no colour, so no mask pixel can be {label!r}")
    return label


def _background(labels: list[tuple[str, Color | None]]) -> str | None:
    """The background label as Datumaro finds it: the one coloured black, else the one named so."""
    for name, color in labels:
        if color == BACKGROUND_COLOR:
            return name
    return BACKGROUND if any(name == BACKGROUND for name, _ in labels) else None


def _parse_labelmap(data: bytes, where: str) -> list[tuple[str, Color | None]]:
    """``[(label, colour or None)]`` in file order. Blank lines and ``#`` comments are skipped; every
    other line must be ``name:color:parts:actions``. Names and colours must be unique (a shared
    colour would make a mask ambiguous). With no colour on any line, label ``i`` gets Pascal VOC
    colour ``i``, as in Datumaro."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: not UTF-8 text (byte {error.start})") from None
    labels: list[tuple[str, Color | None]] = []
    seen_name: dict[str, int] = {}
    seen_color: dict[Color, tuple[int, str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 4:
            raise ValueError(f"{where}: line {number}: expected 4 ':'-separated fields "
                             f"(label:r,g,b:parts:actions), got {len(fields)} in {line!r}")
        name, color_text = fields[0].strip(), fields[1].strip()
        if not name:
            raise ValueError(f"{where}: line {number}: the label name is empty in {line!r}")
        if name in seen_name:
            raise ValueError(f"{where}: line {number}: label {name!r} is already defined on line {seen_name[name]}")
        color = None
        if color_text:
            parts = [p.strip() for p in color_text.split(",")]
            if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
                raise ValueError(f"{where}: line {number}: colour {color_text!r} of label {name!r} is not "
                                 "r,g,b with three integers 0-255")
            color = (int(parts[0]), int(parts[1]), int(parts[2]))
            if color in seen_color:
                other_line, other = seen_color[color]
                raise ValueError(f"{where}: line {number}: label {name!r} has colour {color}, as label {other!r} "
                                 f"on line {other_line}; a mask pixel of that colour would be ambiguous")
            seen_color[color] = (number, name)
        seen_name[name] = number
        labels.append((name, color))
    if not labels:
        raise ValueError(f"{where}: lists no labels")
    if not seen_color:
        labels = [(name, voc_color(index)) for index, (name, _) in enumerate(labels)]
    return labels


def _class_mask(data: bytes, where: str, names: list[str], colors: dict[Color, str],
                target: Color, chosen: str) -> np.ndarray:
    """The (H, W) uint8 {0, 1} mask of ``chosen`` in one SegmentationClass PNG."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, mode = image.format, image.mode
            if image_format == "PNG" and mode in ("RGB", "P", "L"):
                pixels = np.asarray(image.convert("RGB") if mode == "P" else image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{where}: not a readable image ({error})") from None
    if image_format != "PNG":
        raise ValueError(f"{where}: is a {image_format} image; masks of this format are PNG files")
    if mode not in ("RGB", "P", "L"):
        raise ValueError(f"{where}: image mode {mode} is not RGB; Segmentation mask 1.1 masks are RGB PNGs "
                         "coloured as labelmap.txt says (or 8-bit one-channel PNGs of label indices)")

    if mode == "L":  # label indices in labelmap.txt order, as Datumaro reads a one-channel mask
        if pixels.size and int(pixels.max()) >= len(names):
            bad = int(pixels.max())
            raise ValueError(f"{where}: value {bad} is not the index of a label in labelmap.txt "
                             f"(it lists {len(names)}: {', '.join(names)})")
        return (pixels == names.index(chosen)).astype(np.uint8)

    codes = ((pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8)
             | pixels[..., 2].astype(np.uint32))
    known = np.array(sorted((r << 16) | (g << 8) | b for r, g, b in colors), dtype=np.uint32)
    found = np.unique(codes)
    unknown = found[~np.isin(found, known)]
    if unknown.size:
        first = int(unknown[0])
        shown = (first >> 16, (first >> 8) & 255, first & 255)
        more = f" (nor are {unknown.size - 1} other colours)" if unknown.size > 1 else ""
        raise ValueError(f"{where}: colour {shown} is not in labelmap.txt{more}")
    return (codes == ((target[0] << 16) | (target[1] << 8) | target[2])).astype(np.uint8)


class _Export:
    """The files of an export, a zip or a folder, as ``/``-separated entry names and their bytes.

    ``root`` is where labelmap.txt lies: ``""`` normally, ``"name/"`` when the whole export sits in
    one top-level folder.
    """

    def __init__(self, name: str, entries: list[str], read, close=lambda: None):
        self.name = name
        self.entries = entries
        self._read = read
        self._close = close
        self.root = self._find_root()

    @classmethod
    def open(cls, path: str | os.PathLike) -> "_Export":
        name = str(path)
        folder = Path(path)
        if folder.is_dir():
            entries = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            return cls(name, entries, lambda entry: (folder / entry).read_bytes())
        if not folder.exists():
            raise ValueError(f"{name}: no such file or folder")
        try:
            archive = zipfile.ZipFile(folder)
        except (zipfile.BadZipFile, OSError) as error:
            raise ValueError(f"{name}: not a zip archive or a folder ({error}); give CVAT's 'Segmentation "
                             "mask 1.1' export or the folder it was unzipped to") from None
        entries = [info.filename for info in archive.infolist()
                   if not info.is_dir() and not info.filename.startswith("__MACOSX/")]
        duplicated = sorted(entry for entry, count in Counter(entries).items() if count > 1)
        if duplicated:
            archive.close()
            raise ValueError(f"{name}: {duplicated[0]}: the archive holds this entry more than once")
        return cls(name, sorted(entries), archive.read, archive.close)

    def _find_root(self) -> str:
        if LABELMAP in self.entries:
            return ""
        nested = [entry[:-len(LABELMAP)] for entry in self.entries
                  if entry.endswith("/" + LABELMAP) and entry.count("/") == 1]
        if len(nested) == 1:
            return nested[0]
        self._close()
        raise ValueError(f"{self.name}: no {LABELMAP}; this reads CVAT's 'Segmentation mask 1.1' export, "
                         f"whose {LABELMAP} names each label's colour")

    def read(self, entry: str) -> bytes:
        try:
            return self._read(entry)
        # a damaged entry (zlib), an unsupported compression method or an encrypted entry
        except (zipfile.BadZipFile, OSError, KeyError, zlib.error, NotImplementedError, RuntimeError) as error:
            raise ValueError(f"{self.name}: {entry}: cannot be read ({error})") from None

    def __enter__(self) -> "_Export":
        return self

    def __exit__(self, *exc) -> None:
        self._close()
