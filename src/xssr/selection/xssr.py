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

from .neighbors import (
    distances_from_rows,
    knn_mean_distance,
    nearest_distance,
    prepare_embeddings,
    squared_norms,
)

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


def _zscore_remaining(values: np.ndarray, remaining: np.ndarray, n_remaining: int) -> np.ndarray:
    """z-score each row of ``values`` over its remaining candidates.

    values : (1 or n_alphas, n_pool) ; remaining : (n_alphas, n_pool) bool.
    Returns (n_alphas, n_pool); entries of removed candidates are 0, rows with zero
    spread are all 0.
    """
    mean = np.where(remaining, values, 0.0).sum(axis=1, keepdims=True) / n_remaining
    dev = np.where(remaining, values - mean, 0.0)
    std = np.sqrt((dev * dev).sum(axis=1, keepdims=True) / n_remaining)
    flat = std <= _ZERO_STD_RTOL * np.abs(mean)
    dev /= np.where(flat, 1.0, std)
    dev[flat[:, 0]] = 0.0
    return dev


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
        Row ``r`` is exactly what a run with ``alphas=[alphas[r]]`` returns.
    """
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if novelty is None and np.any(alphas > 0):
        raise ValueError("Novelty values are required when any alpha is > 0.")
    n_pool, n_alphas = pool.shape[0], alphas.size
    alpha_col = alphas[:, None]
    rows = np.arange(n_alphas)

    # Translation does not change distances; centring keeps the GEMM expansion accurate.
    centred = pool - pool.mean(axis=0)
    sq_norms = squared_norms(centred)

    remaining = np.ones((n_alphas, n_pool), dtype=bool)
    nearest_selected = np.full((n_alphas, n_pool), np.inf)
    n_labeled = 0 if labeled is None else len(labeled)
    if n_labeled:
        remaining[:, labeled] = False
        nearest_selected[:] = distances_from_rows(centred, sq_norms, labeled).min(axis=0)
    picks = np.empty((n_alphas, budget), dtype=np.int64)
    parts = {name: np.empty((n_alphas, budget)) for name in COMPONENTS}
    density_row = np.asarray(density, dtype=np.float64)[None, :]
    novelty_row = None if novelty is None else np.asarray(novelty, dtype=np.float64)[None, :]

    for step in range(budget):
        n_remaining = n_pool - n_labeled - step
        something_selected = step > 0 or n_labeled > 0
        # Terms are z-scored even when their weight is 0 so that the reported components
        # describe each pick fully; the cost is small next to the distance update.
        z_density = _zscore_remaining(density_row, remaining, n_remaining)
        # Without source embeddings every alpha is 0, so novelty's value never matters.
        z_novelty = (
            0.0 if novelty_row is None else _zscore_remaining(novelty_row, remaining, n_remaining)
        )
        # Nothing is selected before the first pick: diversity is undefined and contributes 0.
        z_diversity = (
            _zscore_remaining(nearest_selected, remaining, n_remaining) if something_selected else 0.0
        )
        score = beta * z_density + (1.0 - beta) * (
            alpha_col * z_novelty + (1.0 - alpha_col) * z_diversity
        )
        score = np.where(remaining, score, -np.inf)
        pick = np.argmax(score, axis=1)  # first maximum: ties go to the lowest index

        picks[:, step] = pick
        parts["density"][:, step] = density_row[0, pick]
        parts["novelty"][:, step] = np.nan if novelty_row is None else novelty_row[0, pick]
        parts["diversity"][:, step] = nearest_selected[rows, pick] if something_selected else np.nan
        for name, z in (
            ("z_density", z_density), ("z_novelty", z_novelty), ("z_diversity", z_diversity)
        ):
            parts[name][:, step] = z[rows, pick] if isinstance(z, np.ndarray) else 0.0
        parts["score"][:, step] = score[rows, pick]

        remaining[rows, pick] = False
        # Rows often agree on a pick; compute each distinct picked sample's row once.
        unique_picks, row_of = np.unique(pick, return_inverse=True)
        dist = distances_from_rows(centred, sq_norms, unique_picks)
        np.minimum(nearest_selected, dist[row_of], out=nearest_selected)

    # Eq. 9: the running nearest-selected distance is exactly what coverage averages
    # (weighted, when a calibration other than the paper's weighs the pool images).
    if coverage_weights is None:
        coverage = nearest_selected.mean(axis=1)
    else:
        coverage = (nearest_selected * coverage_weights).sum(axis=1) / coverage_weights.sum()
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
    backend : {"auto", "numpy", "faiss"}

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
