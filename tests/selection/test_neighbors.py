"""Nearest-neighbour distances against brute force (scipy cdist)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import knn_mean_distance, nearest_distance
from xssr.selection import neighbors
from xssr.selection.neighbors import distances_from_rows, prepare_embeddings, squared_norms

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False

needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not installed")


def brute_knn_mean(X, k):
    D = cdist(X, X)
    n = len(X)
    k = min(k, n - 1)
    if k == 0:
        return np.zeros(n)
    return np.array([np.sort(np.delete(D[i], i))[:k].mean() for i in range(n)])


def unit_rows(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_knn_mean_distance_matches_cdist(seed, k):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 7)) * 5 + 100  # offset: the GEMM expansion must survive it
    got = knn_mean_distance(X, k, backend="numpy")
    np.testing.assert_allclose(got, brute_knn_mean(X, k), rtol=1e-4)


def test_knn_mean_distance_counts_duplicates_as_neighbours():
    # Rows 0, 1 and 2 coincide: each has two neighbours at distance 0.
    X = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    got = knn_mean_distance(X, 2, backend="numpy")
    np.testing.assert_allclose(got, [0.0, 0.0, 0.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(knn_mean_distance(X, 1, backend="numpy")[:3], 0.0, atol=1e-12)


def test_knn_mean_distance_small_pools():
    np.testing.assert_array_equal(knn_mean_distance(np.ones((1, 3)), 10), [0.0])
    X = np.array([[0.0], [1.0], [4.0]])
    # n - 1 = 2 < k: average over both other rows.
    np.testing.assert_allclose(knn_mean_distance(X, 10), [2.5, 2.0, 3.5])


@pytest.mark.parametrize("seed", range(5))
def test_nearest_distance_matches_cdist(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(50, 9))
    Y = rng.normal(size=(17, 9)) + 0.5
    got = nearest_distance(X, Y, backend="numpy")
    np.testing.assert_allclose(got, cdist(X, Y).min(axis=1), rtol=1e-4)


def test_nearest_distance_is_zero_for_members():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(20, 4))
    np.testing.assert_allclose(nearest_distance(Y[[3, 7]], Y), 0.0, atol=1e-12)


def test_cosine_is_euclidean_on_unit_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6))
    Y = rng.normal(size=(15, 6))
    Xu, Yu = unit_rows(X), unit_rows(Y)
    np.testing.assert_allclose(
        nearest_distance(X, Y, metric="cosine"), cdist(Xu, Yu).min(axis=1), rtol=1e-4
    )
    np.testing.assert_allclose(
        knn_mean_distance(X, 4, metric="cosine"), brute_knn_mean(Xu, 4), rtol=1e-4
    )
    # sqrt(2 - 2 cos) is monotone in the cosine distance 1 - cos.
    expected = np.sqrt(np.maximum(2.0 * cdist(X, Y, metric="cosine"), 0.0)).min(axis=1)
    np.testing.assert_allclose(nearest_distance(X, Y, metric="cosine"), expected, rtol=1e-4)


def test_cosine_rejects_zero_rows():
    X = np.array([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"'X'.*metric='cosine'.*Got 1 all-zero rows"):
        prepare_embeddings(X, "cosine", name="X")


def test_chunking_gives_the_same_answer(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(37, 5))
    Y = rng.normal(size=(23, 5))
    whole_knn = knn_mean_distance(X, 3, backend="numpy")
    whole_nn = nearest_distance(X, Y, backend="numpy")
    # About 3 query rows per chunk, and 1 row per refinement chunk.
    monkeypatch.setattr(neighbors, "_CHUNK_BYTES", 3 * 37 * 4)
    np.testing.assert_allclose(knn_mean_distance(X, 3, backend="numpy"), whole_knn, rtol=1e-12)
    np.testing.assert_allclose(nearest_distance(X, Y, backend="numpy"), whole_nn, rtol=1e-12)
    np.testing.assert_allclose(whole_knn, brute_knn_mean(X, 3), rtol=1e-4)


@needs_faiss
@pytest.mark.parametrize("seed", range(3))
def test_faiss_backend_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 16))
    Y = rng.normal(size=(30, 16))
    X[5] = X[6] = X[7]  # duplicates: self must be excluded by index in FAISS too
    np.testing.assert_allclose(
        knn_mean_distance(X, 5, backend="faiss"), knn_mean_distance(X, 5, backend="numpy"),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        nearest_distance(X, Y, backend="faiss"), nearest_distance(X, Y, backend="numpy"),
        rtol=1e-5,
    )
    np.testing.assert_allclose(knn_mean_distance(X, 2, backend="faiss")[5:8], 0.0, atol=1e-12)


def test_auto_backend_agrees_with_numpy_above_threshold(monkeypatch):
    # Lower the threshold so that "auto" takes the FAISS path (when installed) on tiny data.
    monkeypatch.setattr(neighbors, "_FAISS_MIN_PAIRS", 10)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 8))
    np.testing.assert_allclose(
        knn_mean_distance(X, 3, backend="auto"), brute_knn_mean(X, 3), rtol=1e-4
    )


def test_bad_backend_and_k():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"'backend'.*Got 'gpu' instead"):
        knn_mean_distance(X, 2, backend="gpu")
    with pytest.raises(ValueError, match=r"'k'.*Got 0 instead"):
        knn_mean_distance(X, 0)
    with pytest.raises(ValueError, match=r"'Y'.*same number of features.*\(2\). Got 3 instead"):
        nearest_distance(X, np.zeros((2, 3)))


def test_faiss_backend_without_faiss_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ImportError, match="faiss-cpu"):
        nearest_distance(X, X, backend="faiss")
    # "auto" falls back to numpy silently.
    monkeypatch.setattr(neighbors, "_FAISS_MIN_PAIRS", 0)
    np.testing.assert_allclose(nearest_distance(X, X, backend="auto"), 0.0, atol=1e-12)


def test_distances_from_rows_matches_cdist_and_is_batch_independent():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 6))
    sq = squared_norms(X)
    rows = np.array([3, 17, 42, 0])
    got = distances_from_rows(X, sq, rows)
    np.testing.assert_allclose(got, cdist(X[rows], X), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(got[np.arange(4), rows], 0.0)
    # Each row is the same, to rounding, whether computed alone or with others.
    for i, r in enumerate(rows):
        np.testing.assert_allclose(distances_from_rows(X, sq, [r])[0], got[i], rtol=1e-12, atol=1e-12)


def test_approximate_backend_finds_most_true_neighbours():
    pytest.importorskip("faiss")
    from xssr.selection.neighbors import ivf_lists, knn_mean_distance, knn_recall

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16)) * 4
    X = centres[rng.integers(0, 30, 6000)] + rng.normal(size=(6000, 16))
    assert ivf_lists(6000) > 100  # the index really is split, so the search is approximate
    recall = knn_recall(X, 10, n_queries=500)
    assert 0.8 < recall <= 1.0
    exact = knn_mean_distance(X, 10, backend="numpy")
    approximate = knn_mean_distance(X, 10, backend="faiss-ivf")
    # A missed neighbour is replaced by a farther one: never closer than exact.
    assert np.all(approximate >= exact - 1e-9)
    assert np.median(approximate / exact) < 1.02


def test_approximate_backend_on_a_tiny_pool_is_exact():
    pytest.importorskip("faiss")
    from xssr.selection.neighbors import knn_mean_distance

    X = np.random.default_rng(1).normal(size=(50, 4))
    np.testing.assert_allclose(knn_mean_distance(X, 5, backend="faiss-ivf"), knn_mean_distance(X, 5, backend="numpy"))
