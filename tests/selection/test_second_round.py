"""A second round conditioned on the first: labeled images are never picked, and for XSSR,
CoreSet and uncertainty the second round continues the first exactly as one longer greedy would."""

import numpy as np
import pytest

from xssr.selection import select


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(80, 5)), rng.normal(loc=1.0, size=(40, 5)), rng.random(80)


@pytest.mark.parametrize("method, kwargs", [
    ("xssr", {"alpha": 0.3}), ("xssr", {"alpha": "auto", "alpha_grid": [0.0]}), ("coreset", {}),
    ("uncertainty", {}),
])
def test_a_conditioned_second_round_continues_the_first(data, method, kwargs):
    pool, source, scores = data
    one_go = select(pool, source, method=method, budget=12, scores=scores, random_state=3, **kwargs)
    first = one_go.indices[:5]
    second = select(pool, source, method=method, budget=7, scores=scores, random_state=3, labeled=first, **kwargs)
    np.testing.assert_array_equal(second.indices, one_go.indices[5:])
    if method != "uncertainty":
        assert second.coverage == pytest.approx(one_go.coverage, rel=1e-9)  # the labeled count in coverage


@pytest.mark.parametrize("method", ["random", "stratified-random", "typiclust", "probcover"])
def test_other_methods_choose_among_the_unlabeled(data, method):
    pool, source, _ = data
    labeled = np.arange(0, 80, 2)
    sites = ["a" if i % 3 else "b" for i in range(80)]
    result = select(pool, source, method=method, budget=10, labeled=labeled, sites=sites, random_state=0)
    assert len(set(result.indices)) == 10 and not set(result.indices) & set(labeled.tolist())


def test_labeled_is_checked(data):
    pool, source, _ = data
    with pytest.raises(ValueError, match="distinct pool indices"):
        select(pool, method="random", budget=3, labeled=[1, 1])
    with pytest.raises(ValueError, match="distinct pool indices"):
        select(pool, method="random", budget=3, labeled=[80])
    with pytest.raises(ValueError, match="not labeled yet"):
        select(pool, method="random", budget=5, labeled=np.arange(77))
    assert len(select(pool, method="random", budget=3, labeled=[]).indices) == 3


def test_shift_weighted_calibration_counts_images_far_from_the_source_more(data):
    pool, source, _ = data
    plain = select(pool, source, method="xssr", budget=8, alpha="auto")
    weighted = select(pool, source, method="xssr", budget=8, alpha="auto", alpha_criterion="shift-weighted-coverage")
    assert [a for a, _ in plain.alpha_curve] == [a for a, _ in weighted.alpha_curve]
    assert [c for _, c in plain.alpha_curve] != [c for _, c in weighted.alpha_curve]
    # by hand for the chosen alpha: novelty-weighted mean distance to the nearest pick
    from xssr.selection.neighbors import nearest_distance

    novelty = nearest_distance(pool, source)
    to_pick = nearest_distance(pool, pool[weighted.indices])
    assert weighted.coverage == pytest.approx((novelty * to_pick).sum() / novelty.sum(), rel=1e-6)
    # a fixed alpha picks the same images either way
    fixed = [select(pool, source, method="xssr", budget=8, alpha=0.4, alpha_criterion=c).indices
             for c in ("coverage", "shift-weighted-coverage")]
    np.testing.assert_array_equal(*fixed)
    with pytest.raises(ValueError, match="alpha_criterion"):
        select(pool, source, method="xssr", budget=8, alpha_criterion="dice")
    with pytest.raises(ValueError, match="needs source embeddings"):
        select(pool, None, method="xssr", budget=8, alpha="auto", alpha_grid=[0.0],
               alpha_criterion="shift-weighted-coverage")


@pytest.mark.parametrize("labeled, budget, message", [
    ([0, 1, 2], 8, "at most the number of images not labeled yet \\(7\\)"),
    ([-1], 2, "distinct pool indices in \\[0, 10\\)"),
    ([3, 3], 2, "distinct pool indices"),
])
def test_the_public_greedies_check_labeled_and_budget_themselves(labeled, budget, message):
    from xssr.selection.baselines import coreset_select
    from xssr.selection.uncertainty import uncertainty_kcenter

    points = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match=message):
        coreset_select(points, budget, random_state=0, labeled=np.array(labeled))
    with pytest.raises(ValueError, match=message):
        uncertainty_kcenter(points, np.linspace(0, 1, 10), budget, labeled=np.array(labeled))
