"""TypiClust: hand-built blobs, a brute-force check of typicality, properties, errors."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import select, typiclust_select
from xssr.selection import typiclust as typiclust_module


def ring_blob(centre, size):
    """``size`` points: ``centre`` plus ``size - 1`` points evenly spaced on a unit circle.

    The centre is at distance 1 from every other point, so with k = size - 1 its mean
    neighbour distance is exactly 1; every ring point averages more (it has neighbours
    across the circle at distance up to 2). The centre is the unique most typical point
    while size <= 21 (k = 20 reaches every point).
    """
    angles = 2 * np.pi * np.arange(size - 1) / (size - 1)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.vstack([[0.0, 0.0], ring]) + np.asarray(centre, dtype=float)


def blobs(sizes, seed=0):
    """Blobs 100 apart, rows shuffled; returns (X, centre_index per blob, blob of each row)."""
    parts = [ring_blob((100.0 * b, 50.0 * (b % 2)), size) for b, size in enumerate(sizes)]
    X = np.vstack(parts)
    blob = np.repeat(np.arange(len(sizes)), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    perm = np.random.default_rng(seed).permutation(len(X))
    where = np.argsort(perm)  # new position of each old row
    return X[perm], where[first], blob[perm]


def test_one_pick_per_blob_at_the_centre_largest_blob_first():
    X, centres, _ = blobs([8, 20, 12])
    picks = typiclust_select(X, 3, random_state=0)
    np.testing.assert_array_equal(picks.indices, centres[[1, 2, 0]])
    np.testing.assert_array_equal(picks.cluster_size, [20, 12, 8])
    # k = size - 1 neighbours of the centre, all at distance 1.
    np.testing.assert_allclose(picks.typicality, 1.0, rtol=1e-12)
    expected = cdist(X, X[picks.indices]).min(axis=1).mean()
    np.testing.assert_allclose(picks.coverage, expected, rtol=1e-9)


def test_small_clusters_wait_until_no_larger_cluster_is_left():
    # Three clusters, the third has 3 < 5 points: the third pick is a second one from the
    # largest cluster, not the small cluster's centre.
    X, centres, blob = blobs([20, 12, 3])
    picks = typiclust_select(X, 3, random_state=0)
    np.testing.assert_array_equal(picks.indices[:2], centres[:2])
    assert blob[picks.indices[2]] == 0 and picks.cluster_size[2] == 20
    # With min_cluster_size=1 every cluster counts: the small cluster's middle point
    # (distance 1 to both others, k = 2) comes third with typicality 1.
    picks = typiclust_select(X, 3, random_state=0, min_cluster_size=1)
    np.testing.assert_array_equal(picks.indices, centres)
    assert picks.typicality[2] == pytest.approx(1.0)


def test_only_small_clusters_are_used_when_nothing_larger_is_left():
    # Blobs of 6 and 2: budget 8 = everything. The 6-point cluster is exhausted first.
    X, centres, blob = blobs([6, 2])
    picks = typiclust_select(X, 8, random_state=0, min_cluster_size=5)
    # budget 8 makes 8 clusters of k-means; all are smaller than 5, so they are visited
    # largest first and every point is picked once.
    np.testing.assert_array_equal(np.sort(picks.indices), np.arange(8))
    assert picks.coverage == 0.0


def brute_force_first_round(X, picks):
    """Check each first-round pick against typicality computed with cdist."""
    labels = picks.labels
    seen = set()
    for position, index in enumerate(picks.indices):
        cluster = labels[index]
        if cluster in seen:
            break
        seen.add(cluster)
        members = np.flatnonzero(labels == cluster)
        if members.size == 1:
            assert np.isnan(picks.typicality[position])
            continue
        k = min(20, members.size - 1)
        D = np.sort(cdist(X[members], X[members]), axis=1)[:, 1 : k + 1]
        mean = D.mean(axis=1)
        assert mean[np.searchsorted(members, index)] == pytest.approx(mean.min(), rel=1e-9)
        assert picks.typicality[position] == pytest.approx(1 / mean.min(), rel=1e-9)
    sizes = picks.cluster_size[: len(seen)]
    large = sizes[sizes >= 5]
    assert np.all(np.diff(large) <= 0)  # largest first
    assert np.all(sizes[large.size:] < 5)  # small clusters after every large one


@pytest.mark.parametrize("seed", range(4))
def test_picks_are_the_most_typical_of_their_cluster(seed):
    X = np.random.default_rng(seed).normal(size=(150, 3))
    picks = typiclust_select(X, 6, random_state=seed)
    brute_force_first_round(X, picks)


@pytest.mark.parametrize("seed", range(12))
def test_properties_for_any_seed(seed):
    rng = np.random.default_rng(50 + seed)
    n = int(rng.integers(2, 80))
    X = rng.normal(size=(n, int(rng.integers(1, 6))))
    if seed % 3 == 0:
        X[: n // 2] = X[0]  # duplicates: k-means finds fewer clusters than the budget
    budget = int(rng.integers(1, n + 1))
    picks = typiclust_select(X, budget, random_state=seed)
    again = typiclust_select(X, budget, random_state=seed)
    assert picks.indices.dtype == np.int64 and picks.indices.shape == (budget,)
    assert len(np.unique(picks.indices)) == budget
    np.testing.assert_array_equal(picks.indices, again.indices)
    np.testing.assert_array_equal(picks.typicality, again.typicality)
    assert picks.cluster_size.shape == (budget,) and picks.labels.shape == (n,)
    expected = cdist(X, X[picks.indices]).min(axis=1).mean()
    np.testing.assert_allclose(picks.coverage, expected, rtol=1e-9, atol=1e-12)


def test_minibatch_path_for_large_pools(monkeypatch):
    monkeypatch.setattr(typiclust_module, "MINIBATCH_MIN_SAMPLES", 30)
    X, centres, _ = blobs([21, 15, 10])
    picks = typiclust_select(X, 3, random_state=1)
    np.testing.assert_array_equal(picks.indices, centres)


def test_cosine_ignores_row_length():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    scaled = X * rng.uniform(0.1, 10.0, size=(60, 1))
    a = typiclust_select(X, 5, 0, metric="cosine")
    b = typiclust_select(scaled, 5, 0, metric="cosine")
    np.testing.assert_array_equal(a.indices, b.indices)


def test_select_dispatch():
    X, centres, _ = blobs([8, 20, 12])
    result = select(X, method="typiclust", budget=3, random_state=0)
    assert result.method == "typiclust" and result.alpha is None and result.beta is None
    np.testing.assert_array_equal(result.indices, centres[[1, 2, 0]])
    assert set(result.components) == {"typicality", "cluster_size"}
    assert result.to_rows()[0] == {"rank": 1, "index": int(centres[1]), "typicality": 1.0,
                                   "cluster_size": 20.0}


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(budget=0), r"'budget'.*\[1, 10\].*Got 0 instead"),
        (dict(budget=11), r"'budget'.*Got 11 instead"),
        (dict(budget=2, min_cluster_size=0), r"'min_cluster_size'.*int >= 1. Got 0 instead"),
        (dict(budget=2, n_init=1.5), r"'n_init'.*Got 1.5 instead"),
        (dict(budget=2, metric="l1"), r"'metric'.*Got 'l1'"),
    ],
)
def test_errors_name_the_parameter(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        typiclust_select(np.zeros((10, 2)), **kwargs)
