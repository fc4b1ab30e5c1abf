"""Pruned nearest-selected distances: equal to brute force, and actually pruned."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import nearest as nearest_module
from xssr.selection import select
from xssr.selection.nearest import NearestSelected


def blobs(seed, n=600, dim=8, n_blobs=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim)) * 20
    return centres[rng.integers(0, n_blobs, n)] + rng.normal(size=(n, dim))


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(nearest_module, "BLOCK_ROWS", 40)
    monkeypatch.setattr(nearest_module, "MIN_BLOCKED_ROWS", 0)


@pytest.mark.parametrize("seed", range(3))
def test_distances_equal_brute_force(small_blocks, seed):
    points = blobs(seed)
    rng = np.random.default_rng(seed)
    state = NearestSelected(points, n_runs=3)
    assert state.n_blocks > 5
    picked = [[] for _ in range(3)]
    for _ in range(25):
        picks = rng.integers(0, len(points), 3)
        state.add(state.position[picks])
        for run, pick in enumerate(picks):
            picked[run].append(pick)
    for run in range(3):
        expected = cdist(points, points[picked[run]]).min(axis=1)
        np.testing.assert_allclose(state.distance[run][state.position], expected, rtol=1e-9, atol=1e-9)


def test_blocks_out_of_reach_are_skipped(small_blocks):
    # Six well separated blobs: once each blob holds a pick, a new pick can only come
    # closer to samples of its own blob.
    points = blobs(0)
    state = NearestSelected(points, n_runs=1)
    for pick in np.random.default_rng(0).permutation(len(points))[:60]:
        state.add(state.position[[pick]])
    assert state.rows_computed < 0.4 * 60 * len(points)


def test_annotated_samples_count_as_selected_in_every_run(small_blocks):
    points = blobs(4)
    state = NearestSelected(points, n_runs=2)
    labeled = np.array([3, 50, 400])
    state.add_to_all(state.position[labeled])
    expected = cdist(points, points[labeled]).min(axis=1)
    for run in range(2):
        np.testing.assert_allclose(state.distance[run][state.position], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_xssr_picks_do_not_depend_on_the_blocks(monkeypatch, seed):
    points = blobs(seed)
    # Duplicates across blocks: exact ties must still go to the lowest pool index.
    points[100] = points[500]
    rng = np.random.default_rng(seed)
    source = points[rng.integers(0, len(points), 100)] + 2.0
    one_block = select(points, source, budget=40, backend="numpy")
    monkeypatch.setattr(nearest_module, "BLOCK_ROWS", 40)
    monkeypatch.setattr(nearest_module, "MIN_BLOCKED_ROWS", 0)
    many_blocks = select(points, source, budget=40, backend="numpy")
    np.testing.assert_array_equal(one_block.indices, many_blocks.indices)
    assert one_block.alpha == many_blocks.alpha
    assert many_blocks.coverage == pytest.approx(one_block.coverage, rel=1e-12)
    for name, values in one_block.components.items():
        np.testing.assert_allclose(many_blocks.components[name], values, rtol=1e-9, atol=1e-12, err_msg=name)


def test_ties_across_blocks_go_to_the_lowest_pool_index(monkeypatch):
    # beta=1 ranks by density alone; the pool is two identical halves, so every score is
    # tied with its twin in the other half. The blocks do not keep pool order, yet each
    # tie must still go to the lower index, exactly as with the pool in one block.
    half = blobs(9, n=200)
    points = np.concatenate([half, half])
    one_block = select(points, None, budget=30, alpha=0.0, beta=1.0, k=3, backend="numpy").indices
    monkeypatch.setattr(nearest_module, "BLOCK_ROWS", 40)
    monkeypatch.setattr(nearest_module, "MIN_BLOCKED_ROWS", 0)
    picks = select(points, None, budget=30, alpha=0.0, beta=1.0, k=3, backend="numpy").indices
    np.testing.assert_array_equal(picks, one_block)
    for pick in picks[picks >= 200]:  # a twin from the second half comes after the first
        assert list(picks).index(pick - 200) < list(picks).index(pick)


@pytest.mark.parametrize("method", ["coreset", "uncertainty"])
def test_k_center_picks_do_not_depend_on_the_blocks(monkeypatch, method):
    points = blobs(5)
    points[300] = points[10]  # a duplicate across blocks
    scores = np.random.default_rng(5).random(len(points))
    kwargs = dict(method=method, budget=50, random_state=3, labeled=[0, 7])
    if method == "uncertainty":
        kwargs["scores"] = scores
    one_block = select(points, None, **kwargs)
    monkeypatch.setattr(nearest_module, "BLOCK_ROWS", 40)
    monkeypatch.setattr(nearest_module, "MIN_BLOCKED_ROWS", 0)
    many_blocks = select(points, None, **kwargs)
    np.testing.assert_array_equal(one_block.indices, many_blocks.indices)
    assert many_blocks.coverage == pytest.approx(one_block.coverage, rel=1e-12)
