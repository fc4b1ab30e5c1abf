"""Uncertainty-weighted k-center: the images a source model is least sure about, spread out.

Active domain adaptation picks where the source model is uncertain, but uncertainty alone
piles the budget onto one kind of hard image; k-center alone ignores the model. Here each step
takes the pool image that maximises ``u_i * d_i``: its uncertainty (min-max scaled to [0, 1])
times its distance to the nearest image already picked (the first pick: the most uncertain).
An image twice as far from the picks needs only half the uncertainty to be chosen. The
uncertainty comes from outside (xssr's source model, per image; docs/recipes.md), so this
stays pure numpy like every selection algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xssr.selection.checks import check_count, check_labeled
from xssr.selection.nearest import NearestSelected
from xssr.selection.neighbors import prepare_embeddings


@dataclass(frozen=True)
class UncertaintyPicks:
    indices: np.ndarray  # (budget,) pool indices in pick order
    coverage: float  # mean distance from a pool image to its nearest pick
    weighted_distance: np.ndarray  # (budget,) u * d at each pick (u alone for the first)


def scale_scores(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; all equal -> all ones (then this is k-center from the first image)."""
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 0:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


def uncertainty_kcenter(X, scores: np.ndarray, budget: int, metric: str = "euclidean",
                        labeled: np.ndarray | None = None) -> UncertaintyPicks:
    """``labeled`` pool indices (an earlier round's) are never picked and count as picks from the
    start, so the first new pick already weighs distance."""
    points = prepare_embeddings(X, metric, name="X")
    n_pool = points.shape[0]
    budget = check_count(budget, n_pool)
    labeled = check_labeled(labeled, n_pool, budget)
    u = scale_scores(np.asarray(scores, dtype=np.float64))
    state = NearestSelected(points, 1)  # skips pool blocks a pick cannot come closer to
    u = u[state.order][None, :]  # the state's block order
    chosen = np.zeros((1, n_pool), dtype=bool)
    picks = np.empty(budget, dtype=np.int64)
    weighted = np.empty(budget)
    if labeled is not None and len(labeled):
        chosen[0, state.position[labeled]] = True
        state.add_to_all(state.position[labeled])
    for step in range(budget):
        value = u if not chosen.any() else u * state.distance
        pick = int(state.first_best(np.where(chosen, -1.0, value))[0])  # ties: the lowest index
        picks[step], weighted[step] = state.order[pick], value[0, pick]
        chosen[0, pick] = True
        state.add(np.array([pick]))
    return UncertaintyPicks(indices=picks, coverage=float(state.distance.mean()), weighted_distance=weighted)
