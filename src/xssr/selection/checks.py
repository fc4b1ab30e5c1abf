"""Argument checks shared by the selection methods.

Every public selection function validates its arguments before doing any work, and every
error names the parameter, says what was expected and shows what was given, in one format:
``The 'NAME' parameter must be .... Got VALUE instead.``
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: Largest entry magnitude accepted in embeddings. Squared distances (up to
#: ``4 * n_features * MAX_ABS**2``) and their sums over a pool must stay finite in float64
#: (about 1.8e308): 1e150 leaves room for pools of up to about 1e7 entries in all.
MAX_ABS = 1e150


def show(value) -> str:
    """repr() for error messages, without numpy's ``np.float64(...)`` wrapping."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The '{name}' parameter must be one of {options}. Got {show(value)} instead."
        )
    return value


def check_embeddings(X, name: str) -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 array of shape ``(n_samples, n_features)``.

    Raises TypeError for non-numeric input and ValueError for a ragged or wrongly shaped
    array, an empty array, non-finite entries or entries larger than :data:`MAX_ABS` in
    magnitude; messages name ``name``.
    """
    try:
        array = np.asarray(X)
    except ValueError:  # numpy refuses nested sequences of different lengths
        raise ValueError(
            f"The '{name}' parameter must be a 2-D array of shape (n_samples, n_features). "
            "Got a ragged nested sequence (rows of different lengths) instead."
        ) from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ) or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(
            f"The '{name}' parameter must be a real numeric array. "
            f"Got an array of dtype {array.dtype} instead."
        )
    if array.ndim != 2:
        raise ValueError(
            f"The '{name}' parameter must be a 2-D array of shape (n_samples, n_features). "
            f"Got an array of shape {array.shape} instead."
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"The '{name}' parameter must have at least 1 row and 1 column. "
            f"Got an array of shape {array.shape} instead."
        )
    array = np.ascontiguousarray(array, dtype=np.float64)
    # In row blocks: whole-array temporaries would double the memory of a large pool.
    step = max(1, 2**22 // array.shape[1])
    n_bad, largest = 0, 0.0
    for start in range(0, array.shape[0], step):
        block = array[start:start + step]
        high, low = float(block.max()), float(block.min())  # NaN and inf show up here
        if not (np.isfinite(high) and np.isfinite(low)):
            finite = np.isfinite(block)
            n_bad += int(block.size - np.count_nonzero(finite))
            high = float(np.max(block, initial=0.0, where=finite))
            low = float(np.min(block, initial=0.0, where=finite))
        largest = max(largest, abs(high), abs(low))
    if n_bad:
        raise ValueError(
            f"The '{name}' parameter must contain only finite values. "
            f"Got {n_bad} NaN or infinite entries instead."
        )
    if largest > MAX_ABS:
        raise ValueError(
            f"The '{name}' parameter must have entries of magnitude at most {MAX_ABS:g} "
            "(squared distances between larger values overflow float64). "
            f"Got an entry of magnitude {largest:g} instead."
        )
    return array


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``random_state`` (int >= 0, None or Generator) into a numpy Generator.

    A Generator is returned as is, so a caller can share one stream across calls.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    if is_int(random_state) and random_state >= 0:
        return np.random.default_rng(int(random_state))
    error = TypeError if not isinstance(random_state, numbers.Integral) else ValueError
    raise error(
        "The 'random_state' parameter must be an int >= 0, None or a numpy Generator. "
        f"Got {show(random_state)} instead."
    )


def check_count(budget, n_pool: int) -> int:
    if not is_int(budget) or not 1 <= budget <= n_pool:
        raise ValueError(
            f"The 'budget' parameter must be an int in [1, {n_pool}] (the pool size). "
            f"Got {show(budget)} instead."
        )
    return int(budget)


def check_labeled(labeled, n_pool: int, budget: int) -> np.ndarray | None:
    """``labeled`` (pool indices annotated in an earlier round) as int64, None when there are
    none; raises naming 'labeled' or 'budget' when they are not distinct pool indices or leave
    fewer unlabeled images than the budget asks for (a greedy would then pick an image twice)."""
    if labeled is None or len(labeled) == 0:
        return None
    values = np.asarray(labeled)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"The 'labeled' parameter must be a list of pool indices. Got {show(labeled)} instead.")
    if values.min() < 0 or values.max() >= n_pool or len(np.unique(values)) != len(values):
        raise ValueError(f"The 'labeled' parameter must hold distinct pool indices in [0, {n_pool}). "
                         f"Got {show(labeled)} instead.")
    if budget > n_pool - len(values):
        raise ValueError(f"The 'budget' parameter must be at most the number of images not labeled yet "
                         f"({n_pool - len(values)}). Got {show(budget)} instead.")
    return values.astype(np.int64)


def check_sites(sites, n_pool: int | None = None) -> list[str]:
    """Return ``sites`` as a list of str, one per pool image; raise naming 'sites' otherwise."""
    if isinstance(sites, (str, bytes)) or not hasattr(sites, "__len__"):
        raise TypeError(
            "The 'sites' parameter must be a sequence of strings, one site name per pool "
            f"image. Got {type(sites).__name__} instead."
        )
    try:
        ndim = np.ndim(np.asarray(sites, dtype=object))
    except ValueError:  # ragged nesting
        ndim = -1
    if ndim != 1:
        raise ValueError(
            "The 'sites' parameter must be 1-D, one site name per pool image. "
            f"Got an object with {ndim if ndim >= 0 else 'ragged'} dimensions instead."
        )
    names = list(sites)
    for position, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(
                "The 'sites' parameter must contain only strings. "
                f"Got {show(name)} ({type(name).__name__}) at position {position} instead."
            )
    if not names:
        raise ValueError("The 'sites' parameter must name at least one image. Got 0 instead.")
    if n_pool is not None and len(names) != n_pool:
        raise ValueError(
            f"The 'sites' parameter must have one entry per pool image ({n_pool}). "
            f"Got {len(names)} instead."
        )
    return [str(name) for name in names]


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int if it is an int >= 1, else raise a ValueError naming it."""
    if not is_int(value) or value < 1:
        raise ValueError(
            f"The '{name}' parameter must be an int >= 1. Got {show(value)} instead."
        )
    return int(value)


def check_real(value, name: str, *, low: float = 0.0, high: float | None = None, keyword: str | None = None):
    """Return ``value`` as a float if it is a finite real in ``[low, high]`` (no upper bound if None).

    ``keyword`` names a string the parameter also accepts (e.g. ``"auto"``); it is returned as is.
    """
    if keyword is not None and isinstance(value, str) and value == keyword:
        return value
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, (bool, np.bool_))
        or not math.isfinite(value)
        or value < low
        or (high is not None and value > high)
    ):
        wanted = f"a float in [{low:g}, {high:g}]" if high is not None else f"a finite float >= {low:g}"
        either = f"{keyword!r} or " if keyword is not None else ""
        raise ValueError(f"The '{name}' parameter must be {either}{wanted}. Got {show(value)} instead.")
    return float(value)


def check_grid(values, name: str, *, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """Return ``values`` as a non-empty 1-D float64 array of finite numbers in ``[low, high]``."""
    wanted = f"floats in [{low:g}, {high:g}]" if high is not None else f"finite floats >= {low:g}"
    message = (f"The '{name}' parameter must be a non-empty 1-D sequence of {wanted}. "
               f"Got {show(values)} instead.")
    try:
        grid = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < low):
        raise ValueError(message)
    if high is not None and np.any(grid > high):
        raise ValueError(message)
    return grid
