"""Read embeddings a user made with any model: a ``(n_samples, n_features)`` ``.npy`` file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .validate import InputError

#: Every .npy file starts with these bytes (NumPy's format specification).
_NPY_MAGIC = b"\x93NUMPY"
#: Rows checked for NaN/Inf at a time, so a memory-mapped pool is never read whole into memory.
_ROWS_PER_CHECK = 65536


def _problem(path: Path, reason: str) -> InputError:
    return InputError([(str(path), reason)])


def read_embeddings(path: str | os.PathLike) -> np.ndarray:
    """The embeddings in ``path``, memory-mapped read-only, shape ``(n_samples, n_features)``.

    Raises :class:`InputError` naming the file when it is missing, empty, not a .npy
    file, holds Python objects (never unpickled: a .npy from elsewhere could run code),
    is not 2-D, not numeric, has no rows, or has NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise _problem(path, "file not found" if not path.exists() else "is a folder, expected a .npy file")
    with open(path, "rb") as handle:
        head = handle.read(len(_NPY_MAGIC))
    if not head:
        raise _problem(path, "file is empty (0 bytes)")
    if head != _NPY_MAGIC:
        raise _problem(path, "not a NumPy .npy file (no .npy header); write the array with numpy.save")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        if any(text in str(error) for text in ("allow_pickle", "Object arrays", "Python objects")):
            raise _problem(path, "holds Python objects, not numbers; save a numeric (float) array") from None
        raise _problem(path, f"cannot be read as a .npy array ({error})") from None
    except (OSError, EOFError) as error:
        raise _problem(path, f"cannot be read as a .npy array, the file may be truncated ({error})") from None
    if array.dtype.hasobject:
        raise _problem(path, "holds Python objects, not numbers; save a numeric (float) array")
    if array.ndim != 2:
        raise _problem(path, f"expected a 2-D (n_samples, n_features) array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise _problem(path, f"expected numbers (float or int), got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise _problem(path, f"has no values (shape {array.shape})")
    bad_rows = []
    for start in range(0, array.shape[0], _ROWS_PER_CHECK):
        block = np.asarray(array[start:start + _ROWS_PER_CHECK])
        bad = ~np.isfinite(block).all(axis=1) if np.issubdtype(block.dtype, np.floating) else None
        if bad is not None and bad.any():
            bad_rows.extend((start + np.flatnonzero(bad)).tolist())
    if bad_rows:
        shown = ", ".join(str(r) for r in bad_rows[:5]) + (" ..." if len(bad_rows) > 5 else "")
        raise _problem(path, f"{len(bad_rows)} row(s) have NaN or infinite values (rows {shown}, from 0)")
    return array


def read_embedding_files(pool_path, source_path, budget, *, source_needed: bool, method: str) -> dict[str, np.ndarray]:
    """``{"pool": ..., "source": ...}`` from the files of ``xssr select --pool-embeddings``, all checked
    first: each file, their widths, a source where ``method`` needs one and a budget the pool meets.

    Every problem names the file and its flag; raises one :class:`InputError` listing them all.
    """
    from xssr.selection import resolve_budget

    problems, arrays = [], {}
    for name, path, flag in (("pool", pool_path, "--pool-embeddings"), ("source", source_path, "--source-embeddings")):
        if path is None:
            continue
        try:
            arrays[name] = read_embeddings(path)
        except InputError as error:
            problems += [(f"{label} ({flag})", reason) for label, reason in error.problems]
    if source_path is None and source_needed:
        problems.append(("--source-embeddings", f"'{method}' weighs novelty (distance to the source), so it needs "
                         "source embeddings: give --source-embeddings, or --alpha 0 to select without novelty"))
    if "pool" in arrays and "source" in arrays and arrays["pool"].shape[1] != arrays["source"].shape[1]:
        problems.append((f"{source_path} (--source-embeddings)",
                         f"has {arrays['source'].shape[1]} features per row, but the pool embeddings "
                         f"{pool_path} have {arrays['pool'].shape[1]}"))
    if "pool" in arrays:
        try:
            resolve_budget(budget, len(arrays["pool"]))
        except ValueError:
            problems.append(("select.budget", f"asks for {budget:g} images, but {pool_path} "
                             f"has only {len(arrays['pool'])} rows"))
    if problems:
        raise InputError(problems)
    return arrays
