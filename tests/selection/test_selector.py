"""select(), XSSRSelector, SelectionResult and input validation."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from xssr.selection import SelectionResult, XSSRSelector, resolve_budget, select

METHODS = ("xssr", "random", "coreset")


def data(seed=0, n=50, n_source=20, d=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n_source, d)) + 0.5


# --------------------------------------------------------------------------- budget
@pytest.mark.parametrize(
    "budget, n_pool, expected",
    [(0.05, 453, 22), (1, 10, 1), (10, 10, 10), (1.0, 10, 1), (22.0, 453, 22), (0.01, 10, 1), (np.int64(3), 5, 3),
     (0.5, 7, 3)],
)
def test_resolve_budget(budget, n_pool, expected):
    assert resolve_budget(budget, n_pool) == expected


@pytest.mark.parametrize(
    "budget, pattern",
    [
        (0, r"'budget'.*Got 0 instead"),
        (-3, r"'budget'.*Got -3 instead"),
        (0.0, r"'budget'.*Got 0.0 instead"),
        (1.5, r"'budget'.*Got 1.5 instead"),
        (float("nan"), r"'budget'.*Got nan instead"),
        ("5%", r"'budget'.*Got '5%' instead"),
        (True, r"'budget'.*Got True instead"),
        (None, r"'budget'.*Got None instead"),
        (11, r"'budget'.*at most the pool size \(10\). Got 11 instead"),
    ],
)
def test_resolve_budget_errors(budget, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_budget(budget, 10)


# --------------------------------------------------------------------------- validation
P, S = data()


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(method="kmeans"), ValueError,
         r"'method'.*'xssr'.*'random'.*Got 'kmeans' instead"),
        (dict(beta=1.5), ValueError,
         r"The 'beta' parameter must be a float in \[0, 1\]. Got 1.5 instead."),
        (dict(beta=-0.1), ValueError, r"'beta'.*Got -0.1 instead"),
        (dict(beta="half"), ValueError, r"'beta'.*Got 'half' instead"),
        (dict(alpha=2.0), ValueError, r"'alpha'.*'auto' or a float in \[0, 1\]. Got 2.0 instead"),
        (dict(alpha="best"), ValueError, r"'alpha'.*Got 'best' instead"),
        (dict(alpha=np.float64(1.2)), ValueError, r"'alpha'.*Got 1.2 instead"),
        (dict(k=0), ValueError, r"'k' parameter must be an int >= 1. Got 0 instead"),
        (dict(k=2.0), ValueError, r"'k'.*Got 2.0 instead"),
        (dict(alpha_grid=[]), ValueError, r"'alpha_grid'.*non-empty.*Got \[\] instead"),
        (dict(alpha_grid=[0.0, 1.5]), ValueError, r"'alpha_grid'.*Got \[0.0, 1.5\] instead"),
        (dict(alpha_grid=[[0.1]]), ValueError, r"'alpha_grid'.*Got \[\[0.1\]\] instead"),
        (dict(alpha_grid=["a"]), ValueError, r"'alpha_grid'.*Got \['a'\] instead"),
        (dict(metric="manhattan"), ValueError, r"'metric'.*Got 'manhattan' instead"),
        (dict(backend="cuda"), ValueError, r"'backend'.*Got 'cuda' instead"),
        (dict(budget=0), ValueError, r"'budget'.*Got 0 instead"),
        (dict(budget=51), ValueError, r"'budget'.*\(50\). Got 51 instead"),
        (dict(random_state="x"), TypeError, r"'random_state'.*Got 'x' instead"),
        (dict(random_state=1.5), TypeError, r"'random_state'.*Got 1.5 instead"),
    ],
)
def test_parameter_errors_name_parameter_and_value(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        select(P, S, **kwargs)


@pytest.mark.parametrize(
    "pool, source, error, pattern",
    [
        (P[0], S, ValueError, r"'pool_embeddings'.*2-D.*Got an array of shape \(4,\) instead"),
        (P[None], S, ValueError, r"'pool_embeddings'.*2-D.*shape \(1, 50, 4\)"),
        (np.zeros((0, 4)), S, ValueError, r"'pool_embeddings'.*at least 1 row.*\(0, 4\)"),
        (np.where(np.eye(50, 4) > 0, np.nan, P), S, ValueError,
         r"'pool_embeddings'.*finite.*Got 4 NaN or infinite entries"),
        (P, np.full((3, 4), np.inf), ValueError, r"'source_embeddings'.*finite.*Got 12"),
        (P, S[:, :3], ValueError,
         r"'source_embeddings'.*same number of features as 'pool_embeddings' \(4\). Got 3 instead"),
        (np.array([["a", "b"]]), None, TypeError, r"'pool_embeddings'.*numeric.*dtype <U1"),
        (P.astype(complex), S, TypeError, r"'pool_embeddings'.*numeric.*complex128"),
        (P, np.zeros((0, 4)), ValueError, r"'source_embeddings'.*at least 1 row"),
    ],
)
def test_embedding_errors_name_the_parameter(pool, source, error, pattern):
    with pytest.raises(error, match=pattern):
        select(pool, source)


def test_xssr_without_source_needs_alpha_zero():
    for alpha in ("auto", 0.3):
        with pytest.raises(ValueError, match=r"'source_embeddings'.*required.*Got None instead"):
            select(P, None, alpha=alpha)
    assert select(P, None, alpha=0.0).alpha == 0.0
    assert select(P, None, alpha="auto", alpha_grid=[0.0]).alpha_curve == [(0.0, pytest.approx(
        select(P, None, alpha=0.0).coverage))]
    # Baselines do not need source embeddings.
    assert select(P, None, method="random").alpha is None
    assert select(P, None, method="coreset").beta is None


def test_cosine_zero_rows_are_rejected_by_name():
    pool = P.copy()
    pool[3] = 0.0
    with pytest.raises(ValueError, match=r"'pool_embeddings'.*metric='cosine'.*Got 1 all-zero"):
        select(pool, S, metric="cosine")


# --------------------------------------------------------------------------- results
def test_result_fields_and_rows():
    result = select(P, S, budget=5, alpha=0.5)
    assert isinstance(result, SelectionResult)
    assert result.method == "xssr" and result.alpha == 0.5 and result.beta == 0.5
    assert result.indices.dtype == np.int64 and result.indices.shape == (5,)
    rows = result.to_rows()
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["index"] for r in rows] == result.indices.tolist()
    expected_keys = {"rank", "index", "density", "novelty", "diversity", "z_density",
                     "z_novelty", "z_diversity", "score"}
    assert set(rows[0]) == expected_keys
    assert rows[2]["score"] == result.components["score"][2]


def test_random_and_coreset_results():
    rnd = select(P, S, method="random", budget=7, random_state=2)
    assert rnd.components == {} and rnd.to_rows()[0] == {"rank": 1, "index": int(rnd.indices[0])}
    np.testing.assert_allclose(
        rnd.coverage, cdist(P, P[rnd.indices]).min(axis=1).mean(), rtol=1e-9, atol=1e-12
    )
    core = select(P, S, method="coreset", budget=7, random_state=2)
    assert set(core.components) == {"diversity"}
    expected = cdist(P, P[core.indices]).min(axis=1).mean()
    np.testing.assert_allclose(core.coverage, expected, rtol=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_properties_over_many_datasets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    d = int(rng.integers(1, 8))
    pool = rng.normal(size=(n, d))
    if seed % 4 == 0:
        pool[: n // 2] = pool[0]  # many duplicates
    source = rng.normal(size=(int(rng.integers(1, 20)), d))
    budget = int(rng.integers(1, n + 1))
    for method in METHODS:
        result = select(pool, source, method=method, budget=budget, random_state=seed)
        again = select(pool, source, method=method, budget=budget, random_state=seed)
        idx = result.indices
        assert idx.shape == (budget,) and idx.dtype == np.int64
        assert len(np.unique(idx)) == budget
        assert idx.min() >= 0 and idx.max() < n
        np.testing.assert_array_equal(idx, again.indices)
        assert result.coverage == again.coverage and result.coverage >= 0
        for values in result.components.values():
            assert values.shape == (budget,)
        if budget == n:
            assert result.coverage == pytest.approx(0.0, abs=1e-6)


def test_seeds_change_random_but_not_xssr():
    pool, source = data(1, n=100)
    assert not np.array_equal(
        select(pool, method="random", budget=10, random_state=0).indices,
        select(pool, method="random", budget=10, random_state=1).indices,
    )
    a = select(pool, source, budget=10, random_state=0)
    b = select(pool, source, budget=10, random_state=12345)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.alpha == b.alpha and a.alpha_curve == b.alpha_curve


def test_float32_input_gives_the_same_selection_as_float64():
    pool, source = data(4, n=80)
    a = select(pool.astype(np.float32), source.astype(np.float32), budget=8)
    b = select(
        pool.astype(np.float32).astype(np.float64),
        source.astype(np.float32).astype(np.float64),
        budget=8,
    )
    np.testing.assert_array_equal(a.indices, b.indices)


# --------------------------------------------------------------------------- estimator
def test_selector_matches_select():
    pool, source = data(3, n=70)
    selector = XSSRSelector(budget=0.1, beta=0.4, k=5)
    assert not hasattr(selector, "selected_indices_")
    assert selector.fit(pool, source) is selector
    result = select(pool, source, budget=0.1, beta=0.4, k=5)
    np.testing.assert_array_equal(selector.selected_indices_, result.indices)
    assert selector.alpha_ == result.alpha
    assert selector.coverage_ == result.coverage
    assert selector.alpha_curve_ == result.alpha_curve
    assert selector.result_.method == "xssr"
    np.testing.assert_array_equal(selector.components_["score"], result.components["score"])


def test_selector_init_only_stores_and_fit_validates():
    selector = XSSRSelector(beta=7.0)  # no error yet: scikit-learn convention
    assert selector.get_params()["beta"] == 7.0
    with pytest.raises(ValueError, match=r"'beta'.*Got 7.0 instead"):
        selector.fit(P, S)
    selector.set_params(beta=0.2)
    assert selector.fit(P, S).result_.beta == 0.2
    with pytest.raises(ValueError, match=r"Invalid parameter 'gamma'"):
        selector.set_params(gamma=1)
    assert "beta=0.2" in repr(selector)
