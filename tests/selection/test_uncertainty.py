"""Uncertainty-weighted k-center: the most uncertain image first, then uncertainty times distance."""

import numpy as np
import pytest

from xssr.selection import select
from xssr.selection.baselines import coreset_select
from xssr.selection.uncertainty import scale_scores, uncertainty_kcenter


def test_first_pick_is_the_most_uncertain_and_then_far_uncertain_images_win():
    points = np.array([[0.0], [0.1], [5.0], [10.0]])
    scores = np.array([0.9, 1.0, 0.2, 0.6])
    picks = uncertainty_kcenter(points, scores, 3)
    # 1 first (u=1); then u*d: image 0 is close (0.1 * 0.875), 2 is far but sure, 3 far and unsure
    assert picks.indices.tolist()[:2] == [1, 3]
    assert picks.weighted_distance[0] == pytest.approx(1.0)
    u = scale_scores(scores)
    assert picks.weighted_distance[1] == pytest.approx(u[3] * 9.9)


def test_equal_uncertainty_is_plain_k_center_from_the_first_image():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 3))
    picks = uncertainty_kcenter(points, np.full(40, 0.3), 8)
    assert picks.indices[0] == 0
    # k-center greedy from the same first centre
    reference = coreset_select(points, 8, random_state=np.random.default_rng(1))
    first = int(reference.indices[0])
    # put CoreSet's random first centre at index 0, where equal uncertainties start (lowest index)
    again = uncertainty_kcenter(points[np.r_[first, :first, first + 1:40]], np.ones(40), 8)
    back = np.r_[first, :first, first + 1:40][again.indices]
    np.testing.assert_array_equal(back, reference.indices)


def test_no_image_is_picked_twice_and_uncertainty_shifts_the_picks():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(60, 4))
    scores = rng.random(60)
    picks = uncertainty_kcenter(points, scores, 20)
    assert len(set(picks.indices.tolist())) == 20
    assert not np.array_equal(picks.indices, uncertainty_kcenter(points, 1 - scores, 20).indices)
    # the picks are on average more uncertain than the pool
    assert scores[picks.indices].mean() > scores.mean()


def test_select_checks_the_scores():
    pool = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="'scores' parameter is required"):
        select(pool, method="uncertainty", budget=3)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        select(pool, method="uncertainty", budget=3, scores=np.ones(9))
    with pytest.raises(ValueError, match="finite"):
        select(pool, method="uncertainty", budget=3, scores=np.r_[np.ones(9), np.nan])
    result = select(pool, method="uncertainty", budget=3, scores=np.arange(10.0))
    assert result.indices[0] == 9 and set(result.components) == {"uncertainty", "weighted_distance"}
