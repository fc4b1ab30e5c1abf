"""Exact nearest-neighbour distances between embeddings, with bounded memory.

Everything here is plain numpy (FAISS optional). Distances are found in two passes:

1. *search*: a float32 GEMM (``||y||^2 - 2 x.y``) or a FAISS ``IndexFlatL2`` ranks the
   reference rows for each query row, in chunks of query rows so that the temporary
   ``(chunk, n_reference)`` block stays under ~128 MB;
2. *refinement*: the distances to the few neighbours that were found are recomputed in
   float64 from the coordinate differences.

float32 keeps the search fast; the refinement makes the returned values exact to float64
rounding for the neighbours found (the float32 ranking can only swap neighbours whose
distances agree to float32 precision, which changes the value by no more than that).
The search runs on the embeddings times a power of two that brings them near unit scale
(:func:`float32_exponent`), so that float32 neither overflows nor underflows whatever
their magnitude.

Both metrics reduce to Euclidean distance: ``metric="cosine"`` L2-normalises the rows once
(:func:`prepare_embeddings`) and then measures Euclidean distance, which equals
``sqrt(2 - 2 cos)`` and is therefore monotone in the cosine distance ``1 - cos``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .checks import check_choice, check_embeddings, check_positive_int

logger = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
BACKENDS = ("auto", "numpy", "faiss", "faiss-ivf")

# Upper bound on the float32 (chunk, n_reference) block built by one search step.
_CHUNK_BYTES = 128 * 2**20
# "auto" hands the search to FAISS above this many query x reference pairs; below it the
# numpy path is as fast and avoids FAISS's thread start-up.
_FAISS_MIN_PAIRS = 5e7


def prepare_embeddings(X, metric: str = "euclidean", *, name: str = "X") -> np.ndarray:
    """Map embeddings into the space where the chosen metric is Euclidean distance.

    This is the only place that knows about ``metric``: every other routine in the
    selection package measures plain Euclidean distance on what this returns.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    metric : {"euclidean", "cosine"}
        "cosine" L2-normalises each row; Euclidean distance between unit vectors is
        ``sqrt(2 - 2 cos)``, monotone in the cosine distance.
    name : str
        Parameter name used in error messages.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float64
    """
    check_choice(metric, "metric", METRICS)
    array = check_embeddings(X, name)
    if metric == "cosine":
        # Each row is first scaled by a power of two to a largest entry in [0.5, 1): the
        # squares in its norm would underflow for entries below ~1e-154 (a nonzero row
        # with norm 0, or a norm off by the lost digits). Exact, so the direction is kept.
        _, exponents = np.frexp(np.abs(array).max(axis=1))
        array = np.ldexp(array, -exponents[:, None])
        norms = np.linalg.norm(array, axis=1)
        n_zero = int(np.count_nonzero(norms == 0))
        if n_zero:
            raise ValueError(
                f"The '{name}' parameter must have no all-zero rows when metric='cosine' "
                f"(a zero vector has no direction). Got {n_zero} all-zero rows instead."
            )
        array = array / norms[:, None]
    return array


# --------------------------------------------------------------------------- search
def _resolve_backend(backend: str, n_pairs: float) -> str:
    check_choice(backend, "backend", BACKENDS)
    if backend == "numpy":
        return "numpy"
    try:
        import faiss  # noqa: F401  (lazy: FAISS is an optional dependency)
    except ImportError as error:
        if backend != "auto":
            raise ImportError(
                f"backend={backend!r} needs the faiss package; install it with "
                "'pip install faiss-cpu' or use backend='numpy'."
            ) from error
        return "numpy"
    if backend == "auto":
        return "faiss" if n_pairs > _FAISS_MIN_PAIRS else "numpy"
    return backend


def float32_exponent(*arrays: np.ndarray) -> int:
    """Power of two ``e`` such that the largest entry of ``arrays`` times ``2**e`` is in [0.5, 1).

    float32 holds magnitudes from about 1e-38 to 3e38, and a squared distance has to fit
    too: embeddings around 1e20 overflow a float32 GEMM (inf, then NaN scores) and ones
    around 1e-20 underflow it (every score 0), so the search ranks arbitrary rows.
    Multiplying by a power of two is exact and scales every distance alike, so the ranking
    is that of the unscaled embeddings. 0 when every entry is 0.
    """
    largest = max(float(np.abs(a).max(initial=0.0)) for a in arrays)
    return -math.frexp(largest)[1] if largest > 0 else 0


def _search_numpy(
    queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool, rows: np.ndarray | None = None
) -> np.ndarray:
    """Indices ``(n, k)`` of the k nearest reference rows of every query row, or of the query rows
    ``rows`` only (unordered within a row); ``exclude_self`` leaves out the reference row with the
    query's own index."""
    n_queries, n_reference = (queries.shape[0] if rows is None else rows.size), reference.shape[0]
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    chunk = max(1, _CHUNK_BYTES // (n_reference * reference.itemsize))
    found = np.empty((n_queries, k), dtype=np.int64)
    for start in range(0, n_queries, chunk):
        stop = min(start + chunk, n_queries)
        # A slice is a view: the common whole-pool search copies no query rows.
        own = np.arange(start, stop) if rows is None else rows[start:stop]
        # ||q||^2 is the same along a row, so it cannot change the ranking: leave it out.
        scores = (queries[start:stop] if rows is None else queries[own]) @ reference.T
        scores *= -2.0
        scores += ref_sq
        if exclude_self:
            # By index, not by distance == 0: duplicated rows must still count as neighbours.
            scores[np.arange(stop - start), own] = np.inf
        if k == 1:
            found[start:stop, 0] = np.argmin(scores, axis=1)
        else:
            found[start:stop] = np.argpartition(scores, k - 1, axis=1)[:, :k]
    return found


def _search_faiss(
    queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool
) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatL2(reference.shape[1])  # exact (brute-force) L2 search
    index.add(np.ascontiguousarray(reference, dtype=np.float32))
    n_wanted = k + 1 if exclude_self else k
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), n_wanted)
    found = found.astype(np.int64, copy=False)
    return _drop_self(found, k) if exclude_self else found


def _drop_self(found: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` from FAISS's ``(n, k + 1)`` answers to queries that are the reference rows.

    The query itself is dropped if FAISS returned it; otherwise it lost a tie with duplicates
    at distance 0, and the first k returned are all valid neighbours.
    """
    is_self = found == np.arange(found.shape[0])[:, None]
    drop = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), k)
    keep = np.ones_like(found, dtype=bool)
    keep[np.arange(found.shape[0]), drop] = False
    return found[keep].reshape(found.shape[0], k)


def ivf_lists(n_reference: int) -> int:
    """Inverted lists for an approximate index: about 4 sqrt(n), with at least 39 training
    points per list (FAISS warns below that), and 1 for small references."""
    return int(max(1, min(4 * math.isqrt(n_reference), n_reference // 39)))


#: Lists probed per query: recall against exact search is measured by ``xssr bench cost``
#: (``knn_recall``) and stated in docs/benchmarks.md.
IVF_PROBE_FRACTION = 1 / 16


def _search_faiss_ivf(
    queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool
) -> np.ndarray:
    """Approximate neighbours from a FAISS inverted-file index (IVF, flat storage).

    The reference rows are split into k-means lists; a query scans only the lists whose
    centres are nearest it, so a search costs about ``n_queries * n_reference / 16``
    distances instead of all of them. A true neighbour lying in an unprobed list is missed
    (the measured recall says how often); the distances to what is found stay exact.
    Rows for which the probed lists hold fewer than ``k`` other rows are searched exactly.
    """
    import faiss

    n_reference, dim = reference.shape
    n_lists = ivf_lists(n_reference)
    if n_lists == 1:  # too few rows to split: one list is exact search
        return _search_faiss(queries, reference, k, exclude_self)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, n_lists)
    # FAISS trains its k-means with a fixed seed, so the index (and the result) is repeatable.
    index.train(np.ascontiguousarray(reference[:: max(1, n_reference // (256 * n_lists))]))
    index.add(np.ascontiguousarray(reference))
    index.nprobe = max(1, math.ceil(n_lists * IVF_PROBE_FRACTION))
    n_wanted = k + 1 if exclude_self else k
    _, found = index.search(np.ascontiguousarray(queries), n_wanted)
    found = found.astype(np.int64, copy=False)
    if exclude_self:
        found = _drop_self(found, k)
    short = np.flatnonzero((found < 0).any(axis=1))  # -1: the probed lists ran out of rows
    if short.size:
        found[short] = _search_numpy(queries, reference, k, exclude_self, rows=short)
    return found


def knn_recall(X, k: int = 10, *, n_queries: int = 1000, backend: str = "faiss-ivf",
               random_state=0) -> float:
    """Share of the true ``k`` nearest neighbours that ``backend`` finds, over sampled rows.

    The rows of ``X`` are the reference, as for the density term; ``n_queries`` of them
    are searched both exactly and with ``backend``.
    """
    points = prepare_embeddings(X, "euclidean", name="X")
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(points.shape[0], min(n_queries, points.shape[0]), replace=False))
    centred = points - points.mean(axis=0)
    fast = np.ldexp(centred, float32_exponent(centred)).astype(np.float32)
    k = min(k, points.shape[0] - 1)
    exact = _search_numpy(fast, fast, k, True, rows=rows)
    used = _resolve_backend(backend, float(points.shape[0]) ** 2)
    search = {"faiss-ivf": _search_faiss_ivf, "faiss": _search_faiss, "numpy": _search_numpy}[used]
    found = search(fast, fast, k, True)[rows]
    hits = sum(np.intersect1d(a, b).size for a, b in zip(exact, found))
    return hits / exact.size


def _refine(queries: np.ndarray, reference: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Exact float64 distances ``(n_queries, k)`` from each query to its found neighbours."""
    n_queries, k = found.shape
    per_row = k * queries.shape[1] * 8
    chunk = max(1, _CHUNK_BYTES // per_row)
    out = np.empty((n_queries, k), dtype=np.float64)
    for start in range(0, n_queries, chunk):
        stop = min(start + chunk, n_queries)
        diff = reference[found[start:stop]] - queries[start:stop, None, :]
        out[start:stop] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out


def _neighbour_distances(
    queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool, backend: str
) -> np.ndarray:
    """Exact distances ``(n_queries, k)`` to the k nearest reference rows (float64 inputs)."""
    # Distances are translation invariant; centring shrinks the norms so the float32
    # expansion ||y||^2 - 2 x.y loses fewer digits to cancellation.
    centre = reference.mean(axis=0)
    queries_c = queries - centre
    reference_c = queries_c if exclude_self else reference - centre
    used = _resolve_backend(backend, float(queries.shape[0]) * reference.shape[0])
    logger.debug(
        "neighbour search: %d x %d, k=%d, backend=%s",
        queries.shape[0], reference.shape[0], k, used,
    )
    search = {"faiss-ivf": _search_faiss_ivf, "faiss": _search_faiss, "numpy": _search_numpy}[used]
    exponent = float32_exponent(queries_c, reference_c)
    queries_32 = np.ldexp(queries_c, exponent).astype(np.float32)
    reference_32 = (
        queries_32 if exclude_self else np.ldexp(reference_c, exponent).astype(np.float32)
    )
    found = search(queries_32, reference_32, k, exclude_self)
    return _refine(queries_c, reference_c, found)


def knn_mean_distance(
    X, k: int = 10, *, metric: str = "euclidean", backend: str = "auto"
) -> np.ndarray:
    """Mean distance from each row to its k nearest *other* rows (paper Eq. 5).

    The row itself is excluded by index, so exact duplicates still count as neighbours
    at distance 0. If ``n_samples - 1 < k`` the mean runs over all ``n_samples - 1``
    other rows; a single row gets 0.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k : int >= 1
    metric : {"euclidean", "cosine"}
    backend : {"auto", "numpy", "faiss", "faiss-ivf"}
        "auto" uses FAISS (exact ``IndexFlatL2``) when it is installed and the problem
        has more than 5e7 pairs, numpy otherwise. These give the same values up to
        float32 ranking ties. "faiss-ivf" is approximate (an inverted-file index probing
        1/16 of its lists, :func:`_search_faiss_ivf`): for pools too large for exact search.

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    k = check_positive_int(k, "k")
    points = prepare_embeddings(X, metric, name="X")
    n = points.shape[0]
    k_used = min(int(k), n - 1)
    if k_used == 0:
        return np.zeros(n, dtype=np.float64)
    dist = _neighbour_distances(points, points, k_used, exclude_self=True, backend=backend)
    return dist.mean(axis=1)


def nearest_distance(
    X, Y, *, metric: str = "euclidean", backend: str = "auto"
) -> np.ndarray:
    """Distance from each row of ``X`` to its nearest row of ``Y`` (paper Eq. 8).

    Parameters
    ----------
    X : array-like of shape (n_x, n_features)
    Y : array-like of shape (n_y, n_features)
    metric : {"euclidean", "cosine"}
    backend : {"auto", "numpy", "faiss", "faiss-ivf"}

    Returns
    -------
    ndarray of shape (n_x,), float64
    """
    queries = prepare_embeddings(X, metric, name="X")
    reference = prepare_embeddings(Y, metric, name="Y")
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(
            f"The 'Y' parameter must have the same number of features as 'X' "
            f"({queries.shape[1]}). Got {reference.shape[1]} instead."
        )
    return _neighbour_distances(queries, reference, 1, exclude_self=False, backend=backend)[:, 0]


# --------------------------------------------------------------------------- greedy helper
def squared_norms(X: np.ndarray) -> np.ndarray:
    """Row squared norms ``(n_samples,)`` of a float64 array."""
    return np.einsum("ij,ij->i", X, X)


def distances_from_rows(X: np.ndarray, sq_norms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(rows), n_samples)`` from ``X[rows]`` to every row of ``X``.

    One GEMM for all requested rows. ``X`` is float64 (already prepared and, ideally,
    centred), ``sq_norms`` its :func:`squared_norms`. The distance of a row to itself is
    set to exactly 0.
    """
    rows = np.asarray(rows, dtype=np.int64)
    # A one-row product goes to BLAS gemv, whose rounding differs from gemm's. Padding to
    # two rows keeps a single-alpha greedy run closer to its row of the lockstep run. It is
    # not a bitwise guarantee: gemm's blocking, and so its rounding, depends on the row
    # count and on the processor's kernels, so the two agree to rounding only.
    padded = rows if rows.size >= 2 else np.repeat(rows, 2)
    dist = X[padded] @ X.T
    dist *= -2.0
    dist += sq_norms[padded][:, None]
    dist += sq_norms[None, :]
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    dist = dist[: rows.size]
    dist[np.arange(rows.size), rows] = 0.0
    return dist
