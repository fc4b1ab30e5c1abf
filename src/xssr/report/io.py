"""Atomic file writes: a reader sees either the old file or the complete new one."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An OSError (no permission, read-only file system, a file where a folder should be) is
    re-raised naming ``path``, not the hidden temporary file the user never asked for.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _naming(error, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file private (0600); give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except OSError as error:
        raise _naming(error, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_interrupted_writes(folder: str | os.PathLike, name: str = "*", older_than: float = 0.0) -> None:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` when a process was killed
    between writing and renaming (``.NAME.XXXX.tmp``), for ``name`` (a glob) only.

    Files younger than ``older_than`` seconds are kept: another live process may be writing them.
    """
    import glob
    import time

    now = time.time()
    for leftover in Path(folder).glob(f".{glob.escape(name) if name != '*' else '*'}.*.tmp"):
        try:
            if now - leftover.stat().st_mtime >= older_than:
                leftover.unlink()
        except FileNotFoundError:
            pass  # its writer renamed or removed it meanwhile


def _naming(error: OSError, path: Path) -> OSError:
    """The same kind of OSError, about ``path``."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def check_writable_folder(folder: str | os.PathLike, what: str = "--out") -> Path:
    """Raise a ValueError naming ``folder`` unless outputs can be written under it.

    Checked before any work starts: the folder, or its nearest existing parent, must be a
    folder in which a file can be created. A probe file is created and removed (permission
    bits alone do not tell for root or for a read-only mount). Nothing is left behind.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"is under {existing}, which is a file"
        raise ValueError(f"{folder} ({what}): {where}; give a folder path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".xssr-write-check.", dir=existing)
    except OSError as error:
        raise ValueError(f"{folder} ({what}): cannot write in {existing}: {error.strerror or error}.") from None
    os.close(fd)
    os.unlink(probe)
    return folder


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write a {type(value).__name__} to JSON.")


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write dict rows as CSV; ``columns`` fixes the order (default: keys of the first row)."""
    columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format_cell(row.get(k)) for k in columns})
    return write_text(path, buffer.getvalue())


#: A text cell starting with one of these is run as a formula by spreadsheet programs
#: (OWASP's "CSV injection"); "'" is included so that the guard below can be undone exactly.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def _format_cell(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        # Users open selection.csv in a spreadsheet: a file or site named "=cmd|..." must
        # show as text there, not run. A leading apostrophe is the spreadsheet convention.
        return "'" + value
    return value


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, with the formula guard removed."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: unguard_cell(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def unguard_cell(cell):
    """A cell as it was before :func:`write_csv` guarded it: the apostrophe goes only where it is
    followed by a character the guard protects, so a manifest a person wrote reads the same."""
    if isinstance(cell, str) and cell.startswith("'") and cell[1:2] and cell[1:].startswith(_FORMULA_STARTS):
        return cell[1:]
    return cell


def save_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array))
    return Path(path)
