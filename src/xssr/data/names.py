"""How a run's CSVs name images: relative to the data root, which the stage's manifest.json records.

A pool of chest X-rays under ``/mnt/archive/hospital_b/2026/images`` would otherwise repeat that
prefix in every row of ``selection.csv``, ``pool_index.csv`` and ``per_image.csv`` (twice: the
``image`` and ``key`` columns). Rows name the image below the *data root* (the deepest folder that
holds every image of the group) and the stage's ``manifest.json`` says what that root is, once
(``outputs.data_root``). A CSV without such a manifest beside it (a user's own index file) names
images relative to its own folder, as manifest CSVs do. Absolute names are read as they are, so the
CSVs of runs made before this convention still resolve.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from .records import ImageRecord

#: The stage manifest's output that records the root of the images its CSV names.
ROOT_OUTPUT = "data_root"
SLICE_MARK = "#slice="


def data_root(records: Sequence[ImageRecord]) -> Path | None:
    """The deepest folder that holds every record's image (None for no records)."""
    folders = {str(r.image.parent) for r in records}
    return Path(os.path.commonpath(sorted(folders))) if folders else None


def relative_name(path: str | Path, root: Path | None) -> str:
    """``path`` below ``root`` in POSIX form ("images/a.png"); the absolute path if it is not below it."""
    path = Path(path)
    if root is not None and path.is_relative_to(root):
        return PurePosixPath(*path.relative_to(root).parts).as_posix()
    return str(path)


def relative_key(record: ImageRecord, root: Path | None) -> str:
    """The record's key (``path`` or ``path#slice=i``) with its path made relative to ``root``."""
    name = relative_name(record.image, root)
    return name if record.slice_index is None else f"{name}{SLICE_MARK}{record.slice_index}"


def record_row(index: int, record: ImageRecord, root: Path | None = None) -> dict[str, Any]:
    """One CSV row naming a record and its position in its group (pool_index.csv, selection.csv...),
    its image and key relative to ``root`` when given."""
    return {
        "index": index, "key": relative_key(record, root), "image": relative_name(record.image, root),
        "slice_index": record.slice_index, "site": record.site, "case_id": record.case_id,
    }


def resolve_name(name: str, root: Path) -> str:
    """Inverse of :func:`relative_name` / :func:`relative_key`: the absolute path (or key) of a row.

    An absolute name is returned unchanged; a relative one is joined to ``root``.
    """
    path, mark, slice_index = name.partition(SLICE_MARK)
    if not Path(path).is_absolute():
        # normpath, not resolve(): the records were resolved when the CSV was written, and a
        # large pool on a network drive should not cost one file-system call per row.
        path = os.path.normpath(root / path)
    return f"{path}{mark}{slice_index}"


def recorded_root(csv_path: str | Path) -> Path | None:
    """The ``data_root`` the stage manifest beside a CSV records (None: not a run CSV of xssr's)."""
    manifest = Path(csv_path).parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        root = json.loads(manifest.read_text(encoding="utf-8")).get("outputs", {}).get(ROOT_OUTPUT)
    except (OSError, ValueError, AttributeError):
        return None  # not a stage manifest (or unreadable): names are relative to the CSV, as documented
    return Path(root) if root else None


def csv_root(csv_path: str | Path) -> Path:
    """The folder a CSV's relative image names start from: the ``data_root`` of the stage manifest
    beside it, else the CSV's own folder."""
    return recorded_root(csv_path) or Path(csv_path).parent.resolve()


def resolve_rows(rows: Iterable[dict], root: Path) -> list[dict]:
    """Copies of CSV rows with ``image`` and ``key`` made absolute. A row without an image keeps its
    key (a selection made from bare embeddings names rows by pool index)."""
    return [{**row, **{c: resolve_name(row[c], root) for c in ("image", "key") if row.get(c)}}
            if row.get("image") else dict(row) for row in rows]


def read_named_rows(csv_path: str | Path) -> list[dict]:
    """Rows of a run CSV written by xssr (selection.csv, pool_index.csv, per_image.csv) with their
    ``image`` and ``key`` cells as absolute paths."""
    from xssr.report.io import read_csv

    return resolve_rows(read_csv(csv_path), csv_root(csv_path))
