"""XSSR greedy sample selection (paper §3.2, Eq. 4-9) with automatic alpha.

At each greedy step every remaining pool sample ``i`` gets the score (Eq. 4)::

    S_i = beta * z(density_i) + (1 - beta) * (alpha * z(novelty_i) + (1 - alpha) * z(diversity_i))

with ``density_i = -mean distance to the k nearest other pool samples`` (Eq. 5-6),
``novelty_i = distance to the nearest source embedding`` (Eq. 8) and
``diversity_i = distance to the nearest already-selected pool sample`` (Eq. 7). The
highest score is selected, diversity is updated, and this repeats until the budget is met.
Alpha is chosen by minimising coverage (Eq. 9), the mean distance from every pool sample
to its nearest selected sample.

Choices the paper leaves open, and what this module does
--------------------------------------------------------
* Distance: Euclidean on the embeddings by default; ``metric="cosine"`` measures Euclidean
  distance between L2-normalised rows (``sqrt(2 - 2 cos)``). The same distance is used
  for all three terms and for coverage.
* Density uses ``k = 10`` neighbours by default, excluding the sample itself by index (an
  exact duplicate is a neighbour at distance 0). With fewer than ``k + 1`` pool samples it
  averages over all other samples.
* ``beta = 0.5`` by default. The paper gives no value; 0.5 weighs representativeness
  (density) equally against the novelty/diversity pair.
* z-scores use the population mean and standard deviation (``ddof=0``) over the candidates
  *still remaining* at each step, recomputed at every step for all three terms, so each
  term is scaled to the choice actually being made. A term whose standard deviation over
  the remaining candidates is zero (e.g. one candidate left) contributes 0.
* First pick: with nothing selected the diversity term is undefined; it contributes 0, so
  the first pick maximises ``beta * z(density) + (1 - beta) * alpha * z(novelty)``. Its raw
  diversity is reported as NaN.
* Ties in the score go to the lowest pool index, so XSSR is fully deterministic.
* Alpha grid: ``np.linspace(0, 1, 11)`` by default; the grid is sorted and de-duplicated.
  The alpha with the smallest coverage is kept; exact ties go to the smallest alpha.
* Without source embeddings novelty is undefined, so only ``alpha = 0`` is allowed.

Performance
-----------
All grid alphas run in lockstep: state arrays have shape ``(n_alphas, n_pool)``, every row
picks one sample per step, and the distances from the picked samples to the whole pool
come from one GEMM. Density and novelty are computed once. Automatic alpha therefore costs
about ``budget * n_alphas * n_pool * n_features`` multiply-adds and
``O(n_alphas * n_pool)`` memory.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from .nearest import NearestSelected
from .neighbors import knn_mean_distance, nearest_distance, prepare_embeddings

logger = logging.getLogger(__name__)

# Rounded so that grid values print as 0.3 rather than 0.30000000000000004.
DEFAULT_ALPHA_GRID = np.linspace(0.0, 1.0, 11).round(12)
COMPONENTS = (
    "density", "novelty", "diversity", "z_density", "z_novelty", "z_diversity", "score",
)

# A standard deviation this small relative to the mean is rounding noise on constant values.
_ZERO_STD_RTOL = 1e-10


class GreedyRun(NamedTuple):
    """Lockstep greedy output, one row per alpha.

    alphas : (n_alphas,) ; indices : (n_alphas, budget) int64 in pick order ;
    coverage : (n_alphas,) ; components : name -> (n_alphas, budget), see :data:`COMPONENTS`.
    """

    alphas: np.ndarray
    indices: np.ndarray
    coverage: np.ndarray
    components: dict[str, np.ndarray]


class XSSRRun(NamedTuple):
    """Selection for the chosen alpha.

    indices : (budget,) int64 in pick order ; coverage : float ; alpha : float ;
    alpha_curve : [(alpha, coverage), ...] over the grid (empty for a fixed alpha) ;
    components : name -> (budget,).
    """

    indices: np.ndarray
    coverage: float
    alpha: float
    alpha_curve: list[tuple[float, float]]
    components: dict[str, np.ndarray]


class _Spread(NamedTuple):
    """Per-run mean and z-scale (1 / standard deviation, 0 for a flat term) of one term."""

    mean: np.ndarray
    scale: np.ndarray


def _spread(mean: np.ndarray, var: np.ndarray) -> _Spread:
    std = np.sqrt(np.maximum(var, 0.0))
    flat = std <= _ZERO_STD_RTOL * np.abs(mean)
    return _Spread(mean, np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, std)))


class _FixedTermStats:
    """Mean and spread of a fixed per-sample term over each run's remaining candidates.

    Density and novelty never change; each pick only removes one candidate per run. So
    instead of a pass over the pool at every step, the sums of ``value - shift`` and its
    square over the remaining candidates are kept and the removed value subtracted. When
    the remaining sum of squares has shrunk 1000-fold since it was last computed exactly
    (the removed values dominated it, so the subtractions may have cost digits), that run
    is recomputed exactly over its remaining candidates and re-shifted to their mean.
    """

    def __init__(self, values: np.ndarray, blocked: np.ndarray):
        self.values = values
        n_runs = blocked.shape[0]
        self.shift = np.zeros(n_runs)
        self.sum = np.zeros(n_runs)
        self.sum_sq = np.zeros(n_runs)
        self.base_sq = np.zeros(n_runs)
        self.count = np.zeros(n_runs)
        self._exact(np.arange(n_runs), blocked)

    def _exact(self, runs: np.ndarray, blocked: np.ndarray) -> None:
        for r in runs:
            remaining = self.values[blocked[r] == 0.0]
            self.count[r] = remaining.size
            self.shift[r] = remaining.mean() if remaining.size else 0.0
            dev = remaining - self.shift[r]
            self.sum[r] = dev.sum()
            self.sum_sq[r] = self.base_sq[r] = float(dev @ dev)

    def remove(self, picks: np.ndarray, blocked: np.ndarray) -> None:
        dev = self.values[picks] - self.shift
        self.sum -= dev
        self.sum_sq -= dev * dev
        self.count -= 1
        drifted = np.flatnonzero(self.sum_sq < 1e-3 * self.base_sq)
        if drifted.size:
            self._exact(drifted, blocked)

    def spread(self) -> _Spread:
        count = np.maximum(self.count, 1.0)
        offset = self.sum / count
        return _spread(self.shift + offset, self.sum_sq / count - offset * offset)


class _DiversityStats:
    """Mean and spread of each run's nearest-selected distance over its remaining candidates.

    Kept per (run, block) as count, mean and sum of squared deviations over the block's
    remaining candidates, and combined across blocks with the exact parallel formula (Chan,
    Golub & LeVeque). A pick changes the distances of only the blocks it could come closer
    to (``NearestSelected.touched``) and removes one candidate from its own block, so only
    those blocks are summed again.
    """

    def __init__(self, nearest: NearestSelected, remaining: np.ndarray):
        shape = nearest.block_max.shape
        self.nearest, self.remaining = nearest, remaining
        self.count, self.mean, self.m2 = np.zeros(shape), np.zeros(shape), np.zeros(shape)

    def refresh(self) -> None:
        nearest = self.nearest
        for block in np.flatnonzero(nearest.touched.any(axis=0)):
            runs = np.flatnonzero(nearest.touched[:, block])
            start, stop = nearest.starts[block], nearest.starts[block + 1]
            mask = self.remaining[runs, start:stop]
            values = np.where(mask, nearest.distance[runs, start:stop], 0.0)
            count = mask.sum(axis=1)
            mean = values.sum(axis=1) / np.maximum(count, 1)
            deviation = np.where(mask, values - mean[:, None], 0.0)
            self.count[runs, block], self.mean[runs, block] = count, mean
            self.m2[runs, block] = np.einsum("ij,ij->i", deviation, deviation)
        nearest.touched[:] = False

    def spread(self) -> _Spread:
        total = self.count.sum(axis=1)
        mean = (self.count * self.mean).sum(axis=1) / total
        m2 = self.m2.sum(axis=1) + (self.count * (self.mean - mean[:, None]) ** 2).sum(axis=1)
        return _Spread(mean, m2 / total)

    def __call__(self) -> _Spread:
        self.refresh()
        mean, var = self.spread()
        return _spread(mean, var)


def _best_candidates(nearest: NearestSelected, fixed_terms: np.ndarray, fixed_max: np.ndarray,
                     weights: np.ndarray, diversity_weight: np.ndarray | None,
                     blocked: np.ndarray, whole_row: np.ndarray) -> np.ndarray:
    """Per run, the position of the highest score ``w_d d + w_n n + w_v v`` among its remaining
    candidates (exact ties: the lowest pool index), visiting as few blocks as it can.

    All weights are >= 0, so within a block no score can exceed the same expression at the
    block's largest density, novelty and distance; rounding is monotone, so this bound holds
    in floating point too when computed in the same order. The block with the highest bound
    is scored first; then only blocks whose bound reaches the best score so far can hold a
    better one. When that is most of the pool, the whole row is scored at once instead (one
    vectorised pass beats many small ones). A run whose bound did not prune is scored whole
    every other step (``whole_row``, updated in place), so a bound that keeps failing costs
    little. ``diversity_weight`` is None before anything is selected (distances are still inf).
    """
    starts, n_pool = nearest.starts, nearest.distance.shape[1]
    bound = weights @ fixed_max  # (n_runs, n_blocks)
    if diversity_weight is not None:
        bound = bound + diversity_weight[:, None] * nearest.block_max

    def score(r, start, stop):
        values = weights[r, 0] * fixed_terms[0, start:stop] + weights[r, 1] * fixed_terms[1, start:stop]
        if diversity_weight is not None:
            values += diversity_weight[r] * nearest.distance[r, start:stop]
        values += blocked[r, start:stop]
        return values

    if nearest.n_blocks == 1:  # a small pool: every run scored at once, in pool order
        values = weights[:, :1] * fixed_terms[0] + weights[:, 1:] * fixed_terms[1]
        if diversity_weight is not None:
            values += diversity_weight[:, None] * nearest.distance
        values += blocked
        return np.argmax(values, axis=1)  # the first maximum: ties go to the lowest index
    picks = np.empty(bound.shape[0], dtype=np.int64)
    for r in range(bound.shape[0]):
        if whole_row[r]:  # the bound did not prune last step: it rarely does the next
            whole_row[r] = False  # but try again next time
            picks[r] = nearest.first_best(score(r, 0, n_pool)[None, :])[0]
            continue
        ranked = np.argsort(-bound[r], kind="stable")
        first = ranked[0]
        values = score(r, starts[first], starts[first + 1])
        top = int(np.argmax(values))  # within a block positions follow the pool order
        best, best_position = values[top], starts[first] + top
        rest = ranked[1:][bound[r, ranked[1:]] >= best]
        if (starts[rest + 1] - starts[rest]).sum() > n_pool // 4:
            picks[r] = nearest.first_best(score(r, 0, n_pool)[None, :])[0]
            whole_row[r] = True
            continue
        for block in rest:
            if bound[r, block] < best:
                continue
            start, stop = starts[block], starts[block + 1]
            values = score(r, start, stop)
            top = int(np.argmax(values))
            if values[top] > best or (values[top] == best
                                      and nearest.order[start + top] < nearest.order[best_position]):
                best, best_position = values[top], start + top
        picks[r] = best_position
    return picks


def greedy_lockstep(
    pool: np.ndarray,
    density: np.ndarray,
    novelty: np.ndarray | None,
    alphas: np.ndarray,
    beta: float,
    budget: int,
    labeled: np.ndarray | None = None,
    coverage_weights: np.ndarray | None = None,
) -> GreedyRun:
    """Run the XSSR greedy for several alphas at once.

    ``labeled`` (pool indices annotated in an earlier round) are never picked and count as
    already selected: diversity is the distance to the nearest labeled or picked image from the
    first step on, and coverage includes them.

    Each run's score differs from Eq. 4 by a constant over its candidates (the terms'
    means), which cannot change which candidate is highest. So a step needs no pass over the
    pool: the pool is split into blocks (:class:`~xssr.selection.nearest.NearestSelected`,
    which also skips the blocks a pick cannot come closer to), the highest score is found
    by visiting blocks in the order of an upper bound of their scores
    (:func:`_best_candidates`), and the terms' means and spreads are kept up to date block by
    block (:class:`_FixedTermStats`, :class:`_DiversityStats`). The reported components are
    Eq. 4's, computed at each pick.

    Parameters
    ----------
    pool : ndarray of shape (n_pool, n_features), float64
        Embeddings already mapped by :func:`prepare_embeddings` (distances are Euclidean).
    density : ndarray of shape (n_pool,)
        Eq. 6 values (negative mean kNN distance).
    novelty : ndarray of shape (n_pool,) or None
        Eq. 8 values; None only if every alpha is 0.
    alphas : ndarray of shape (n_alphas,)
    beta : float in [0, 1]
    budget : int in [1, n_pool]

    Returns
    -------
    GreedyRun
        Row ``r`` is what a run with ``alphas=[alphas[r]]`` returns (to float64 rounding).
    """
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if novelty is None and np.any(alphas > 0):
        raise ValueError("Novelty values are required when any alpha is > 0.")
    n_pool, n_alphas = pool.shape[0], alphas.size
    rows = np.arange(n_alphas)

    nearest = NearestSelected(pool, n_alphas)
    order = nearest.order  # everything below is in the pool's block order
    density_values = np.asarray(density, dtype=np.float64)[order]
    novelty_values = (np.zeros(n_pool) if novelty is None
                      else np.asarray(novelty, dtype=np.float64)[order])
    fixed_terms = np.stack([density_values, novelty_values])
    fixed_max = np.maximum.reduceat(fixed_terms, nearest.starts[:-1], axis=1)
    # 0 for a candidate, -inf once picked (or labeled): added to the scores, it rules them out.
    blocked = np.zeros((n_alphas, n_pool))
    remaining = np.ones((n_alphas, n_pool), dtype=bool)
    n_labeled = 0 if labeled is None else len(labeled)
    if n_labeled:
        labeled_positions = nearest.position[np.asarray(labeled, dtype=np.int64)]
        blocked[:, labeled_positions] = -np.inf
        remaining[:, labeled_positions] = False
        nearest.add_to_all(labeled_positions)
    density_stats = _FixedTermStats(density_values, blocked)
    novelty_stats = _FixedTermStats(novelty_values, blocked)
    diversity_stats = _DiversityStats(nearest, remaining)
    whole_row = np.zeros(n_alphas, dtype=bool)

    picks = np.empty((n_alphas, budget), dtype=np.int64)
    parts = {name: np.empty((n_alphas, budget)) for name in COMPONENTS}
    novelty_weight = (1.0 - beta) * alphas
    diversity_weight = (1.0 - beta) * (1.0 - alphas)
    for step in range(budget):
        # Nothing is selected before the first pick: diversity is undefined and contributes 0.
        something_selected = step > 0 or n_labeled > 0
        den, nov = density_stats.spread(), novelty_stats.spread()
        if novelty is None:  # every alpha is 0: novelty's value never matters
            nov = _Spread(np.zeros(n_alphas), np.zeros(n_alphas))
        div = diversity_stats() if something_selected else _Spread(np.zeros(n_alphas), np.zeros(n_alphas))
        weights = np.stack([beta * den.scale, novelty_weight * nov.scale], axis=1)
        pick = _best_candidates(nearest, fixed_terms, fixed_max, weights,
                                diversity_weight * div.scale if something_selected else None, blocked,
                                whole_row)

        picks[:, step] = order[pick]
        diversity = nearest.distance[rows, pick] if something_selected else np.full(n_alphas, np.nan)
        z = {
            "z_density": (density_values[pick] - den.mean) * den.scale,
            "z_novelty": (novelty_values[pick] - nov.mean) * nov.scale,
            "z_diversity": (np.nan_to_num(diversity) - div.mean) * div.scale,
        }
        parts["density"][:, step] = density_values[pick]
        parts["novelty"][:, step] = np.nan if novelty is None else novelty_values[pick]
        parts["diversity"][:, step] = diversity
        for name, values in z.items():
            parts[name][:, step] = values
        parts["score"][:, step] = beta * z["z_density"] + (1.0 - beta) * (
            alphas * z["z_novelty"] + (1.0 - alphas) * z["z_diversity"])

        blocked[rows, pick] = -np.inf
        remaining[rows, pick] = False
        density_stats.remove(pick, blocked)
        novelty_stats.remove(pick, blocked)
        nearest.add(pick)
        nearest.touched[rows, nearest.block_of[pick]] = True  # one candidate fewer there

    # Eq. 9: the running nearest-selected distance is exactly what coverage averages
    # (weighted, when a calibration other than the paper's weighs the pool images).
    if coverage_weights is None:
        coverage = nearest.distance.mean(axis=1)
    else:
        weights = np.asarray(coverage_weights, dtype=np.float64)[order]
        coverage = (nearest.distance * weights).sum(axis=1) / weights.sum()
    return GreedyRun(alphas=alphas, indices=picks, coverage=coverage, components=parts)


def alpha_candidates(alpha, alpha_grid=None) -> np.ndarray:
    """The alphas to run: ``[alpha]`` for a fixed value, else the sorted unique grid.

    Returns ndarray of shape (n_alphas,), float64.
    """
    if isinstance(alpha, str):  # "auto"
        grid = DEFAULT_ALPHA_GRID if alpha_grid is None else alpha_grid
        return np.unique(np.asarray(grid, dtype=np.float64).ravel())
    return np.array([float(alpha)])


def xssr_select(
    pool,
    source=None,
    budget: int = 1,
    *,
    alpha="auto",
    beta: float = 0.5,
    k: int = 10,
    alpha_grid=None,
    metric: str = "euclidean",
    backend: str = "auto",
    labeled: np.ndarray | None = None,
    alpha_criterion: str = "coverage",
) -> XSSRRun:
    """XSSR selection of ``budget`` pool samples, choosing alpha by coverage if ``"auto"``.

    Parameters are not range-checked here beyond what the neighbour routines check;
    :func:`xssr.selection.select` validates everything and then calls this.

    Parameters
    ----------
    pool : array-like of shape (n_pool, n_features)
    source : array-like of shape (n_source, n_features) or None
    budget : int in [1, n_pool]
    alpha : "auto" or float in [0, 1]
    beta : float in [0, 1]
    k : int >= 1
    alpha_grid : array-like of shape (n_alphas,) or None
    metric : {"euclidean", "cosine"}
    backend : {"auto", "numpy", "faiss", "faiss-ivf"}

    Returns
    -------
    XSSRRun
    """
    auto = isinstance(alpha, str)
    alphas = alpha_candidates(alpha, alpha_grid)
    points = prepare_embeddings(pool, metric, name="pool_embeddings")
    novelty = None
    if source is not None:
        source_points = prepare_embeddings(source, metric, name="source_embeddings")
        novelty = nearest_distance(points, source_points, backend=backend)
    elif np.any(alphas > 0):
        raise ValueError(
            "The 'source_embeddings' parameter is required when alpha can be > 0 "
            f"(alpha={alpha!r}); pass source embeddings or set alpha=0. Got None instead."
        )
    density = -knn_mean_distance(points, k, backend=backend)

    weights = None
    if alpha_criterion == "shift-weighted-coverage" and (novelty is not None or auto):
        if novelty is None:
            raise ValueError("The 'alpha_criterion' 'shift-weighted-coverage' weighs the pool by its distance to the "
                             "source, so it needs source embeddings. Got None instead.")
        # Eq. 9 counts every pool image alike, so the alpha that spreads picks most evenly wins and
        # novelty is switched off by construction; here an image counts in proportion to its
        # distance from the source, so covering what the source does not already show matters.
        weights = novelty + 1e-12 * (novelty.max() + 1.0)
    elif alpha_criterion not in ("coverage", "shift-weighted-coverage"):
        raise ValueError(f"The 'alpha_criterion' parameter must be 'coverage' or 'shift-weighted-coverage'. "
                         f"Got {alpha_criterion!r} instead.")
    run = greedy_lockstep(points, density, novelty, alphas, beta, budget, labeled, weights)
    # The grid is sorted ascending and argmin returns the first minimum, so exact ties in
    # coverage go to the smallest alpha.
    best = int(np.argmin(run.coverage))
    curve = [(float(a), float(c)) for a, c in zip(run.alphas, run.coverage)] if auto else []
    if auto:
        logger.info(
            "XSSR auto alpha: %.3g (coverage %.6g) over %d grid values",
            run.alphas[best], run.coverage[best], run.alphas.size,
        )
        logger.debug("XSSR alpha curve: %s", curve)
    return XSSRRun(
        indices=run.indices[best].copy(),
        coverage=float(run.coverage[best]),
        alpha=float(run.alphas[best]),
        alpha_curve=curve,
        components={name: values[best].copy() for name, values in run.components.items()},
    )
