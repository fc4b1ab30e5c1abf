"""Random and CoreSet baselines."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import coreset_select, random_select
from xssr.selection.checks import check_random_state


def test_random_select_is_seeded():
    a = random_select(100, 10, random_state=3)
    np.testing.assert_array_equal(a, random_select(100, 10, random_state=3))
    np.testing.assert_array_equal(a, np.random.default_rng(3).choice(100, 10, replace=False))
    assert not np.array_equal(a, random_select(100, 10, random_state=4))
    assert a.dtype == np.int64 and len(set(a.tolist())) == 10


def test_random_select_accepts_a_generator_and_advances_it():
    rng = np.random.default_rng(0)
    first, second = random_select(50, 5, rng), random_select(50, 5, rng)
    assert not np.array_equal(first, second)


def test_random_select_whole_pool_is_a_permutation():
    np.testing.assert_array_equal(np.sort(random_select(7, 7, 1)), np.arange(7))


@pytest.mark.parametrize("seed", range(5))
def test_coreset_first_pick_follows_the_seed_then_farthest_point(seed):
    X = np.random.default_rng(100 + seed).normal(size=(60, 4))
    picks = coreset_select(X, 12, random_state=seed)
    assert picks.indices[0] == np.random.default_rng(seed).integers(60)
    D = cdist(X, X)
    for step in range(1, 12):
        nearest = D[:, picks.indices[:step]].min(axis=1)
        nearest[picks.indices[:step]] = -1.0
        assert picks.indices[step] == np.argmax(nearest)
        np.testing.assert_allclose(picks.diversity[step], nearest.max(), rtol=1e-9)
    assert np.isnan(picks.diversity[0])
    expected = D[:, picks.indices].min(axis=1).mean()
    np.testing.assert_allclose(picks.coverage, expected, rtol=1e-9)


def test_coreset_never_repeats_with_duplicates():
    # Four copies of one point plus two others: after every distinct point is a centre
    # all distances are 0 and the remaining duplicates must still be picked once each.
    X = np.array([[0.0, 0.0]] * 4 + [[1.0, 0.0], [5.0, 0.0]])
    picks = coreset_select(X, 6, random_state=0)
    np.testing.assert_array_equal(np.sort(picks.indices), np.arange(6))
    assert picks.coverage == 0.0


def test_coreset_ties_go_to_the_lowest_index():
    # Square corners: from corner 0 the farthest is the diagonal 3; then 1 and 2 tie.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    seed = next(s for s in range(100) if np.random.default_rng(s).integers(4) == 0)
    np.testing.assert_array_equal(coreset_select(X, 4, random_state=seed).indices, [0, 3, 1, 2])


def test_coreset_cosine_ignores_row_length():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    scaled = X * rng.uniform(0.1, 10.0, size=(40, 1))
    np.testing.assert_array_equal(
        coreset_select(X, 8, 1, metric="cosine").indices,
        coreset_select(scaled, 8, 1, metric="cosine").indices,
    )


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: random_select(10, 0, 0), r"'budget'.*\[1, 10\].*Got 0 instead"),
        (lambda: random_select(10, 11, 0), r"'budget'.*Got 11 instead"),
        (lambda: random_select(0, 1, 0), r"'n_pool'.*Got 0 instead"),
        (lambda: coreset_select(np.zeros((5, 2)), 2.5, 0), r"'budget'.*Got 2.5 instead"),
        (lambda: coreset_select(np.zeros((5, 2)), 2, 0, metric="l1"), r"'metric'.*Got 'l1'"),
    ],
)
def test_baseline_errors_name_the_parameter(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_check_random_state():
    rng = np.random.default_rng(0)
    assert check_random_state(rng) is rng
    assert isinstance(check_random_state(None), np.random.Generator)
    with pytest.raises(TypeError, match=r"'random_state'.*Got 'seed' instead"):
        check_random_state("seed")
    with pytest.raises(ValueError, match=r"'random_state'.*Got -1 instead"):
        check_random_state(-1)
