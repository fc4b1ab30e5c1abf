"""ProbCover cold-start selection (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022).

ProbCover looks for ``budget`` samples whose balls of radius ``delta`` cover as much of the
pool as possible. On the *delta-ball graph* (edge ``i -> j`` when
``||x_i - x_j|| <= delta``; every sample covers itself) it greedily picks the sample that
covers the most not-yet-covered samples, marks them covered, and repeats.

Delta is chosen by *purity*: a sample is pure when its delta-ball holds only samples of
its own k-means cluster, and the paper takes the largest delta that keeps at least 95 %
of the samples pure, with ``K`` = the number of classes. Segmentation has no image
classes, so ``K = budget`` clusters stands in for them here (one cluster per annotation,
as in TypiClust); pass ``n_clusters`` to :func:`choose_delta` to change that.

Choices the paper leaves open, and what this module does
--------------------------------------------------------
* Purity of every candidate delta comes from one number per sample, its distance to the
  nearest sample of another cluster: the sample is pure exactly when that distance is
  greater than delta. One chunked pass over the pool therefore gives the whole curve.
* Default candidates: 20 quantiles, from the 1st to the 99th percentile, of the distances
  from every sample to its ``k`` nearest neighbours, ``k = ceil(n_pool / n_clusters)``
  (about one cluster's worth of neighbours) capped at 100. The grid thus runs from
  "a ball holds one close neighbour" to "a ball holds about a cluster".
* If no candidate reaches the purity threshold the smallest candidate is used (and the
  choice is logged); purity never increases with delta. With ``K = budget`` the clusters
  are small and purity falls fast: on embeddings without cluster structure (e.g. random
  Gaussian, 10,000 x 256, budget 500) even the smallest default candidate is below 0.95
  and most balls hold only their own centre. ``purity_curve`` shows when this happens.
* Greedy ties (equal number of newly covered samples) go to a random priority order
  drawn once from ``random_state``, not to the lowest index: with a small delta many
  samples tie at gain 1, and the pool's file order (often grouped by site) must not
  decide among them. Once every sample is covered all gains are 0, so the rest of the
  budget is filled in that same random order (uniform random picks among the
  unselected, as the authors' code does), reported with ``newly_covered = 0``.

Memory
------
No ``n x n`` array is ever built. Both passes over the pool (purity, then the graph) work
on ``(chunk, n_pool)`` distance blocks of at most ~64 MB, and the graph is stored as a
``scipy.sparse`` CSR matrix, so memory is ``O(n_edges)``; a large delta on a big pool can
still give many edges. Blocks come from the float32 GEMM expansion in
:func:`~xssr.selection.neighbors.distances_from_rows` (about twice as fast as float64);
pairs within a worst-case float32 error bound of delta (or of a sample's nearest
other-cluster distance) are recomputed in float64 from coordinate differences, so the
graph is exactly ``dist <= delta`` and symmetric, and purity is exact. Greedy updates
touch only the rows of newly covered samples, so the greedy costs
``O(n_edges + budget * n_pool)``.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .checks import check_count, check_grid, check_positive_int, check_random_state, check_real, is_int, show
from .neighbors import (
    distances_from_rows,
    float32_exponent,
    nearest_distance,
    prepare_embeddings,
    squared_norms,
)
from .typiclust import kmeans_labels

logger = logging.getLogger(__name__)

PURITY_THRESHOLD = 0.95
N_CANDIDATES = 20
#: Cap on the neighbours used to build the default delta grid.
MAX_GRID_K = 100

# Rows per pass step are chosen so that a float64 (chunk, n_pool) block would fit in this;
# the float32 block plus its temporaries (boolean masks, a partition copy) stay near it.
_CHUNK_BYTES = 64 * 2**20


class DeltaChoice(NamedTuple):
    """Output of :func:`choose_delta`.

    delta : float, the chosen radius ; purity_curve : [(delta, purity), ...] for every
    candidate, ascending ; labels : (n_pool,) int64 k-means clusters used for purity.
    """

    delta: float
    purity_curve: list[tuple[float, float]]
    labels: np.ndarray


class ProbCoverPicks(NamedTuple):
    """ProbCover output.

    indices : (budget,) int64 in pick order ; coverage : float (Eq. 9 of the XSSR paper) ;
    newly_covered : (budget,) int64, samples first covered by each pick ; delta : float ;
    purity_curve : [(delta, purity), ...] (empty when delta was given) ;
    covered_fraction : float, share of the pool within delta of a pick.
    """

    indices: np.ndarray
    coverage: float
    newly_covered: np.ndarray
    delta: float
    purity_curve: list[tuple[float, float]]
    covered_fraction: float


# --------------------------------------------------------------------------- chunked passes
class _Blocks(NamedTuple):
    """Pool prepared for chunked distance blocks.

    exact : (n, d) float64, centred ; exponent : see :func:`float32_exponent` ;
    fast : (n, d) float32 copy of ``exact * 2**exponent`` ; fast_sq : (n,) its squared
    norms ; tol2 : bound on |d^2_fast - d^2_exact| for any pair. ``fast``, ``fast_sq`` and
    ``tol2`` are in scaled units: distances from ``fast`` are ``2**exponent`` times the
    true ones.
    """

    exact: np.ndarray
    fast: np.ndarray
    fast_sq: np.ndarray
    tol2: float
    exponent: int


def _blocks(points: np.ndarray) -> _Blocks:
    # Translation does not change distances; centring keeps the GEMM expansion accurate.
    exact = points - points.mean(axis=0)
    # Near unit scale, so that float32 neither overflows nor underflows.
    exponent = float32_exponent(exact)
    scaled = np.ldexp(exact, exponent)
    fast = scaled.astype(np.float32)
    max_sq = float(squared_norms(scaled).max(initial=0.0))
    # Worst-case float32 error of ||x||^2 + ||y||^2 - 2 x.y (d-term dot products, the
    # squared norms, and rounding the coordinates), with unit roundoff 2^-24.
    tol2 = (4.0 * exact.shape[1] + 24.0) * 2.0**-24 * max_sq
    return _Blocks(exact, fast, squared_norms(fast), tol2, exponent)


def _chunks(n_rows: int, chunk_rows: int | None):
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_BYTES // (8 * n_rows))
    for start in range(0, n_rows, chunk_rows):
        yield np.arange(start, min(start + chunk_rows, n_rows))


def _exact(points: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Float64 distances between ``points[rows]`` and ``points[cols]``, pair by pair.

    Pairs go in slices whose gathered coordinates stay under ``_CHUNK_BYTES``: a block
    can hand over hundreds of thousands of pairs, and gathering them all at once would
    hold pairs x n_features float64 values (gigabytes at 256 dimensions).
    """
    out = np.empty(rows.size, dtype=np.float64)
    # Two gathered copies and their difference are alive at once.
    step = max(1, _CHUNK_BYTES // (3 * 8 * points.shape[1]))
    for start in range(0, rows.size, step):
        diff = points[cols[start:start + step]] - points[rows[start:start + step]]
        out[start:start + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def _error_band(tol2: float, distance) -> np.ndarray:
    """Twice the largest |float32 distance - exact distance| for pairs at least ``distance`` apart.

    |a - b| = |a^2 - b^2| / (a + b): beyond ``distance`` the error is at most
    tol2 / distance, and never more than sqrt(tol2); doubled for the final rounding.
    All in the scaled units of :class:`_Blocks`.
    """
    distance = np.asarray(distance, dtype=np.float64)
    if tol2 == 0.0:  # every point at the origin: float32 is exact
        return np.zeros_like(distance)
    with np.errstate(divide="ignore"):
        return 2.0 * np.minimum(math.sqrt(tol2), tol2 / distance)


def _scan(points: np.ndarray, labels: np.ndarray, grid_k: int, chunk_rows=None):
    """One pass over all pairs.

    Returns ``foreign`` (n,), the distance from each sample to the nearest sample of
    another cluster (inf if there is none), ``knn`` (n, grid_k), float32 distances to
    the ``grid_k`` nearest other samples times ``2**exponent`` (unordered within a row;
    None when grid_k is 0), and ``exponent``. Blocks are float32; every pair within float32
    error of a row's foreign minimum is recomputed in float64, so ``foreign`` is exact.
    """
    blocks = _blocks(points)
    n = points.shape[0]
    foreign = np.full(n, np.inf)
    knn = np.empty((n, grid_k), dtype=np.float32) if grid_k else None
    for rows in _chunks(n, chunk_rows):
        dist = distances_from_rows(blocks.fast, blocks.fast_sq, rows)
        if grid_k:
            dist[np.arange(rows.size), rows] = np.inf  # a sample is not its own neighbour
            knn[rows] = np.partition(dist, grid_k - 1, axis=1)[:, :grid_k]
        dist[labels[rows][:, None] == labels[None, :]] = np.inf
        lowest = dist.min(axis=1)
        lowest[~np.isfinite(lowest)] = -np.inf  # no other cluster: nothing to refine
        # Only pairs that the float32 error could still make the row's nearest foreign
        # sample are recomputed; a band of sqrt(tol2) everywhere refined ~100x more pairs.
        band = _error_band(blocks.tol2, np.maximum(lowest, 0.0))
        near_r, near_c = np.nonzero(dist <= (lowest + band)[:, None])
        if near_r.size:
            np.minimum.at(foreign, rows[near_r], _exact(blocks.exact, rows[near_r], near_c))
    return foreign, knn, blocks.exponent


def delta_ball_graph(X, delta: float, *, chunk_rows: int | None = None) -> sp.csr_matrix:
    """Sparse delta-ball graph: entry ``(i, j)`` is True when ``||x_i - x_j|| <= delta``.

    Built ``chunk_rows`` rows at a time (default: as many as keep a float64 block of
    distances under ~64 MB), so memory is ``O(n_edges)``, never ``O(n^2)``. Blocks are
    computed in float32; pairs within float32 error of delta are recomputed in float64,
    so the graph is exactly ``dist <= delta``. The diagonal is always set (a sample covers
    itself) and the matrix is symmetric.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings in the space where distance is Euclidean (see ``prepare_embeddings``).
    delta : float >= 0
    chunk_rows : int >= 1 or None

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n_samples, n_samples), dtype bool
    """
    points = prepare_embeddings(X, "euclidean", name="X")
    delta = check_real(delta, "delta")
    if chunk_rows is not None:
        chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
    blocks = _blocks(points)
    n = points.shape[0]
    # The float32 blocks are in units scaled by 2**exponent; so are tol2 and margin.
    try:
        scaled = math.ldexp(delta, blocks.exponent)
    except OverflowError:  # far beyond the pool's diameter: every pair is inside
        scaled = math.inf
    margin = float(_error_band(blocks.tol2, scaled))
    index_dtype = np.int32 if n < 2**31 else np.int64
    columns, counts = [], np.zeros(n, dtype=np.int64)
    for rows in _chunks(n, chunk_rows):
        dist = distances_from_rows(blocks.fast, blocks.fast_sq, rows)
        inside = dist <= scaled - margin
        unsure = dist >= scaled - margin
        unsure &= dist <= scaled + margin
        unsure_r, unsure_c = np.nonzero(unsure)
        if unsure_r.size:
            within = _exact(blocks.exact, rows[unsure_r], unsure_c) <= delta
            inside[unsure_r[within], unsure_c[within]] = True
        inside[np.arange(rows.size), rows] = True
        _, cols = np.nonzero(inside)  # row-major: columns come sorted within each row
        columns.append(cols.astype(index_dtype))
        counts[rows] = np.count_nonzero(inside, axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate(columns)
    data = np.ones(indices.size, dtype=bool)
    logger.debug("delta-ball graph: n=%d delta=%.6g edges=%d", n, delta, indices.size)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


# --------------------------------------------------------------------------- delta
def ball_purity(foreign: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Purity ``(n_deltas,)``: share of samples whose nearest other-cluster sample is > delta."""
    ordered = np.sort(foreign)
    impure = np.searchsorted(ordered, np.asarray(deltas, dtype=np.float64), side="right")
    return 1.0 - impure / foreign.size


def choose_delta(
    X,
    n_clusters: int,
    purity_threshold: float = PURITY_THRESHOLD,
    candidates=None,
    random_state=None,
    *,
    metric: str = "euclidean",
    n_init: int = 1,
    chunk_rows: int | None = None,
) -> DeltaChoice:
    """Largest candidate delta whose ball purity is at least ``purity_threshold``.

    The pool is clustered with k-means into ``n_clusters`` clusters. A sample is pure at
    delta when every sample within delta of it lies in its own cluster; purity is the
    share of pure samples. The paper uses ``K`` = number of classes; for segmentation
    there are none, and :func:`probcover_select` passes ``n_clusters = budget``.

    Parameters
    ----------
    X : array-like of shape (n_pool, n_features)
    n_clusters : int in [1, n_pool]
    purity_threshold : float in [0, 1]
    candidates : array-like of shape (n_candidates,) or None
        Deltas to try (sorted and de-duplicated). Default: 20 quantiles (1st to 99th
        percentile) of the distances to the ``ceil(n_pool / n_clusters)`` (at most 100)
        nearest neighbours.
    random_state : int, None or numpy Generator
        Seeds k-means.
    metric : {"euclidean", "cosine"}
    n_init : int >= 1
        k-means restarts.
    chunk_rows : int >= 1 or None
        Rows per distance block; None keeps each block under ~64 MB.

    Returns
    -------
    DeltaChoice
        If no candidate reaches the threshold, the smallest candidate.
    """
    points = prepare_embeddings(X, metric, name="X")
    n = points.shape[0]
    if not is_int(n_clusters) or not 1 <= n_clusters <= n:
        raise ValueError(
            f"The 'n_clusters' parameter must be an int in [1, {n}] (the pool size). "
            f"Got {show(n_clusters)} instead."
        )
    purity_threshold = check_real(purity_threshold, "purity_threshold", high=1.0)
    grid = None if candidates is None else np.unique(check_grid(candidates, "candidates"))
    n_init = check_positive_int(n_init, "n_init")
    if chunk_rows is not None:
        chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
    rng = check_random_state(random_state)

    labels = kmeans_labels(points, int(n_clusters), rng, n_init)
    grid_k = 0
    if grid is None:
        grid_k = min(n - 1, MAX_GRID_K, math.ceil(n / n_clusters))
    foreign, knn, exponent = _scan(points, labels, grid_k, chunk_rows)
    if grid is None:
        levels = np.linspace(0.01, 0.99, N_CANDIDATES)
        if grid_k:
            # Back from the scaled float32 units, in float64 where every scale fits.
            grid = np.unique(np.ldexp(np.quantile(knn, levels).astype(np.float64), -exponent))
        else:
            grid = np.zeros(1)

    purity = ball_purity(foreign, grid)
    passing = np.flatnonzero(purity >= purity_threshold)
    if passing.size:
        delta = float(grid[passing[-1]])
    else:
        delta = float(grid[0])
        logger.info(
            "ProbCover: no candidate delta reaches purity %.3g (best %.3g); using the "
            "smallest, %.6g", purity_threshold, purity.max(), delta,
        )
    curve = [(float(d), float(p)) for d, p in zip(grid, purity)]
    return DeltaChoice(delta=delta, purity_curve=curve, labels=labels)


# --------------------------------------------------------------------------- greedy
def max_coverage_greedy(
    graph: sp.csr_matrix, budget: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy maximum coverage on a symmetric boolean graph with a set diagonal.

    Each step picks the unselected sample whose ball holds the most uncovered samples.
    Ties, including the all-covered case where every gain is 0, go to a random priority
    order drawn once from ``rng``.

    Returns ``(picks, newly_covered, covered)``: (budget,) int64 pick order, (budget,)
    int64 samples first covered by each pick, and the final (n,) bool coverage mask.
    """
    n = graph.shape[0]
    # key = gain * n + tie-break, so one argmax finds the largest gain and, among equal
    # gains, the highest random priority. gain[i] = uncovered samples in the ball of i;
    # the graph is symmetric, so a newly covered sample c lowers the gain of exactly the
    # samples in row c.
    gain = np.diff(graph.indptr).astype(np.int64)
    key = gain * n + rng.permutation(n)
    covered = np.zeros(n, dtype=bool)
    picks = np.empty(budget, dtype=np.int64)
    newly = np.zeros(budget, dtype=np.int64)
    for step in range(budget):
        pick = int(np.argmax(key))
        picks[step] = pick
        key[pick] = -1  # never again
        ball = graph.indices[graph.indptr[pick]: graph.indptr[pick + 1]]
        new = ball[~covered[ball]]
        if new.size:
            covered[new] = True
            newly[step] = new.size
            key -= np.bincount(graph[new].indices, minlength=n) * n
    logger.debug(
        "ProbCover greedy: %d of %d picks covered new samples", np.count_nonzero(newly), budget
    )
    return picks, newly, covered


def probcover_select(
    X,
    budget: int,
    random_state=None,
    *,
    delta="auto",
    n_clusters: int | None = None,
    purity_threshold: float = PURITY_THRESHOLD,
    candidates=None,
    n_init: int = 1,
    metric: str = "euclidean",
    backend: str = "auto",
) -> ProbCoverPicks:
    """ProbCover selection: greedy maximum coverage of the delta-ball graph.

    Parameters
    ----------
    X : array-like of shape (n_pool, n_features)
    budget : int in [1, n_pool]
    random_state : int, None or numpy Generator
        Seeds k-means for delta="auto" and the random tie-break order of the greedy.
    delta : "auto" or float >= 0
        Ball radius; "auto" uses :func:`choose_delta`.
    n_clusters : int or None
        k-means clusters for the purity criterion; default ``budget``.
    purity_threshold : float in [0, 1]
    candidates : array-like or None
        Delta grid for delta="auto" (see :func:`choose_delta`).
    n_init : int >= 1
        k-means restarts.
    metric : {"euclidean", "cosine"}
    backend : {"auto", "numpy", "faiss", "faiss-ivf"}
        Neighbour search for the reported coverage.

    Returns
    -------
    ProbCoverPicks
    """
    points = prepare_embeddings(X, metric, name="X")
    n_pool = points.shape[0]
    budget = check_count(budget, n_pool)
    n_init = check_positive_int(n_init, "n_init")
    rng = check_random_state(random_state)
    delta = check_real(delta, "delta", keyword="auto")
    if delta == "auto":
        choice = choose_delta(
            points, budget if n_clusters is None else n_clusters, purity_threshold,
            candidates, rng, n_init=n_init,
        )
        delta, curve = choice.delta, choice.purity_curve
    else:
        curve = []

    graph = delta_ball_graph(points, delta)
    picks, newly, covered = max_coverage_greedy(graph, budget, rng)
    coverage = float(nearest_distance(points, points[picks], backend=backend).mean())
    covered_fraction = float(covered.mean())
    logger.debug(
        "ProbCover: delta=%.6g, %d edges, %.1f%% covered, coverage %.6g",
        delta, graph.nnz, 100 * covered_fraction, coverage,
    )
    return ProbCoverPicks(
        indices=picks, coverage=coverage, newly_covered=newly, delta=float(delta),
        purity_curve=curve, covered_fraction=covered_fraction,
    )
