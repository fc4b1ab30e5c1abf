"""Label Studio: the chosen images go out as tasks (with the model's masks as pre-annotations),
and the masks people drew come back from Label Studio's JSON export.

Brush masks use Label Studio's run-length code (xssr.exchange.brush_rle); polygons are vertex
lists in percent of the image size. Both are read and written here, so a team can label in Label
Studio without any Label Studio package installed (only numpy and Pillow are needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image, ImageDraw

from xssr.exchange.binary import binary_mask, check_label
from xssr.exchange.brush_rle import check_size, decode_brush_rle, encode_brush_rle

# Names that tie the labelling configuration to the task JSON: a result's from_name / to_name must
# name tags of the project's configuration, or Label Studio will not show the pre-annotation.
IMAGE_TAG = "image"
BRUSH_TAG = "tag"
POLYGON_TAG = "polygon"

# ----------------------------------------------------------------------------- polygons


def polygon_to_mask(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise a Label Studio polygon to a (height, width) uint8 mask in {0, 1}.

    Label Studio stores vertices as percent (0-100) of the image width (x) and height (y). Each
    vertex snaps to the pixel whose centre is nearest (floor of the pixel coordinate, ties to the
    right / down) and Pillow fills the polygon including its outline, so a polygon whose edges lie
    on pixel borders covers one more row and column than its area: for masks the annotator
    traced around a structure, keeping the boundary pixels is the safer error.
    """
    check_size(height, width)
    try:
        vertices = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("polygon points must be a list of [x, y] pairs of numbers") from None
    if vertices.ndim != 2 or vertices.shape[1] != 2:
        raise ValueError(f"polygon points must be [x, y] pairs, got an array of shape {vertices.shape}")
    if len(vertices) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(vertices)}")
    if not np.isfinite(vertices).all():
        raise ValueError("polygon points must be finite numbers")
    # Explicit integer vertices (rather than floats) keep the result independent of how a Pillow
    # version rounds float coordinates; the clip only guards Pillow's C ints against absurd values.
    x = np.clip(np.floor(vertices[:, 0] / 100.0 * width), -10 * width, 11 * width).astype(int)
    y = np.clip(np.floor(vertices[:, 1] / 100.0 * height), -10 * height, 11 * height).astype(int)
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(x.tolist(), y.tolist())), fill=1, outline=1)
    return np.array(canvas, dtype=np.uint8)


# ----------------------------------------------------------------------------- tasks out


def labeling_config(label: str = "foreground") -> str:
    """The labelling configuration (XML) to paste into the Label Studio project.

    Its tag names are the ones the tasks and the export reader use: the image is ``image``, brush
    regions come from ``tag`` and polygons from ``polygon``, both offering the one ``label``.
    ``zoom`` is on because brush work on medical images needs it.
    """
    value = quoteattr(check_label(label))  # quoted and escaped for an XML attribute
    return "\n".join([
        "<View>",
        f'  <Image name="{IMAGE_TAG}" value="$image" zoom="true"/>',
        f'  <BrushLabels name="{BRUSH_TAG}" toName="{IMAGE_TAG}">',
        f"    <Label value={value}/>",
        "  </BrushLabels>",
        f'  <PolygonLabels name="{POLYGON_TAG}" toName="{IMAGE_TAG}">',
        f"    <Label value={value}/>",
        "  </PolygonLabels>",
        "</View>",
        "",
    ])


def tasks_for_selection(
    rows: Sequence[Mapping[str, Any]],
    image_url: Callable[[str], str],
    *,
    predictions: Mapping[str, np.ndarray] | None = None,
    label: str = "foreground",
    model_version: str = "xssr",
) -> list[dict]:
    """Label Studio tasks (import JSON) for the rows of selection.csv, in rank order.

    Each task's data carries the image URL plus xssr's key, rank, case and site, so the export
    can be matched back to the selection and annotators can sort by rank. With ``predictions``
    (key -> binary mask at the image's own size) a task also gets the model's mask as a brush
    pre-annotation, which annotators correct instead of drawing from nothing; an empty mask gives
    a prediction with no regions. Rows without a prediction get no ``predictions`` entry.
    """
    check_label(label)
    required = ("rank", "key", "image", "case_id", "site")
    ordered = []
    for number, row in enumerate(rows, start=1):
        missing = [column for column in required if column not in row]
        if missing:
            raise ValueError(f"selection row {number}: missing column(s) {', '.join(missing)}; "
                             "pass the rows of xssr's selection.csv")
        try:
            rank = int(row["rank"])
        except (TypeError, ValueError):
            raise ValueError(f"selection row {number} ({row['key']}): rank {row['rank']!r} "
                             "is not a whole number") from None
        ordered.append((rank, number, row))
    ordered.sort(key=lambda item: item[:2])

    keys = [str(row["key"]) for _, _, row in ordered]
    seen: set[str] = set()
    repeated = sorted({key for key in keys if key in seen or seen.add(key)})
    if repeated:
        raise ValueError(f"selection rows repeat the key(s) {', '.join(repeated[:5])}; each image must be one task")
    if predictions is not None:
        unknown = sorted(set(map(str, predictions)) - seen)
        if unknown:
            raise ValueError(f"predictions for {len(unknown)} key(s) not in the selection rows, e.g. "
                             f"{', '.join(unknown[:3])}; the keys must be selection.csv's key column")

    tasks = []
    for (rank, _, row), key in zip(ordered, keys):
        url = image_url(str(row["image"]))
        if not isinstance(url, str):
            raise ValueError(f"image_url returned {type(url).__name__} for {row['image']}, expected a URL string")
        task: dict[str, Any] = {"data": {
            "image": url, "xssr_key": key, "rank": rank,
            "case_id": _plain(row["case_id"]), "site": _plain(row["site"]),
        }}
        if predictions is not None and key in predictions:
            task["predictions"] = [_prediction(predictions[key], key, rank, label, model_version)]
        tasks.append(task)
    return tasks


def _prediction(mask: np.ndarray, key: str, rank: int, label: str, model_version: str) -> dict:
    """One pre-annotation in Label Studio's documented prediction format."""
    try:
        painted = binary_mask(mask)
    except ValueError as error:
        raise ValueError(f"prediction for {key}: {error}") from None
    result = []
    if painted.any():  # Label Studio would show an empty brush region as a blank, undeletable entry
        height, width = painted.shape
        result.append({
            # Label Studio's docs ask for an id on every result item; it names the region.
            "id": f"xssr{rank}",
            "from_name": BRUSH_TAG, "to_name": IMAGE_TAG, "type": "brushlabels",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_brush_rle(painted), "brushlabels": [label]},
        })
    return {"model_version": model_version, "result": result}


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a CSV cell (numpy scalars and paths become strings)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


# ----------------------------------------------------------------------------- export in


_READ_TYPES = ("brushlabels", "polygonlabels")


def read_label_studio_export(path: str | Path, *, label: str | None = None) -> dict[str, np.ndarray | None]:
    """Masks from a Label Studio "JSON" export: {xssr key (or image URL): (H, W) uint8 in {0, 1}}.

    Per task the last annotation that was not cancelled counts (Label Studio lists annotations in
    the order they were made, so a later one is a correction); the union of its brush and polygon
    regions (only those with ``label`` when given) is the mask, at the image size the results
    record. An annotation submitted without any region, in a task where no result records the
    image size, comes back as None: an empty mask whose size is the image's. A task whose every
    annotation was cancelled (the annotator skipped it) is left out of the result. Anything else that is not as expected raises ValueError naming the file, the task
    and the reason, before a half-read set of masks can be used.
    """
    name = str(path)
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: not JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                         "export the project from Label Studio in its 'JSON' format") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{name}: expected a list of tasks (Label Studio's 'JSON' export), "
                         f"got a JSON {type(tasks).__name__}")

    masks: dict[str, np.ndarray | None] = {}
    read_from: dict[str, Any] = {}
    for position, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise ValueError(f"{name}: item {position} of the list is a {type(task).__name__}, not a task object")
        task_id = task.get("id", f"#{position}")
        data = task.get("data")
        if not isinstance(data, dict):
            raise ValueError(f"{name}: task {task_id}: no 'data' object; this reads Label Studio's 'JSON' "
                             "export, not 'JSON_MIN' or CSV")
        key = data.get("xssr_key", data.get("image"))
        if key is None:
            raise ValueError(f"{name}: task {task_id}: its data has neither 'xssr_key' nor 'image', "
                             "so it cannot be matched to an image")
        key = str(key)
        where = f"{name}: task {task_id} ({key})"
        annotation = _last_annotation(task, where)
        if annotation is None:
            continue
        mask = _annotation_mask(task, annotation, where, label)
        if key in masks:
            raise ValueError(f"{where}: task {read_from[key]} has the same key; each image must be one task "
                             "(was the selection imported into the project twice?)")
        masks[key], read_from[key] = mask, task_id
    return masks


def _last_annotation(task: dict, where: str) -> dict | None:
    """The last annotation not cancelled, None when all were cancelled; no annotations raise."""
    annotations = task.get("annotations")
    if not isinstance(annotations, list) or not annotations:
        raise ValueError(f"{where}: no annotations; annotate it in Label Studio or leave it out of the export")
    for number, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise ValueError(f"{where}: annotation {number} is a {type(annotation).__name__}, not an object")
    kept = [a for a in annotations if not a.get("was_cancelled", False)]
    return kept[-1] if kept else None


def _result_size(result: dict) -> tuple[int, int] | None:
    """(original_height, original_width) of a result, None when either is missing or not a whole number."""
    height, width = result.get("original_height"), result.get("original_width")
    whole = [v for v in (height, width)
             if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()]
    return (int(height), int(width)) if len(whole) == 2 else None


def _annotation_mask(task: dict, annotation: dict, where: str, label: str | None) -> np.ndarray | None:
    """The union of one annotation's brush and polygon regions, at the size its results record;
    None for an annotation without regions when nothing in the task records the image size."""
    annotation_id = annotation.get("id", "?")
    results = annotation.get("result", [])
    if not isinstance(results, list):
        raise ValueError(f"{where}: annotation {annotation_id}: 'result' is not a list")

    size = None
    for number, result in enumerate(results):
        kind = str(result.get("type", "")).lower() if isinstance(result, dict) else None
        if kind not in _READ_TYPES:
            raise ValueError(f"{where}: annotation {annotation_id} result {number} has type {kind!r}; only "
                             "brushlabels and polygonlabels are read (use the labelling config from "
                             "xssr's labeling_config())")
        this = _result_size(result)
        if this is None:
            raise ValueError(f"{where}: annotation {annotation_id} result {number} ({kind}) has no "
                             "whole-number original_width / original_height, so the mask size is unknown")
        if min(this) < 1:
            raise ValueError(f"{where}: annotation {annotation_id} result {number} records an image size "
                             f"of {this[0]}x{this[1]}")
        if size is not None and this != size:
            raise ValueError(f"{where}: annotation {annotation_id} results disagree on the image size "
                             f"({size[0]}x{size[1]} and {this[0]}x{this[1]})")
        size = this
    if size is None:
        size = _size_elsewhere(task)
    if size is None:
        return None  # no regions, and no size recorded: empty, at the size of the image it annotates

    mask = np.zeros(size, dtype=np.uint8)
    for result in results:
        kind = result["type"].lower()
        value = result.get("value")
        if not isinstance(value, dict):
            raise ValueError(f"{where}: annotation {annotation_id}: a {kind} result has no 'value' object")
        if label is not None and label not in value.get(kind, []):
            continue
        try:
            if kind == "brushlabels":
                if value.get("format", "rle") != "rle" or "rle" not in value:
                    raise ValueError(f"brush result holds no RLE (format {value.get('format')!r}); "
                                     "only RLE brush masks are read")
                region = decode_brush_rle(value["rle"], *size)
            else:
                region = polygon_to_mask(value.get("points", []), *size)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        mask |= region
    return mask


def _size_elsewhere(task: dict) -> tuple[int, int] | None:
    """An image size recorded by any other annotation or prediction of the task (for empty annotations)."""
    for group in ("annotations", "predictions"):
        for entry in task.get(group) or []:
            for result in (entry.get("result") or []) if isinstance(entry, dict) else []:
                size = _result_size(result) if isinstance(result, dict) else None
                if size is not None and min(size) >= 1:
                    return size
    return None
