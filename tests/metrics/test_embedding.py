import numpy as np

from xssr.metrics.embedding import domain_separability, rank_correlation


def test_separable_domains_score_near_one_and_identical_near_half():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(100, 8))
    shifted = rng.normal(size=(100, 8)) + 3.0
    same = rng.normal(size=(100, 8))
    assert domain_separability(source, shifted) > 0.99
    assert 0.3 < domain_separability(source, same) < 0.7


def test_rank_correlation_by_hand():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert np.isnan(rank_correlation([1, 1, 1], [1, 2, 3]))
