"""Baseline selections: random, site-stratified random and CoreSet (k-center greedy)."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from .checks import check_count, check_labeled, check_random_state, check_sites, is_int, show
from .nearest import NearestSelected
from .neighbors import prepare_embeddings

logger = logging.getLogger(__name__)


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
    if not is_int(n_pool) or n_pool < 1:
        raise ValueError(
            f"The 'n_pool' parameter must be an int >= 1. Got {show(n_pool)} instead."
        )
    budget = check_count(budget, int(n_pool))
    rng = check_random_state(random_state)
    return rng.choice(int(n_pool), size=budget, replace=False).astype(np.int64)


def _largest_remainder(counts: np.ndarray, budget: int) -> np.ndarray:
    """Hamilton apportionment of ``budget`` by ``counts``, in exact integer arithmetic.

    Each site gets ``floor(budget * count / total)``; the seats left go one each to the
    largest remainders, ties to the larger count, then to the earlier site.
    """
    total = int(counts.sum())
    scaled = budget * counts
    seats, remainder = scaled // total, scaled % total
    left = budget - int(seats.sum())
    order = np.lexsort((np.arange(counts.size), -counts, -remainder))
    seats[order[:left]] += 1
    return seats


def site_allocation(sites, budget: int) -> dict[str, int]:
    """Picks per site for :func:`stratified_random_select`, keyed by site name (sorted).

    The rule, precisely:

    1. If ``budget`` is at least the number of sites, every site is guaranteed one pick:
       a site whose proportional quota ``budget * count / total`` is below 1 gets exactly
       1 and leaves the apportionment; the quotas of the remaining sites are recomputed
       on the remaining budget and pool, and this repeats until every remaining quota is
       at least 1. (Below that budget no such guarantee is possible, and step 1 is skipped.)
    2. The remaining budget goes to the remaining sites by the largest-remainder (Hamilton)
       method: the integer part of each quota, then one more to the largest fractional
       parts; ties go to the larger site, then to the site whose name sorts first.

    No site gets more picks than it has images. Example: sites a:6, b:3, c:1 and budget 5
    give quotas 3, 1.5, 0.5; c is raised to 1, and 4 picks over a:6, b:3 give quotas
    2.67, 1.33, so a:3, b:1, c:1.

    Parameters
    ----------
    sites : sequence of str of length n_pool
    budget : int in [1, n_pool]

    Returns
    -------
    dict of str -> int, in sorted site order, values summing to ``budget``
    """
    names = check_sites(sites)
    budget = check_count(budget, len(names))
    site_names, counts = np.unique(np.asarray(names, dtype=object), return_counts=True)
    counts = counts.astype(np.int64)
    seats = np.zeros(counts.size, dtype=np.int64)
    free = np.ones(counts.size, dtype=bool)
    if budget >= counts.size:
        while free.any():
            left = budget - int(seats.sum())
            small = free & (left * counts < counts[free].sum())  # quota < 1, exactly
            if not small.any():
                break
            seats[small] = 1
            free &= ~small
    if free.any():
        seats[free] = _largest_remainder(counts[free], budget - int(seats.sum()))
    return {str(name): int(seat) for name, seat in zip(site_names, seats)}


def stratified_random_select(sites, budget: int, random_state=None) -> np.ndarray:
    """Random selection stratified by site (hospital / scanner), proportional to site size.

    The budget is split over the sites by :func:`site_allocation` (largest remainder,
    at least one pick per site when the budget allows), then each site's picks are drawn
    uniformly without replacement from its images with the seeded generator, sites in
    sorted name order.

    Parameters
    ----------
    sites : sequence of str of length n_pool
        Site of every pool image.
    budget : int in [1, n_pool]
    random_state : int, None or numpy Generator

    Returns
    -------
    ndarray of shape (budget,), int64: pool indices grouped by site name (sorted), in
    draw order within a site
    """
    names = check_sites(sites)
    allocation = site_allocation(names, budget)
    rng = check_random_state(random_state)
    labels = np.asarray(names, dtype=object)
    picks = []
    for site, count in allocation.items():
        if count:
            members = np.flatnonzero(labels == site)
            picks.append(rng.choice(members, size=count, replace=False))
    return np.concatenate(picks).astype(np.int64)


class CoresetPicks(NamedTuple):
    """k-center greedy output.

    indices : (budget,) int64 in pick order ; coverage : float (Eq. 9 of the XSSR paper) ;
    diversity : (budget,) distance to the nearest earlier centre at pick time (NaN first).
    """

    indices: np.ndarray
    coverage: float
    diversity: np.ndarray


def coreset_select(X, budget: int, random_state=None, metric: str = "euclidean", labeled=None) -> CoresetPicks:
    """CoreSet selection: k-center greedy (Sener & Savarese, 2018).

    The first centre is drawn with ``random_state``; each later centre is the sample
    farthest from its nearest centre (ties go to the lowest index). Only the first pick
    is random. ``labeled`` pool indices (an earlier round's) are centres from the start:
    then even the first pick is the farthest image, and none is random.

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
    budget = check_count(budget, n_pool)
    labeled = check_labeled(labeled, n_pool, budget)
    rng = check_random_state(random_state)

    state = NearestSelected(points, 1)  # skips pool blocks a pick cannot come closer to
    chosen = np.zeros((1, n_pool), dtype=bool)  # in the state's block order
    picks = np.empty(budget, dtype=np.int64)
    at_pick = np.empty(budget)
    if labeled is not None and len(labeled):
        chosen[0, state.position[labeled]] = True
        state.add_to_all(state.position[labeled])
    for step in range(budget):
        if step == 0 and not chosen.any():
            pick = int(state.position[rng.integers(n_pool)])
            at_pick[0] = np.nan
        else:
            # Chosen samples are excluded explicitly: duplicates of a centre are also at
            # distance 0, and argmax must never return a centre twice.
            pick = int(state.first_best(np.where(chosen, -1.0, state.distance))[0])
            at_pick[step] = state.distance[0, pick]
        picks[step] = state.order[pick]
        chosen[0, pick] = True
        state.add(np.array([pick]))
    nearest_centre = state.distance[0]
    coverage = float(nearest_centre.mean())
    logger.debug("CoreSet: %d picks, coverage %.6g", budget, coverage)
    return CoresetPicks(indices=picks, coverage=coverage, diversity=at_pick)
