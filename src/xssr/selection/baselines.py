"""Baseline selections the paper compares XSSR with: random and CoreSet (k-center greedy)."""

from __future__ import annotations

import logging
import numbers
from typing import NamedTuple

import numpy as np

from .neighbors import _is_int, _show, distances_from_rows, prepare_embeddings, squared_norms

logger = logging.getLogger(__name__)


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``random_state`` (int >= 0, None or Generator) into a numpy Generator.

    A Generator is returned as is, so a caller can share one stream across calls.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    if _is_int(random_state) and random_state >= 0:
        return np.random.default_rng(int(random_state))
    error = TypeError if not isinstance(random_state, numbers.Integral) else ValueError
    raise error(
        "The 'random_state' parameter must be an int >= 0, None or a numpy Generator. "
        f"Got {_show(random_state)} instead."
    )


def _check_count(budget, n_pool: int) -> int:
    if not _is_int(budget) or not 1 <= budget <= n_pool:
        raise ValueError(
            f"The 'budget' parameter must be an int in [1, {n_pool}] (the pool size). "
            f"Got {_show(budget)} instead."
        )
    return int(budget)


def random_select(n_pool: int, budget: int, random_state=None) -> np.ndarray:
    """Draw ``budget`` distinct pool indices uniformly at random.

    Parameters
    ----------
    n_pool : int >= 1
    budget : int in [1, n_pool]
    random_state : int, None or numpy Generator

    Returns
    -------
    ndarray of shape (budget,), int64, in draw order
    """
    if not _is_int(n_pool) or n_pool < 1:
        raise ValueError(
            f"The 'n_pool' parameter must be an int >= 1. Got {_show(n_pool)} instead."
        )
    budget = _check_count(budget, int(n_pool))
    rng = check_random_state(random_state)
    return rng.choice(int(n_pool), size=budget, replace=False).astype(np.int64)


class CoresetPicks(NamedTuple):
    """k-center greedy output.

    indices : (budget,) int64 in pick order ; coverage : float (Eq. 9 of the XSSR paper) ;
    diversity : (budget,) distance to the nearest earlier centre at pick time (NaN first).
    """

    indices: np.ndarray
    coverage: float
    diversity: np.ndarray


def coreset_select(X, budget: int, random_state=None, metric: str = "euclidean") -> CoresetPicks:
    """CoreSet selection: k-center greedy (Sener & Savarese, 2018).

    The first centre is drawn with ``random_state``; each later centre is the sample
    farthest from its nearest centre (ties go to the lowest index). Only the first pick
    is random.

    Parameters
    ----------
    X : array-like of shape (n_pool, n_features)
    budget : int in [1, n_pool]
    random_state : int, None or numpy Generator
    metric : {"euclidean", "cosine"}

    Returns
    -------
    CoresetPicks
    """
    points = prepare_embeddings(X, metric, name="X")
    n_pool = points.shape[0]
    budget = _check_count(budget, n_pool)
    rng = check_random_state(random_state)

    centred = points - points.mean(axis=0)  # same accuracy reason as the XSSR greedy
    sq_norms = squared_norms(centred)
    nearest_centre = np.full(n_pool, np.inf)
    chosen = np.zeros(n_pool, dtype=bool)
    picks = np.empty(budget, dtype=np.int64)
    at_pick = np.empty(budget)
    for step in range(budget):
        if step == 0:
            pick = int(rng.integers(n_pool))
            at_pick[0] = np.nan
        else:
            # Chosen samples are excluded explicitly: duplicates of a centre are also at
            # distance 0, and argmax must never return a centre twice.
            pick = int(np.argmax(np.where(chosen, -1.0, nearest_centre)))
            at_pick[step] = nearest_centre[pick]
        picks[step] = pick
        chosen[pick] = True
        np.minimum(
            nearest_centre, distances_from_rows(centred, sq_norms, [pick])[0], out=nearest_centre
        )
    coverage = float(nearest_centre.mean())
    logger.debug("CoreSet: %d picks, coverage %.6g", budget, coverage)
    return CoresetPicks(indices=picks, coverage=coverage, diversity=at_pick)
