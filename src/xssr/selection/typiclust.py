"""TypiClust cold-start selection (Hacohen, Dekel & Weinshall, ICML 2022).

The pool is clustered with k-means into ``budget`` clusters (the paper uses
``K = n_labelled + budget``; in cold start nothing is labelled, so ``K = budget``). Each
pick takes one cluster and selects its most *typical* sample, where::

    typicality(x) = 1 / mean distance from x to its k nearest neighbours in the cluster

with ``k = min(20, cluster size - 1)``. The neighbours are searched among the cluster's
own samples, as the authors' code does, not in the whole pool.

Choices the paper leaves open, and what this module does
--------------------------------------------------------
* Cluster order: clusters of at least ``min_cluster_size`` (5) samples come first, largest
  first, one pick each. When every such cluster has been visited and budget is left, they
  are visited again in the same order (the authors' code cycles over them the same way),
  each time taking the most typical sample among those not yet picked. Clusters smaller
  than ``min_cluster_size`` are likely outliers; they are used only when no larger
  cluster has samples left. With ``K = budget`` a second round happens only when some
  clusters are small or k-means finds fewer clusters than asked (duplicated embeddings).
* Typicality is recomputed at each visit among the cluster's not-yet-picked samples, with
  ``k = min(20, remaining - 1)``. A cluster with one remaining sample has no neighbours:
  that sample is picked with typicality NaN. Exact duplicates give a mean distance of 0
  and typicality ``inf``.
* Ties (equal mean distance) go to the lowest pool index; equal-sized clusters go in
  order of their k-means label. With a fixed ``random_state`` the result is reproducible.
* k-means is scikit-learn's ``KMeans`` (k-means++ seeding) with ``n_init=1`` by default,
  as scikit-learn's own ``n_init="auto"`` does for k-means++: the seeding is already
  good, and each restart costs a full clustering (2 to 5 s for 500 clusters on
  10,000 x 256 with 2 cores).
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

from .checks import check_count, check_positive_int, check_random_state
from .neighbors import knn_mean_distance, nearest_distance, prepare_embeddings

logger = logging.getLogger(__name__)

#: Neighbours used for typicality, as in the paper.
TYPICALITY_K = 20
#: Above this many pool samples k-means runs on mini-batches (see :func:`kmeans_labels`).
MINIBATCH_MIN_SAMPLES = 50_000


class TypiclustPicks(NamedTuple):
    """TypiClust output.

    indices : (budget,) int64 in pick order ; coverage : float (Eq. 9 of the XSSR paper) ;
    typicality : (budget,) float64 at pick time ; cluster_size : (budget,) int64, size of
    the picked sample's cluster ; labels : (n_pool,) int64 k-means cluster of every sample.
    """

    indices: np.ndarray
    coverage: float
    typicality: np.ndarray
    cluster_size: np.ndarray
    labels: np.ndarray


def kmeans_labels(points: np.ndarray, n_clusters: int, rng: np.random.Generator, n_init: int = 1):
    """k-means cluster labels ``(n_samples,)`` int64 for already prepared ``points``.

    Full (Lloyd) k-means up to :data:`MINIBATCH_MIN_SAMPLES` samples. Above that each
    Lloyd iteration costs ``n_samples * n_clusters * n_features`` and the clustering
    dominates the selection, so ``MiniBatchKMeans`` is used: its iterations cost the same
    whatever the pool size, for a slightly worse partition.

    The scikit-learn seed is drawn from ``rng``, so a seeded Generator gives the same labels.
    """
    seed = int(rng.integers(np.iinfo(np.int32).max))
    if points.shape[0] > MINIBATCH_MIN_SAMPLES:
        model = MiniBatchKMeans(
            n_clusters=n_clusters, n_init=n_init, random_state=seed, batch_size=4096
        )
    else:
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (duplicated embeddings) is handled by the
        # callers: empty clusters are simply never visited.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        labels = model.fit_predict(points)
    return labels.astype(np.int64)


def _visit_order(sizes: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Non-empty cluster ids, large clusters first (by size, descending), then small ones."""
    ids = np.flatnonzero(sizes)
    small = sizes[ids] < min_cluster_size
    # lexsort sorts by the last key first: small last, then larger size first, then id.
    return ids[np.lexsort((ids, -sizes[ids], small))]


def _most_typical(points: np.ndarray, members: np.ndarray, backend: str) -> tuple[int, float]:
    """Position in ``members`` of the most typical sample, and its typicality."""
    if members.size == 1:
        return 0, float("nan")
    k = min(TYPICALITY_K, members.size - 1)
    mean_dist = knn_mean_distance(points[members], k, backend=backend)
    best = int(np.argmin(mean_dist))  # first minimum = lowest pool index (members sorted)
    with np.errstate(divide="ignore"):
        return best, float(1.0 / mean_dist[best])


def typiclust_select(
    X,
    budget: int,
    random_state=None,
    *,
    min_cluster_size: int = 5,
    n_init: int = 1,
    metric: str = "euclidean",
    backend: str = "auto",
) -> TypiclustPicks:
    """TypiClust selection: the most typical sample of each of ``budget`` k-means clusters.

    Parameters
    ----------
    X : array-like of shape (n_pool, n_features)
    budget : int in [1, n_pool]
        Number of samples to pick; also the number of k-means clusters.
    random_state : int, None or numpy Generator
        Seeds k-means (the only random step).
    min_cluster_size : int >= 1
        Clusters with fewer samples are used only when no larger cluster has samples left.
    n_init : int >= 1
        k-means restarts.
    metric : {"euclidean", "cosine"}
    backend : {"auto", "numpy", "faiss", "faiss-ivf"}
        Neighbour search for typicality and coverage.

    Returns
    -------
    TypiclustPicks
    """
    points = prepare_embeddings(X, metric, name="X")
    n_pool = points.shape[0]
    budget = check_count(budget, n_pool)
    min_cluster_size = check_positive_int(min_cluster_size, "min_cluster_size")
    n_init = check_positive_int(n_init, "n_init")
    rng = check_random_state(random_state)

    labels = kmeans_labels(points, budget, rng, n_init)
    sizes = np.bincount(labels, minlength=budget)
    order = _visit_order(sizes, min_cluster_size)
    # One stable sort groups every cluster's members in increasing index order, as a scan of the
    # labels per cluster would (that scan is budget x n_pool: 5 * 10^10 steps at a million images).
    by_cluster = np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])
    members = {int(c): by_cluster[c] for c in order}
    large = [int(c) for c in order if sizes[c] >= min_cluster_size]
    small = [int(c) for c in order if sizes[c] < min_cluster_size]

    picks = np.empty(budget, dtype=np.int64)
    typicality = np.empty(budget)
    step = 0
    for group in (large, small):
        # Round-robin over the group until its clusters run out of samples.
        while step < budget and group:
            for cluster in list(group):
                if step == budget:
                    break
                left = members[cluster]
                position, typicality[step] = _most_typical(points, left, backend)
                picks[step] = left[position]
                members[cluster] = np.delete(left, position)
                if members[cluster].size == 0:
                    group.remove(cluster)
                step += 1

    coverage = float(nearest_distance(points, points[picks], backend=backend).mean())
    logger.debug(
        "TypiClust: %d picks from %d non-empty clusters (%d small), coverage %.6g",
        budget, order.size, len(small), coverage,
    )
    return TypiclustPicks(
        indices=picks, coverage=coverage, typicality=typicality,
        cluster_size=sizes[labels[picks]].astype(np.int64), labels=labels,
    )
