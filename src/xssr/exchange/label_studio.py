"""Label Studio: the chosen images go out as tasks (with the model's masks as pre-annotations),
and the masks people drew come back from Label Studio's JSON export.

Label Studio (the open-source labelling tool) stores a brush mask as the RGBA image of the mask,
flattened row-major and compressed with the bit-packed run-length code of the thi.ng ``rle-pack``
JavaScript library; a task's JSON holds the compressed bytes as a list of ints. Polygons are stored
as vertex lists in percent of the image size. This module reads and writes both, so a team can label
in Label Studio without any Label Studio package installed (only numpy and Pillow are needed).

The stream layout, as rle-pack's ``encode``/``decode`` and @thi.ng/bitstream write and read it
(bits most significant first; the last byte is zero-padded):

* 32 bits: number of values (height * width * 4 for a brush mask);
* 5 bits: word size - 1 (Label Studio always uses 8-bit words, so 7);
* 4 x 4 bits: the four run-length field sizes - 1 (Label Studio uses 3, 4, 8, 16);
* then chunks until all values are produced: 1 bit flag (1 = repeat, 0 = literal), 2 bits choosing
  one of the four field sizes, that many bits holding run length - 1, then ONE word for a repeat
  (written run-length times) or run-length words for a literal chunk.

(rle-pack's first release, 2017, wrote a different layout without the word-size and field-size
header; Label Studio's frontend and its Python converter both use the layout above.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image, ImageDraw

from xssr.exchange.binary import binary_mask

# Names that tie the labelling configuration to the task JSON: a result's from_name / to_name must
# name tags of the project's configuration, or Label Studio will not show the pre-annotation.
IMAGE_TAG = "image"
BRUSH_TAG = "tag"
POLYGON_TAG = "polygon"

WORD_SIZE = 8  # bits per value; the RGBA bytes of a brush mask
RLE_SIZES = (3, 4, 8, 16)  # run-length field sizes Label Studio's frontend and converter write
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_RUN = 1 << RLE_SIZES[-1]  # 65536: a 16-bit field holds run length - 1
# A run of n + 1 values (n stored) uses the smallest field that holds n: n < 8, < 16, < 256, else 16 bits.
_CLASS_LIMITS = np.array([1 << s for s in RLE_SIZES[:-1]])
_ALPHA_THRESHOLD = 127  # the frontend antialiases brush edges; alpha above half counts as painted
_FIELDS_PER_BLOCK = 1 << 16  # bounds the encoder's temporary arrays, whatever the mask size


# ----------------------------------------------------------------------------- brush RLE


def encode_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a (H, W) binary mask as Label Studio brush RLE (a list of byte values 0-255).

    The encoded image is RGBA with every channel 255 on the mask and 0 elsewhere, which is how
    Label Studio's own converter (``mask2rle``) builds it, so the frontend paints it like a
    hand-drawn brush stroke. ``mask`` may be bool, {0, 1} or {0, 255}; anything else is refused
    rather than thresholded, so a probability map passed by mistake is caught.
    """
    painted = binary_mask(mask)
    height, width = painted.shape
    num = height * width * 4
    if num >= 1 << 32:
        raise ValueError(f"mask of {height}x{width} pixels is too large for Label Studio brush RLE "
                         f"(its 32-bit header counts at most {(1 << 32) - 1} values, this needs {num})")

    # Runs are found on pixels, not on RGBA values: the four channels of a pixel are equal, so
    # every RGBA run is a pixel run times four. Only repeat chunks are written: runs are at least 4
    # values long, and a repeat chunk is never longer than a literal one for those.
    flat = painted.ravel()
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size)).astype(np.int64) * 4
    values = np.where(flat[starts], 255, 0).astype(np.int64)

    # A 16-bit field holds at most 65536 repeats; longer runs become several chunks.
    pieces = (lengths + _MAX_RUN - 1) // _MAX_RUN
    chunk_values = np.repeat(values, pieces)
    chunk_lengths = np.full(int(pieces.sum()), _MAX_RUN, dtype=np.int64)
    chunk_lengths[np.cumsum(pieces) - 1] = lengths - (pieces - 1) * _MAX_RUN

    stored = chunk_lengths - 1
    size_class = np.searchsorted(_CLASS_LIMITS, stored, side="right")
    field_bits = np.asarray(RLE_SIZES, dtype=np.int64)[size_class]
    # One chunk = flag 1 | class (2 bits) | run length - 1 | value: at most 27 bits, one int64.
    chunk_codes = ((1 << (field_bits + 2 + WORD_SIZE)) | (size_class << (field_bits + WORD_SIZE))
                   | (stored << WORD_SIZE) | chunk_values)
    chunk_widths = 1 + 2 + field_bits + WORD_SIZE

    header_codes = [num, WORD_SIZE - 1, *(s - 1 for s in RLE_SIZES)]
    header_widths = [32, 5, 4, 4, 4, 4]
    codes = np.concatenate((np.asarray(header_codes, dtype=np.int64), chunk_codes))
    widths = np.concatenate((np.asarray(header_widths, dtype=np.int64), chunk_widths))
    return _pack_fields(codes, widths)


def decode_brush_rle(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode Label Studio brush RLE to a (height, width) uint8 mask in {0, 1}.

    The mask is the alpha channel above 127: the frontend draws strokes with antialiased edges
    and with the label's colour (or grey) in RGB, so alpha is the one channel that means "painted".
    Any stream the rle-pack format allows is read (literal chunks, any run-length field sizes);
    bytes after the last value are ignored (Label Studio's Python converter pads with a whole
    zero byte when the bits already end on a byte boundary).

    Raises ValueError when the header's value count is not height*width*4, the word size is not
    8 bits, or the stream ends before all values are produced.
    """
    _check_size(height, width)
    data = _rle_bytes(rle)
    if len(data) * 8 < _HEADER_BITS:
        raise ValueError(f"brush RLE is {len(data)} bytes, shorter than its 7-byte header: the stream ends early")
    header = int.from_bytes(data[:8].ljust(8, b"\0"), "big")
    num = header >> 32
    word_size = ((header >> 27) & 31) + 1
    sizes = [((header >> (23 - 4 * k)) & 15) + 1 for k in range(4)]
    expected = height * width * 4
    if word_size != WORD_SIZE:
        raise ValueError(f"brush RLE has {word_size}-bit words; Label Studio brush masks use {WORD_SIZE}-bit words")
    if num != expected:
        raise ValueError(f"brush RLE decodes to {num} values, expected {expected} ({height}x{width}x4)")
    values = _decode_values(data, num, sizes)
    alpha = values.reshape(height, width, 4)[:, :, 3]
    return (alpha > _ALPHA_THRESHOLD).astype(np.uint8)


def _pack_fields(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    """Write each code in its number of bits, most significant bit first, and pack to bytes.

    Vectorised: every output bit is (code >> shift) & 1 of the field it belongs to. Fields are
    handled a block at a time so the int64 temporaries stay small for huge masks.
    """
    ends = np.cumsum(widths)
    bits = np.empty(int(ends[-1]), dtype=np.uint8)
    for first in range(0, len(widths), _FIELDS_PER_BLOCK):
        block = slice(first, first + _FIELDS_PER_BLOCK)
        block_widths, block_ends = widths[block], ends[block]
        start = int(block_ends[0] - block_widths[0])
        owner = np.repeat(np.arange(len(block_widths)), block_widths)
        position = np.arange(start, int(block_ends[-1]))
        shift = block_ends[owner] - 1 - position
        bits[start:int(block_ends[-1])] = (codes[block][owner] >> shift) & 1
    return np.packbits(bits).tolist()  # packbits zero-pads the last byte, as rle-pack does


def _decode_values(data: bytes, num: int, sizes: list[int]) -> np.ndarray:
    """Unpack the chunks after the header into ``num`` 8-bit values.

    The chunk walk is sequential (each chunk's start depends on the previous one), so it is a
    Python loop, but it costs O(1) per chunk whatever the run length: a chunk's header, length and
    (for a repeat) its value all lie within one 64-bit window read from the bytes. Repeats are
    expanded with np.repeat and literal words gathered with one vectorised read at the end.
    """
    padded = data + bytes(8)  # so every 64-bit window read stays inside the buffer
    total_bits = len(data) * 8
    masks = [(1 << s) - 1 for s in sizes]
    run_lengths: list[int] = []
    run_values: list[int] = []
    literal_at: list[int] = []  # bit position of a literal chunk's first word, -1 for repeats
    position, produced = _HEADER_BITS, 0
    while produced < num:
        if position + 3 > total_bits:
            raise ValueError(f"brush RLE stream ends early: {produced} of {num} values decoded")
        offset = position & 7
        window = int.from_bytes(padded[position >> 3:(position >> 3) + 8], "big")
        head = (window >> (61 - offset)) & 7
        field = sizes[head & 3]
        run = ((window >> (61 - offset - field)) & masks[head & 3]) + 1
        # rle-pack's JavaScript decoder would silently clip such a chunk; no encoder writes one,
        # so it means a damaged stream and is reported rather than guessed at.
        if produced + run > num:
            raise ValueError(f"brush RLE chunk at bit {position} runs past the {num} values the header announces")
        if head & 4:  # repeat: one word, written `run` times
            end = position + 3 + field + WORD_SIZE
            value, first_word = (window >> (64 - offset - 3 - field - WORD_SIZE)) & 0xFF, -1
        else:  # literal: `run` words follow
            end = position + 3 + field + WORD_SIZE * run
            value, first_word = 0, position + 3 + field
        if end > total_bits:
            raise ValueError(f"brush RLE stream ends early: {produced} of {num} values decoded, "
                             f"the next chunk needs {end - total_bits} bits more than the data holds")
        run_lengths.append(run)
        run_values.append(value)
        literal_at.append(first_word)
        position, produced = end, produced + run

    lengths = np.asarray(run_lengths, dtype=np.int64)
    out = np.repeat(np.asarray(run_values, dtype=np.uint8), lengths)
    first_words = np.asarray(literal_at, dtype=np.int64)
    literal = first_words >= 0
    if literal.any():
        lit_lengths = lengths[literal]
        lit_out_start = (np.cumsum(lengths) - lengths)[literal]
        within = np.arange(int(lit_lengths.sum())) - np.repeat(np.cumsum(lit_lengths) - lit_lengths, lit_lengths)
        bit = np.repeat(first_words[literal], lit_lengths) + WORD_SIZE * within
        raw = np.frombuffer(padded, dtype=np.uint8).astype(np.uint16)
        pair = (raw[bit >> 3] << 8) | raw[(bit >> 3) + 1]  # an unaligned byte spans two bytes
        out[np.repeat(lit_out_start, lit_lengths) + within] = (pair >> (8 - (bit & 7))) & 0xFF
    return out


def _rle_bytes(rle: Sequence[int]) -> bytes:
    """The RLE list as bytes, refusing anything that is not a flat list of integers 0-255."""
    if isinstance(rle, (bytes, bytearray)):
        return bytes(rle)
    array = np.asarray(rle)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"brush RLE must be a flat list of integers 0-255, "
                         f"got {array.dtype} values of shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"brush RLE must hold byte values 0-255, found {int(array.min())}..{int(array.max())}")
    return array.astype(np.uint8).tobytes()


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"image {name} must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------- polygons


def polygon_to_mask(points: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise a Label Studio polygon to a (height, width) uint8 mask in {0, 1}.

    Label Studio stores vertices as percent (0-100) of the image width (x) and height (y). Each
    vertex snaps to the pixel whose centre is nearest (floor of the pixel coordinate, ties to the
    right / down) and Pillow fills the polygon including its outline, so a polygon whose edges lie
    on pixel borders covers one more row and column than its area: for masks the annotator
    traced around a structure, keeping the boundary pixels is the safer error.
    """
    _check_size(height, width)
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
    value = quoteattr(_check_label(label))  # quoted and escaped for an XML attribute
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
    _check_label(label)
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


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    return label


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a CSV cell (numpy scalars and paths become strings)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


# ----------------------------------------------------------------------------- export in


_READ_TYPES = ("brushlabels", "polygonlabels")


def read_label_studio_export(path: str | Path, *, label: str | None = None) -> dict[str, np.ndarray]:
    """Masks from a Label Studio "JSON" export: {xssr key (or image URL): (H, W) uint8 in {0, 1}}.

    Per task the last annotation that was not cancelled counts (Label Studio lists annotations in
    the order they were made, so a later one is a correction); the union of its brush and polygon
    regions (only those with ``label`` when given) is the mask, at the image size the results
    record. A task whose every annotation was cancelled (the annotator skipped it) is left out of
    the result. Anything else that is not as expected raises ValueError naming the file, the task
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

    masks: dict[str, np.ndarray] = {}
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


def _annotation_mask(task: dict, annotation: dict, where: str, label: str | None) -> np.ndarray:
    """The union of one annotation's brush and polygon regions, at the size its results record."""
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
        raise ValueError(f"{where}: annotation {annotation_id} has no regions and nothing else in the task "
                         "records the image size, so its empty mask cannot be built; add the region, or "
                         "skip the task in Label Studio if it has none")

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
