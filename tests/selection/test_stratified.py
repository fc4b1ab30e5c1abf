"""Site-stratified random selection: the allocation rule by hand, draws, select() wiring."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import select, site_allocation, stratified_random_select


def sites_from(counts):
    """Interleaved site list, e.g. {"a": 2, "b": 1} -> ["a", "b", "a"]."""
    names = [name for name, count in counts.items() for _ in range(count)]
    return [names[i] for i in np.random.default_rng(0).permutation(len(names))]


@pytest.mark.parametrize(
    "counts, budget, expected",
    [
        # Quotas 3, 1.5, 0.5: c is raised to 1; 4 over a:6, b:3 gives 2.67, 1.33 -> 3, 1.
        ({"a": 6, "b": 3, "c": 1}, 5, {"a": 3, "b": 1, "c": 1}),
        # Budget < sites: plain largest remainder. Quotas 1.2, 0.6, 0.2 -> 1, 0, 0 + b.
        ({"a": 6, "b": 3, "c": 1}, 2, {"a": 1, "b": 1, "c": 0}),
        ({"a": 6, "b": 3, "c": 1}, 3, {"a": 1, "b": 1, "c": 1}),
        ({"a": 6, "b": 3, "c": 1}, 10, {"a": 6, "b": 3, "c": 1}),
        # Equal remainders and sizes: the name that sorts first wins.
        ({"b": 2, "a": 2}, 1, {"a": 1, "b": 0}),
        # Budget 2 < 3 sites, quotas 0.4, 1.4, 0.2 -> 0, 1, 0; the last pick ties at 0.4
        # between a and b, and goes to the larger site, b (not to a, first by name).
        ({"a": 2, "b": 7, "c": 1}, 2, {"a": 0, "b": 2, "c": 0}),
        # Quotas 0.5 and 1.5: the minimum-one rule gives a its pick.
        ({"a": 1, "b": 3}, 2, {"a": 1, "b": 1}),
        ({"a": 1, "b": 3}, 1, {"a": 0, "b": 1}),
        # Two rounds: quotas a 3.89, b..f 0.39, g 1.17 -> b..f raised to 1; then 2 picks
        # over a:10, g:3 give 1.54, 0.46 -> g raised too, and a keeps the last pick.
        ({"a": 10, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": 3}, 7,
         {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1}),
        # Exact quotas need no remainder: 20 over 50/30/20.
        ({"x": 50, "y": 30, "z": 20}, 20, {"x": 10, "y": 6, "z": 4}),
    ],
)
def test_allocation_by_hand(counts, budget, expected):
    allocation = site_allocation(sites_from(counts), budget)
    assert allocation == expected and list(allocation) == sorted(expected)


@pytest.mark.parametrize("seed", range(30))
def test_allocation_properties(seed):
    rng = np.random.default_rng(seed)
    counts = {f"site{i}": int(c) for i, c in enumerate(rng.integers(1, 40, rng.integers(1, 8)))}
    n = sum(counts.values())
    budget = int(rng.integers(1, n + 1))
    allocation = site_allocation(sites_from(counts), budget)
    assert sum(allocation.values()) == budget
    assert all(0 <= allocation[s] <= counts[s] for s in counts)
    if budget >= len(counts):
        assert min(allocation.values()) >= 1
    # Never further than one pick from the proportional share, apart from the raised sites.
    for site, count in counts.items():
        if allocation[site] > 1:
            assert allocation[site] <= np.ceil(budget * count / n)


def test_draws_are_seeded_grouped_by_site_and_uniform_within():
    sites = sites_from({"b": 6, "a": 3, "c": 1})
    picks = stratified_random_select(sites, 5, random_state=4)
    np.testing.assert_array_equal(picks, stratified_random_select(sites, 5, random_state=4))
    assert picks.dtype == np.int64 and len(set(picks.tolist())) == 5
    assert [sites[i] for i in picks] == ["a", "b", "b", "b", "c"]
    # Same draws by hand: one Generator, sites in name order, choice without replacement.
    rng = np.random.default_rng(4)
    labels = np.array(sites)
    expected = np.concatenate([
        rng.choice(np.flatnonzero(labels == site), size=count, replace=False)
        for site, count in (("a", 1), ("b", 3), ("c", 1))
    ])
    np.testing.assert_array_equal(picks, expected)
    assert not np.array_equal(picks, stratified_random_select(sites, 5, random_state=5))


def test_every_image_of_every_site_can_be_drawn():
    sites = sites_from({"a": 4, "b": 2})
    drawn = {int(i) for seed in range(60) for i in stratified_random_select(sites, 3, seed)}
    assert drawn == set(range(6))


def test_select_dispatch_and_coverage():
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(30, 3))
    sites = ["s1"] * 20 + ["s2"] * 10
    result = select(pool, method="stratified-random", budget=6, sites=sites, random_state=3)
    np.testing.assert_array_equal(result.indices, stratified_random_select(sites, 6, 3))
    assert result.components == {} and result.alpha is None and result.delta is None
    np.testing.assert_allclose(
        result.coverage, cdist(pool, pool[result.indices]).min(axis=1).mean(), rtol=1e-9
    )
    # Fractional budgets resolve first: 20 % of 30 is 6.
    np.testing.assert_array_equal(
        select(pool, method="stratified-random", budget=0.2, sites=sites, random_state=3).indices,
        result.indices,
    )


@pytest.mark.parametrize("seed", range(10))
def test_new_methods_properties_through_select(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(2, 60))
    pool = rng.normal(size=(n, int(rng.integers(1, 6))))
    if seed % 4 == 0:
        pool[: n // 2] = pool[0]
    sites = [f"site{int(s)}" for s in rng.integers(0, 3, n)]
    budget = int(rng.integers(1, n + 1))
    for method in ("typiclust", "probcover", "stratified-random"):
        result = select(pool, method=method, budget=budget, random_state=seed, sites=sites)
        again = select(pool, method=method, budget=budget, random_state=seed, sites=sites)
        assert result.indices.shape == (budget,) and result.indices.dtype == np.int64
        assert len(np.unique(result.indices)) == budget
        np.testing.assert_array_equal(result.indices, again.indices)
        assert result.coverage == again.coverage and result.coverage >= 0
        for values in result.components.values():
            assert values.shape == (budget,)
        if budget == n:
            assert result.coverage == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: select(np.zeros((4, 2)), method="stratified-random", budget=2), ValueError,
         r"'sites' parameter is required for method='stratified-random'.*\(4\). Got None"),
        (lambda: select(np.zeros((4, 2)), method="random", sites=["a"] * 3), ValueError,
         r"'sites'.*one entry per pool image \(4\). Got 3 instead"),
        (lambda: select(np.zeros((4, 2)), method="kmeans"), ValueError,
         r"'method'.*'typiclust', 'probcover', 'stratified-random'.*Got 'kmeans'"),
        (lambda: stratified_random_select(["a", "b", 3], 2), TypeError,
         r"'sites'.*only strings. Got 3 \(int\) at position 2"),
        (lambda: stratified_random_select("abc", 2), TypeError,
         r"'sites'.*sequence of strings.*Got str instead"),
        (lambda: stratified_random_select([["a", "b"]], 1), ValueError, r"'sites'.*1-D"),
        (lambda: stratified_random_select([], 1), ValueError, r"'sites'.*at least one"),
        (lambda: stratified_random_select(["a", "b"], 3), ValueError,
         r"'budget'.*\[1, 2\].*Got 3 instead"),
        (lambda: site_allocation(["a"], 0), ValueError, r"'budget'.*Got 0 instead"),
        (lambda: stratified_random_select(["a"], 1, random_state=-1), ValueError,
         r"'random_state'.*Got -1"),
    ],
)
def test_errors_name_the_parameter(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
