"""ProbCover: delta-ball graph, purity-based delta, greedy coverage, chunked = dense."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import choose_delta, probcover_select, select
from xssr.selection import probcover as probcover_module
from xssr.selection.probcover import delta_ball_graph, max_coverage_greedy



def blobs(sizes, seed=0):
    """Blobs 100 apart, each a centre plus ``size - 1`` points on a unit circle, shuffled.

    Returns (X, index of each blob's centre, blob of each row). Same layout as in
    test_typiclust.py.
    """
    parts = []
    for b, size in enumerate(sizes):
        angles = 2 * np.pi * np.arange(size - 1) / (size - 1)
        ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        parts.append(np.vstack([[0.0, 0.0], ring]) + [100.0 * b, 50.0 * (b % 2)])
    X = np.vstack(parts)
    blob = np.repeat(np.arange(len(sizes)), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    perm = np.random.default_rng(seed).permutation(len(X))
    where = np.argsort(perm)
    return X[perm], where[first], blob[perm]


# --------------------------------------------------------------------------- graph
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, None])
def test_graph_equals_dense_threshold(chunk_rows):
    X = np.random.default_rng(0).normal(size=(40, 5))
    delta = float(np.quantile(cdist(X, X), 0.1))
    graph = delta_ball_graph(X, delta, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(graph.toarray(), cdist(X, X) <= delta)
    assert graph.has_canonical_format


def test_graph_includes_pairs_exactly_at_delta():
    # Two 5x5 unit grids at +-2**26: integer coordinates, so every true distance is exact,
    # but the squared norms (~2**53) make the GEMM expansion off by up to 2 in d^2. Pairs
    # near delta are recomputed from differences: neighbours at exactly 1 are kept,
    # diagonals (sqrt 2) are not; interior nodes have 4 neighbours plus themselves.
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    X = np.vstack([grid + 2.0**26, -grid - 2.0**26])
    graph = delta_ball_graph(X, 1.0, chunk_rows=8)
    np.testing.assert_array_equal(graph.toarray(), cdist(X, X) <= 1.0)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    assert degree.max() == 5 and degree.min() == 3  # corners: 2 + itself


def test_graph_of_duplicates_at_delta_zero():
    X = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(
        delta_ball_graph(X, 0.0).toarray(), [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    )


# --------------------------------------------------------------------------- greedy
def test_one_pick_per_blob_largest_first_then_random_fill():
    # Blobs of 8, 20 and 12 points of radius 1, 100 apart: with delta 1.5 only a blob's
    # centre covers the whole blob, so the greedy takes the three centres by blob size.
    # Then everything is covered and the rest is filled at random (gain 0).
    X, centres, _ = blobs([8, 20, 12])
    picks = probcover_select(X, 5, random_state=0, delta=1.5)
    np.testing.assert_array_equal(picks.indices[:3], centres[[1, 2, 0]])
    np.testing.assert_array_equal(picks.newly_covered, [20, 12, 8, 0, 0])
    assert picks.delta == 1.5 and picks.purity_curve == [] and picks.covered_fraction == 1.0
    assert len(set(picks.indices.tolist())) == 5
    other = probcover_select(X, 5, random_state=1, delta=1.5)
    np.testing.assert_array_equal(other.indices[:3], picks.indices[:3])
    expected = cdist(X, X[picks.indices]).min(axis=1).mean()
    np.testing.assert_allclose(picks.coverage, expected, rtol=1e-9)


def brute_force_check(X, delta, picks):
    """Every pick has the largest gain on the dense graph at its step."""
    A = cdist(X, X) <= delta
    covered = np.zeros(len(X), dtype=bool)
    selected = np.zeros(len(X), dtype=bool)
    for pick, newly in zip(picks.indices, picks.newly_covered):
        gain = (A & ~covered[None, :]).sum(axis=1)
        assert not selected[pick]
        assert gain[pick] == gain[~selected].max() == newly
        selected[pick] = True
        covered |= A[pick]


@pytest.mark.parametrize("seed", range(5))
def test_greedy_matches_dense_brute_force(seed):
    X = np.random.default_rng(seed).normal(size=(80, 3))
    delta = float(np.quantile(cdist(X, X), 0.05))
    picks = probcover_select(X, 25, random_state=seed, delta=delta)
    brute_force_check(X, delta, picks)


def test_ties_are_broken_at_random_not_by_index():
    # Distinct points with delta 0: every gain is 1, so the order is the seeded shuffle.
    X = np.arange(50.0)[:, None]
    orders = [probcover_select(X, 10, random_state=s, delta=0.0).indices for s in range(3)]
    assert not np.array_equal(orders[0], np.arange(10))
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(orders[2], probcover_select(X, 10, 2, delta=0.0).indices)


# --------------------------------------------------------------------------- delta
def test_choose_delta_by_hand():
    # Two k-means clusters {0, 1, 2} and {10, 11, 12}. Distance to the nearest point of
    # the other cluster: 10, 9, 8, 8, 9, 10. A point is pure while that distance > delta,
    # so purity is 1 at delta 1 and 5, 4/6 at 8 and 2/6 at 9.5.
    X = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0])[:, None]
    candidates = [9.5, 1.0, 8.0, 5.0]
    choice = choose_delta(X, 2, 0.95, candidates, random_state=0)
    assert choice.purity_curve == [(1.0, 1.0), (5.0, 1.0), (8.0, pytest.approx(4 / 6)),
                                   (9.5, pytest.approx(2 / 6))]
    assert choice.delta == 5.0
    assert choose_delta(X, 2, 0.6, candidates, random_state=0).delta == 8.0
    assert choose_delta(X, 2, 0.3, candidates, random_state=0).delta == 9.5
    # No candidate reaches purity 0.95: the smallest is used.
    assert choose_delta(X, 2, 0.95, [8.0, 9.5], random_state=0).delta == 8.0
    # One cluster has no foreign points: everything is pure.
    assert choose_delta(X, 1, 0.95, candidates, random_state=0).delta == 9.5


def brute_force_purity(X, labels, delta):
    A = cdist(X, X) <= delta
    return np.mean([np.all(labels[A[i]] == labels[i]) for i in range(len(X))])


@pytest.mark.parametrize("seed", range(4))
def test_choose_delta_is_the_largest_candidate_meeting_the_threshold(seed):
    X = np.random.default_rng(seed).normal(size=(90, 4))
    choice = choose_delta(X, 3, 0.7, np.linspace(0.05, 2.0, 15), random_state=seed)
    deltas, purity = np.array(choice.purity_curve).T
    expected = [brute_force_purity(X, choice.labels, d) for d in deltas]
    np.testing.assert_allclose(purity, expected, rtol=0, atol=1e-12)
    assert np.all(np.diff(purity) <= 0)
    meeting = deltas[purity >= 0.7]
    assert choice.delta == (meeting.max() if meeting.size else deltas.min())


def test_default_candidates_are_quantiles_of_knn_distances():
    X = np.random.default_rng(7).normal(size=(60, 3))
    choice = choose_delta(X, 6, random_state=0)
    k = math.ceil(60 / 6)
    knn = np.sort(cdist(X, X), axis=1)[:, 1 : k + 1]
    expected = np.quantile(knn, np.linspace(0.01, 0.99, 20))
    # The grid is built from float32 distance blocks: equal to float32 precision.
    np.testing.assert_allclose([d for d, _ in choice.purity_curve], expected, rtol=1e-6)


def test_chunked_path_gives_the_dense_result(monkeypatch):
    X = np.random.default_rng(11).normal(size=(120, 6))
    whole = probcover_select(X, 12, random_state=5)
    # A 3-row distance block forces 40 chunks in every pass.
    monkeypatch.setattr(probcover_module, "_CHUNK_BYTES", 3 * 8 * 120)
    chunked = probcover_select(X, 12, random_state=5)
    np.testing.assert_array_equal(chunked.indices, whole.indices)
    np.testing.assert_array_equal(chunked.newly_covered, whole.newly_covered)
    assert chunked.delta == pytest.approx(whole.delta, rel=1e-12)
    # (radius, purity) pairs; pytest.approx compares flat sequences only (pytest >= 9.1).
    np.testing.assert_allclose(np.asarray(chunked.purity_curve), np.asarray(whole.purity_curve), rtol=1e-12)


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("seed", range(12))
def test_properties_for_any_seed(seed):
    rng = np.random.default_rng(70 + seed)
    n = int(rng.integers(2, 80))
    X = rng.normal(size=(n, int(rng.integers(1, 6))))
    if seed % 3 == 0:
        X[: n // 2] = X[0]
    budget = int(rng.integers(1, n + 1))
    picks = probcover_select(X, budget, random_state=seed)
    again = probcover_select(X, budget, random_state=seed)
    assert picks.indices.dtype == np.int64 and picks.indices.shape == (budget,)
    assert len(np.unique(picks.indices)) == budget
    np.testing.assert_array_equal(picks.indices, again.indices)
    assert picks.delta == again.delta and picks.purity_curve == again.purity_curve
    assert picks.newly_covered.sum() == round(picks.covered_fraction * n)
    assert np.all(np.diff(picks.newly_covered) <= 0)  # greedy gains never grow
    brute_force_check(X, picks.delta, picks)
    expected = cdist(X, X[picks.indices]).min(axis=1).mean()
    np.testing.assert_allclose(picks.coverage, expected, rtol=1e-9, atol=1e-12)


def test_select_dispatch():
    X, centres, _ = blobs([8, 20, 12])
    result = select(X, method="probcover", budget=3, random_state=0)
    assert result.method == "probcover" and result.alpha is None and result.beta is None
    assert set(result.components) == {"newly_covered"}
    assert result.delta == probcover_select(X, 3, random_state=0).delta
    assert len(result.purity_curve) >= 1
    assert [r["index"] for r in result.to_rows()] == result.indices.tolist()


@pytest.mark.parametrize("seed", range(6))
def test_max_coverage_greedy_on_a_path_graph(seed):
    # Path 0-1-2-3-4 with self loops: 1, 2 and 3 each cover 3 (tie, broken at random).
    # After 1 (or 3) the best next pick covers 2 more; after 2 only 1 more.
    import scipy.sparse as sp

    A = np.eye(5, dtype=bool) | np.eye(5, k=1, dtype=bool) | np.eye(5, k=-1, dtype=bool)
    picks, newly, covered = max_coverage_greedy(sp.csr_matrix(A), 2, np.random.default_rng(seed))
    assert picks[0] in (1, 2, 3) and newly[0] == 3
    assert newly[1] == (1 if picks[0] == 2 else 2)
    assert covered.sum() == 3 + newly[1]


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda X: probcover_select(X, 2, delta=-1.0),
         r"'delta'.*'auto' or a finite float >= 0. Got -1.0"),
        (lambda X: probcover_select(X, 2, delta="big"), r"'delta'.*Got 'big' instead"),
        (lambda X: probcover_select(X, 0), r"'budget'.*Got 0 instead"),
        (lambda X: probcover_select(X, 2, n_init=0), r"'n_init'.*Got 0 instead"),
        (lambda X: choose_delta(X, 0), r"'n_clusters'.*\[1, 10\].*Got 0 instead"),
        (lambda X: choose_delta(X, 11), r"'n_clusters'.*Got 11 instead"),
        (lambda X: choose_delta(X, 2, 1.5), r"'purity_threshold'.*\[0, 1\]. Got 1.5 instead"),
        (lambda X: choose_delta(X, 2, candidates=[]), r"'candidates'.*non-empty.*Got \[\]"),
        (lambda X: choose_delta(X, 2, candidates=[-1.0]), r"'candidates'.*Got \[-1.0\]"),
        (lambda X: choose_delta(X, 2, chunk_rows=0), r"'chunk_rows'.*Got 0 instead"),
        (lambda X: delta_ball_graph(X, float("nan")), r"'delta'.*Got nan instead"),
    ],
)
def test_errors_name_the_parameter(call, pattern):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=pattern):
        call(X)


def test_refinement_memory_stays_bounded_when_every_pair_ties(monkeypatch):
    # One-hot rows: every pair is exactly sqrt(2) apart, so every foreign pair ties the
    # row's minimum and goes to float64 refinement (550,000 pairs). Gathered at once
    # they would need pairs x 800 dims x 8 bytes, about 3.5 GB; sliced, the peak stays a
    # few chunk sizes above the data.
    import tracemalloc

    chunk = 2**20
    monkeypatch.setattr(probcover_module, "_CHUNK_BYTES", chunk)
    points = np.eye(800)
    labels = np.arange(800) % 7
    tracemalloc.start()
    try:
        foreign, _, _ = probcover_module._scan(points, labels, 0)
        graph = delta_ball_graph(points, math.sqrt(2.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(foreign, math.sqrt(2.0), rtol=1e-15)
    assert graph.nnz == 800 * 800
    # The blocks copy the data about twice (centred float64, float32); the graph holds
    # 640,000 int32 indices plus flags, about 4 MB.
    assert peak < 3 * points.nbytes + 5e6 + 16 * chunk, peak / 2**20
