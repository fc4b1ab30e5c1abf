"""Open every input before any stage runs and report every problem in one error."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .readers import ImageReadError, SliceReader, take_slice, to_image, to_mask
from .records import ImageRecord, record_order

logger = logging.getLogger(__name__)

#: Groups that must not be empty even when masks are not required for them.
NON_EMPTY_GROUPS = frozenset({"pool"})
_SHOWN_VALUES = 5


class InputError(ValueError):
    """Every problem found in the inputs, as ``(label, reason)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [f"{len(self.problems)} problem(s) found in the inputs; nothing was run:"]
        lines += [f"  {label}: {reason}" for label, reason in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._message()


@dataclass
class InputSummary:
    """What :func:`check_inputs` saw.

    Attributes
    ----------
    counts : dict
        Number of records per group.
    n_masks : int
        Records that have a mask.
    channel_kinds : set of str
        ``"gray"`` and/or ``"rgb"``.
    shapes : set of tuple
        Image sizes ``(H, W)`` seen.
    content_hashes : dict
        Record key -> SHA-1 hex digest of the image file's bytes (for run manifests;
        every slice of a volume has its file's digest).
    mask_hashes : dict
        Record key -> SHA-1 hex digest of the mask file's bytes.
    masks_to_come : int
        Records whose manifest names a mask file that does not exist yet, in groups whose
        masks this check did not require (not a problem until a stage needs them).
    """

    counts: dict[str, int] = field(default_factory=dict)
    n_masks: int = 0
    channel_kinds: set[str] = field(default_factory=set)
    shapes: set[tuple[int, ...]] = field(default_factory=set)
    content_hashes: dict[str, str] = field(default_factory=dict)
    mask_hashes: dict[str, str] = field(default_factory=dict)
    masks_to_come: int = 0

    def describe(self) -> str:
        """A few human-readable lines: images per group, masks, colour kinds and sizes."""
        groups = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        sizes = ", ".join(f"{s[0]}x{s[1]}" for s in sorted(self.shapes)[:5])
        more = f" (+{len(self.shapes) - 5} more)" if len(self.shapes) > 5 else ""
        to_come = f" ({self.masks_to_come} named but not there yet)" if self.masks_to_come else ""
        return (
            f"images: {groups}\nmasks: {self.n_masks}{to_come}\n"
            f"colour: {', '.join(sorted(self.channel_kinds)) or '-'}\nsizes: {sizes or '-'}{more}"
        )


def file_sha1(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-1 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _format_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value.item() if hasattr(value, "item") else value)


def _distinct_values(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == np.uint8:
        # bincount is linear time; np.unique sorts.
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).astype(np.uint8)
    return np.unique(mask)


def binary_mask_problem(mask: np.ndarray) -> str | None:
    """Why a mask ``(H, W)`` is not binary, or ``None`` when it is.

    Binary means values {0}, {0, v} for some v > 0, a single value v > 0, or bool.
    """
    if mask.dtype == bool:
        return None
    if np.issubdtype(mask.dtype, np.floating) and np.isnan(mask).any():
        return "mask has NaN values; expected only 0 and one positive value"
    values = _distinct_values(mask)
    shown = ", ".join(_format_value(v) for v in values[:_SHOWN_VALUES])
    if len(values) > _SHOWN_VALUES:
        shown += ", ..."
    if len(values) > 2:
        return (f"mask is not binary: expected values {{0}} or {{0, v}} with v > 0, "
                f"found {len(values)} distinct values: {shown}")
    if (values.size and values[0] < 0) or (len(values) == 2 and values[0] != 0):
        return (f"mask is not binary: expected values {{0}} or {{0, v}} with v > 0, "
                f"found values {shown}")
    return None


def _pixel_digest(image: np.ndarray) -> str:
    digest = hashlib.sha1(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _between(group: str, other: str) -> str:
    if group == other:
        return f"in '{group}'"
    text = f"in '{other}' and '{group}'"
    if "test" in (group, other):
        text += " (train/test leakage: the same image would be trained on and tested on)"
    return text


class _Checker:
    """State of one :func:`check_inputs` call; one record at a time, one file in memory."""

    def __init__(self, require_masks: Collection[str]) -> None:
        self.require_masks = require_masks
        self.problems: list[tuple[str, str]] = []
        self.summary = InputSummary()
        self.reader = SliceReader()
        self.seen_keys: dict[str, str] = {}
        self.seen_pixels: dict[str, tuple[str, str]] = {}
        self.bad_files: set[tuple[str, Path]] = set()
        self.file_hashes: dict[Path, str] = {}

    def add(self, label: str, reason: str) -> None:
        self.problems.append((label, reason))

    def _hash(self, path: Path) -> str | None:
        if path not in self.file_hashes:
            try:
                self.file_hashes[path] = file_sha1(path)
            except OSError:
                return None
        return self.file_hashes[path]

    def _slice(self, path: Path, record: ImageRecord, kind: str):
        """Decoded slice of ``path``, or None after recording the problem."""
        try:
            stack = self.reader.stack(path, kind)
        except ImageReadError as err:
            # A broken volume is reported once, not once per slice.
            if (kind, path) not in self.bad_files:
                self.bad_files.add((kind, path))
                where = "" if kind == "image" else f" (mask of {record.label})"
                self.add(str(path), err.reason + where)
            return None
        label = record.label if kind == "image" else record.mask_label
        try:
            arr = take_slice(stack, path, record.slice_index)
            return to_image(arr, path) if kind == "image" else to_mask(arr, path)
        except ImageReadError as err:
            self.add(label, err.reason)
            return None

    def check(self, group: str, record: ImageRecord) -> None:
        key = record.key
        if key in self.seen_keys:
            if {group, self.seen_keys[key]} != _MAY_SHARE:
                self.add(record.label, "listed twice " + _between(group, self.seen_keys[key]))
            return
        self.seen_keys[key] = group
        if record.mask is None and group in self.require_masks:
            self.add(record.label, f"no mask, but masks are required for '{group}'")
        image = self._slice(record.image, record, "image")
        if image is not None:
            self._check_image(group, record, image)
        if record.mask is not None and group not in self.require_masks and not record.mask.exists():
            # A manifest may name a mask before it is drawn; a stage that needs no masks of
            # this group must not be blocked by it (the train stage checks the picks' masks).
            self.summary.masks_to_come += 1
        elif record.mask is not None:
            self.summary.n_masks += 1
            mask = self._slice(record.mask, record, "mask")
            if mask is not None:
                self._check_mask(record, image, mask)

    def _check_image(self, group: str, record: ImageRecord, image: np.ndarray) -> None:
        digest = self._hash(record.image)
        if digest is not None:
            self.summary.content_hashes[record.key] = digest
        if image.size == 0:
            self.add(record.label, f"image is empty (shape {image.shape})")
            return
        self.summary.shapes.add(tuple(int(s) for s in image.shape[:2]))
        self.summary.channel_kinds.add("rgb" if image.ndim == 3 else "gray")
        finite = np.isfinite(image)
        if not finite.all():
            n_nan = int(np.isnan(image).sum())
            n_inf = int(image.size - finite.sum()) - n_nan
            self.add(record.label,
                     f"image has {n_nan} NaN and {n_inf} infinite value(s); expected finite numbers")
            return
        # Constant images (blank slices of a volume, say) are identical without
        # being duplicates of one another, so they are not compared.
        if image.min() == image.max():
            return
        pixels = _pixel_digest(image)
        if pixels in self.seen_pixels:
            other_label, other_group = self.seen_pixels[pixels]
            reason = f"same pixels as {other_label}"
            if other_group != group:
                reason += " " + _between(group, other_group)
            self.add(record.label, reason)
        else:
            self.seen_pixels[pixels] = (record.label, group)

    def _check_mask(self, record: ImageRecord, image: np.ndarray | None, mask: np.ndarray) -> None:
        digest = self._hash(record.mask)
        if digest is not None:
            self.summary.mask_hashes[record.key] = digest
        if image is not None and tuple(mask.shape) != tuple(image.shape[:2]):
            self.add(record.mask_label,
                     f"mask has shape {tuple(mask.shape)}, but its image {record.label} has "
                     f"shape {tuple(image.shape[:2])}")
        problem = binary_mask_problem(mask)
        if problem:
            self.add(record.mask_label, problem)


#: The two groups that may list the same image: annotated images (``xssr advise``'s "labeled")
#: are pool images, and a recipe that learns from the unlabeled pool is given both.
_MAY_SHARE = frozenset({"labeled", "pool"})


def check_inputs(
    groups: Mapping[str, Sequence[ImageRecord]],
    require_masks: Collection[str] = frozenset(),
    *,
    specs: Mapping[str, str] | None = None,
    progress: Callable[[int], object] | None = None,
) -> InputSummary:
    """Open every image and mask of every group; raise one :class:`InputError` listing all problems.

    Parameters
    ----------
    groups : mapping of str to list of ImageRecord
        For example ``{"source": [...], "pool": [...], "test": [...]}``.
    require_masks : set of str
        Groups whose records must all have masks; these and ``"pool"`` must not be empty.
    specs : mapping of str to str, optional
        Data spec of each group, quoted in "no images" problems.
    progress : callable, optional
        Called as ``progress(k)`` after every ``k`` records are checked (``k`` is the
        increment, so ``tqdm.update`` fits).

    Returns
    -------
    InputSummary

    Raises
    ------
    InputError
        With every problem found: unreadable/corrupt/unsupported/missing files, NaN or
        infinite pixels, empty images, missing masks where required, mask shape
        mismatches, non-binary masks, empty groups, records listed twice, and images
        with identical pixels (within or across groups; across ``test`` and another
        group this is train/test leakage).
    """
    checker = _Checker(frozenset(require_masks))
    specs = specs or {}
    for name in list(groups) + sorted(set(require_masks) - set(groups)):
        records = groups.get(name, ())
        if not records and (name in NON_EMPTY_GROUPS or name in require_masks):
            where = f" (spec {specs[name]})" if name in specs else ""
            checker.add(name, f"no images{where}")
    for name, records in groups.items():
        checker.summary.counts[name] = len(records)
        # Sorted so that a volume's slices come together and it is decoded once.
        for record in sorted(records, key=record_order):
            checker.check(name, record)
            if progress is not None:
                progress(1)
    summary = checker.summary
    logger.info("checked %s records (%d masks): %d problem(s)",
                dict(summary.counts), summary.n_masks, len(checker.problems))
    if checker.problems:
        raise InputError(checker.problems)
    return summary
