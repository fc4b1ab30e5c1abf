"""Property tests: every selection method returns valid, reproducible picks on any pool.

Hypothesis draws pools of 1 to 60 rows and 1 to 8 features: spread values, values on a
coarse grid (ties), a few rows repeated (duplicates), one row repeated (constant
embeddings), and tight clusters far from the origin, scaled by 1e-150 to 1e150; budgets
as counts and as fractions, from 1 up to the pool size; XSSR with fixed and automatic
alpha, with and without source embeddings; and the ablations exactly as a run configures
them (:meth:`xssr.selection.registry.Method.select_kwargs`).

Out of range on purpose: entries above ``MAX_ABS`` (1e150), which the package rejects
(their squared distances overflow float64; the rejection is tested here), and exact
distances below ~1.5e-154, whose squares underflow float64, so coverage is only checked
to that precision.

By default each property runs a few dozen examples (profile "selection-properties"). The
copies marked ``slow`` run the same properties on about 15,000 examples in all::

    python -m pytest -m slow tests/selection/test_properties.py

Both profiles are derandomized and keep no example database: a failure reproduces on the
next run, and nothing is written into the repository.
"""

import inspect
import math
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import cdist

from xssr.config import SelectConfig
from xssr.selection import ALGORITHMS, SelectionResult, XSSRSelector, select
from xssr.selection.registry import get_method, method_names
from xssr.selection.checks import MAX_ABS
from xssr.selection.xssr import COMPONENTS, DEFAULT_ALPHA_GRID

# A RuntimeWarning from numpy here means an overflow or an invalid operation slipped
# through, and the number it produced is wrong even when it is not NaN.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

settings.register_profile(
    "selection-properties",
    max_examples=25,
    derandomize=True,
    database=None,
    # Timing depends on the other work on the machine (k-means, FAISS threads); a slow
    # example is not a failure.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)
settings.register_profile(
    "selection-properties-slow", settings.get_profile("selection-properties"), max_examples=1000
)
FAST = settings.get_profile("selection-properties")
SLOW = settings.get_profile("selection-properties-slow")

# Even without an example database, Hypothesis caches the constants it finds in the
# project's source under .hypothesis/ in the working directory, and its pytest plugin
# does so while collecting, before any fixture runs: point it outside the repository
# now (unless the environment already chose a place).
set_hypothesis_home_dir(
    os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
    or Path(tempfile.gettempdir()) / "xssr-hypothesis"
)

# "full" is not a selection: a run trains on the whole pool without calling select().
CONFIG_METHODS = method_names()
METHODS = tuple(ALGORITHMS)
ABLATIONS = tuple(m for m in CONFIG_METHODS if m.startswith("xssr-"))
XSSR_FAMILY = ("xssr",) + ABLATIONS
METHODS_UNDER_TEST = METHODS + ABLATIONS
SELECT_PARAMETERS = tuple(inspect.signature(select).parameters)

try:
    import faiss  # noqa: F401
    BACKENDS = ("auto", "numpy", "faiss")
except ImportError:
    BACKENDS = ("auto", "numpy")

SITE_NAMES = ("site-a", "site-b", "site-c", "site-d")
# Exponents at the ends of the accepted range come up far more often than a uniform draw
# would give them; squared distances at 1e150 are near the top of float64, at 1e-150 near
# the bottom.
EXPONENTS = st.one_of(st.sampled_from([-150, -30, 0, 30, 150]), st.integers(-150, 150))
UNIT = st.floats(-1.0, 1.0)


class Case(NamedTuple):
    pool: np.ndarray
    source: np.ndarray | None
    kwargs: dict  # the rest of select()'s arguments, method included
    count: int  # picks the budget asks for


# --------------------------------------------------------------------------- strategies
@st.composite
def embeddings(draw, n_rows, n_features, exponent):
    """(n_rows, n_features) float64 with entries of magnitude at most 10**exponent."""
    shape = (n_rows, n_features)
    kind = draw(st.sampled_from(["spread", "grid", "duplicates", "constant"]))
    if kind == "spread":
        base = draw(hnp.arrays(np.float64, shape, elements=UNIT))
    elif kind == "grid":
        # Few distinct values: equal distances everywhere, so every greedy step has ties.
        base = draw(hnp.arrays(np.int64, shape, elements=st.integers(-2, 2))) / 2.0
    elif kind == "duplicates":
        n_distinct = draw(st.integers(1, max(1, n_rows // 2)))
        distinct = draw(hnp.arrays(np.float64, (n_distinct, n_features), elements=UNIT))
        rows = draw(hnp.arrays(np.int64, n_rows, elements=st.integers(0, n_distinct - 1)))
        base = distinct[rows]
    else:
        base = np.repeat(draw(hnp.arrays(np.float64, (1, n_features), elements=UNIT)), n_rows, 0)
    if draw(st.booleans()):
        # A tight cluster far from the origin: the distances are a tiny fraction of the
        # coordinates, which is where expanding |x - y|^2 loses digits.
        spread = draw(st.sampled_from([1e-3, 1e-6]))
        centre = draw(hnp.arrays(np.float64, (1, n_features), elements=UNIT))
        base = (centre + spread * base) / 2.0
    return base * 10.0**exponent


@st.composite
def budgets(draw, n_pool):
    """A count (int, numpy int or whole float) or a fraction of the pool in (0, 1)."""
    if draw(st.booleans()):
        count = draw(st.one_of(st.just(1), st.just(n_pool), st.integers(1, n_pool)))
        return draw(st.sampled_from([int, np.int64, float]))(count)
    fractions = [0.05, 0.5] + ([1.0 / n_pool] if n_pool > 1 else [])
    return draw(st.one_of(st.sampled_from(fractions), st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)))


def expected_count(budget, n_pool):
    # A whole number is a count (1 and 1.0 both mean one sample); a number in (0, 1) is a
    # fraction of the pool, rounded down but never below one sample (resolve_budget's rule).
    if isinstance(budget, (int, np.integer)) or float(budget).is_integer():
        return int(budget)
    return max(1, math.floor(budget * n_pool))


def needs_source(kwargs):
    """Whether XSSR's arguments let alpha be > 0, so that novelty is needed."""
    alpha = kwargs.get("alpha", "auto")
    if alpha != "auto":
        return alpha > 0
    grid = kwargs.get("alpha_grid")
    return bool(np.any(np.asarray(DEFAULT_ALPHA_GRID if grid is None else grid) > 0))


@st.composite
def cases(draw, method):
    n_pool = draw(st.integers(1, 60))
    n_features = draw(st.integers(1, 8))
    exponent = draw(EXPONENTS)
    pool = draw(embeddings(n_pool, n_features, exponent))
    budget = draw(budgets(n_pool))
    metric = draw(st.sampled_from(["euclidean", "cosine"]))

    if method in XSSR_FAMILY:
        alpha = draw(st.one_of(st.just("auto"), st.just(0.0), st.just(1.0), UNIT.map(abs)))
        grid = draw(st.one_of(
            st.none(), st.just([0.0]),
            st.lists(st.one_of(st.just(0.0), st.just(1.0), UNIT.map(abs)), min_size=1, max_size=6),
        ))
        beta = draw(st.one_of(st.just(0.0), st.just(1.0), UNIT.map(abs)))
        k = draw(st.integers(1, 70))  # above n_pool - 1 density averages over all others
        if method == "xssr":
            kwargs = dict(method="xssr", budget=budget, alpha=alpha, alpha_grid=grid,
                          beta=beta, k=k, metric=metric)
        else:
            config = SelectConfig(
                budget=budget, alpha=alpha, beta=beta, k=k, metric=metric,
                alpha_grid=tuple(DEFAULT_ALPHA_GRID if grid is None else grid),
            )
            kwargs = get_method(method).select_kwargs(config)
        with_source = needs_source(kwargs) or draw(st.booleans())
    else:
        kwargs = dict(method=method, budget=budget, metric=metric)
        with_source = draw(st.booleans())  # ignored by the baselines, but still checked

    source = None
    if with_source:
        if draw(st.booleans()):
            source = draw(embeddings(draw(st.integers(1, 30)), n_features, exponent))
        else:
            # Source rows that are also pool rows: novelty 0 for several samples at once.
            rows = draw(st.lists(st.integers(0, n_pool - 1), min_size=1, max_size=10))
            source = pool[rows]

    if metric == "cosine" and any(
        rows is not None and not np.all(np.any(rows != 0, axis=1)) for rows in (pool, source)
    ):
        # An all-zero row has no direction; the rejection tests cover it.
        kwargs["metric"] = "euclidean"
    if method == "stratified-random" or draw(st.booleans()):
        names = st.sampled_from(SITE_NAMES[: draw(st.integers(1, len(SITE_NAMES)))])
        kwargs["sites"] = draw(st.lists(names, min_size=n_pool, max_size=n_pool))
    if method == "uncertainty" or draw(st.booleans()):
        # repeated values too: ties must still give distinct, reproducible picks
        values = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1e6, allow_nan=False))
        kwargs["scores"] = np.asarray(draw(st.lists(values, min_size=n_pool, max_size=n_pool)))
    kwargs["random_state"] = draw(st.integers(0, 2**32 - 1))
    kwargs["backend"] = draw(st.sampled_from(BACKENDS))
    return Case(pool, source, kwargs, expected_count(budget, n_pool))


# --------------------------------------------------------------------------- checks
def prepared(points, metric):
    if metric == "euclidean":
        return points
    # Divided by the largest entry first, or the squares underflow for tiny rows.
    rows = points / np.abs(points).max(axis=1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def distance_tolerance(points, metric):
    """How far a reported nearest distance may be from the exact one.

    The neighbour search ranks candidates from float32 GEMM scores and only then measures
    the chosen neighbour exactly, so it may settle on one whose squared distance exceeds
    the nearest by that score's rounding error: about (4 d + 24) 2^-24 (2 r)^2 for a pool
    of radius r, the bound ProbCover uses for the same expansion. Squared distances below
    float64's smallest normal number (distances below ~1.5e-154) also lose their digits.
    Under cosine the unit rows themselves carry rounding, (d + 2) eps per coordinate, so
    two rows with one direction can end up an ulp apart.
    """
    n_features = points.shape[1]
    centred = points - points.mean(axis=0)
    radius2 = float(np.einsum("ij,ij->i", centred, centred).max())
    score_error = (4 * n_features + 24) * 2.0**-24 * 4 * radius2
    tolerance = math.sqrt(2 * score_error) + math.sqrt(np.finfo(np.float64).tiny)
    if metric == "cosine":
        eps = np.finfo(np.float64).eps
        tolerance += 2 * math.sqrt(n_features) * (n_features + 2) * eps
    return tolerance


def check_valid(case, result):
    kwargs, n_pool, count = case.kwargs, case.pool.shape[0], case.count
    assert isinstance(result, SelectionResult)
    assert result.method == kwargs["method"]

    indices = result.indices
    assert isinstance(indices, np.ndarray) and indices.dtype == np.int64
    assert indices.shape == (count,)
    assert np.unique(indices).size == count, f"repeated picks: {indices}"
    assert 0 <= indices.min() and indices.max() < n_pool

    # Coverage (Eq. 9) against a plain float64 computation of the same mean.
    assert isinstance(result.coverage, float) and math.isfinite(result.coverage)
    assert result.coverage >= 0.0
    points = prepared(case.pool, kwargs["metric"])
    exact = float(cdist(points, points[indices]).min(axis=1).mean())
    tolerance = distance_tolerance(points, kwargs["metric"])
    assert abs(result.coverage - exact) <= tolerance + 1e-9 * exact, (
        result.coverage, exact,
    )

    components = result.components
    for name, values in components.items():
        assert values.shape == (count,), name
    if kwargs["method"] == "xssr":
        check_xssr(case, result)
        return
    assert result.alpha is None and result.beta is None and result.alpha_curve == []
    if kwargs["method"] == "coreset":
        assert set(components) == {"diversity"}
        # NaN only at the first pick, which has no earlier centre to be far from.
        diversity = components["diversity"]
        assert np.isnan(diversity[0])
        assert np.all(np.isfinite(diversity[1:])) and np.all(diversity[1:] >= 0)
    elif kwargs["method"] == "typiclust":
        assert set(components) == {"typicality", "cluster_size"}
        typicality, sizes = components["typicality"], components["cluster_size"]
        assert sizes.dtype == np.int64 and np.all((sizes >= 1) & (sizes <= n_pool))
        # NaN for a sample left alone in its cluster (no neighbours), inf for exact
        # duplicates (mean distance 0); otherwise a positive number.
        assert np.all(np.isnan(typicality) | (typicality > 0))
        assert np.all(np.isnan(typicality[sizes == 1]))
    elif kwargs["method"] == "uncertainty":
        assert set(components) == {"uncertainty", "weighted_distance"}
        np.testing.assert_array_equal(components["uncertainty"], kwargs["scores"][indices])
        # the first pick is a most uncertain image; every later value is a scaled uncertainty
        # times a distance, so never negative
        assert kwargs["scores"][indices[0]] == kwargs["scores"].max()
        assert np.all(components["weighted_distance"] >= 0)
    elif kwargs["method"] == "probcover":
        assert set(components) == {"newly_covered"}
        newly = components["newly_covered"]
        assert newly.dtype == np.int64 and np.all(newly >= 0) and newly.sum() <= n_pool
        if count == n_pool:
            assert newly.sum() == n_pool  # every sample covers itself
        assert math.isfinite(result.delta) and result.delta >= 0
        deltas = [delta for delta, _ in result.purity_curve]
        purities = [purity for _, purity in result.purity_curve]
        assert deltas == sorted(deltas) and result.delta in deltas
        assert all(0.0 <= purity <= 1.0 for purity in purities)
    else:
        assert components == {}
    if kwargs["method"] != "probcover":
        assert result.delta is None and result.purity_curve == []
    if kwargs["method"] == "stratified-random":
        sites = np.asarray(kwargs["sites"])
        # Documented: when the budget allows, every site gets at least one pick.
        if count >= np.unique(sites).size:
            assert set(sites[indices]) == set(sites)


def check_xssr(case, result):
    kwargs, components = case.kwargs, result.components
    assert set(components) == set(COMPONENTS)
    # NaN is documented in exactly two places: novelty without a source (undefined) and
    # the first pick's raw diversity (nothing selected yet).
    if case.source is None:
        assert np.all(np.isnan(components["novelty"]))
    else:
        assert np.all(np.isfinite(components["novelty"])) and np.all(components["novelty"] >= 0)
    diversity = components["diversity"]
    assert np.isnan(diversity[0])
    assert np.all(np.isfinite(diversity[1:])) and np.all(diversity[1:] >= 0)
    assert np.all(np.isfinite(components["density"])) and np.all(components["density"] <= 0)
    for name in ("z_density", "z_novelty", "z_diversity", "score"):
        assert np.all(np.isfinite(components[name])), name

    assert result.beta == kwargs["beta"]
    if kwargs["alpha"] != "auto":
        assert result.alpha == kwargs["alpha"] and result.alpha_curve == []
        return
    grid = kwargs["alpha_grid"]
    expected_grid = np.unique(DEFAULT_ALPHA_GRID if grid is None else np.asarray(grid, dtype=float))
    alphas = np.array([alpha for alpha, _ in result.alpha_curve])
    coverages = np.array([coverage for _, coverage in result.alpha_curve])
    np.testing.assert_array_equal(alphas, expected_grid)
    assert np.all(np.isfinite(coverages)) and np.all(coverages >= 0)
    # The smallest coverage wins, exact ties going to the smallest alpha.
    assert result.alpha == alphas[np.argmin(coverages)]
    assert result.coverage == coverages.min()


def check_same(first, second):
    np.testing.assert_array_equal(first.indices, second.indices)
    assert first.coverage == second.coverage
    assert (first.alpha, first.beta, first.delta) == (second.alpha, second.beta, second.delta)
    assert first.alpha_curve == second.alpha_curve
    assert first.purity_curve == second.purity_curve
    assert set(first.components) == set(second.components)
    for name, values in first.components.items():
        np.testing.assert_array_equal(values, second.components[name], err_msg=name)


def check_picks(case):
    result = select(case.pool, case.source, **case.kwargs)
    check_valid(case, result)
    if case.kwargs["method"] == "xssr":
        # The estimator must be the same computation, so it doubles as the second run.
        params = {k: v for k, v in case.kwargs.items() if k not in ("method", "sites", "scores")}
        again = XSSRSelector(**params).fit(case.pool, case.source).result_
    else:
        again = select(case.pool, case.source, **case.kwargs)
    check_same(result, again)


# --------------------------------------------------------------------------- valid inputs
def test_every_configurable_method_is_under_test():
    # A method added to the config without a property test would go unchecked.
    assert set(CONFIG_METHODS) - {"full"} <= set(METHODS_UNDER_TEST)
    assert set(METHODS) <= set(METHODS_UNDER_TEST)


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
@FAST
@given(data=st.data())
def test_picks_are_valid_and_reproducible(method, data):
    check_picks(data.draw(cases(method)))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
@SLOW
@given(data=st.data())
def test_picks_are_valid_and_reproducible_slow(method, data):
    check_picks(data.draw(cases(method)))


# --------------------------------------------------------------------------- rejected inputs
def with_entry(array, value):
    """A copy of ``array`` with one entry set to ``value``."""
    array = np.array(array, dtype=np.float64)
    array.flat[0] = value
    return array


def bad_embeddings(good):
    """Things that are not usable embeddings, built around a valid array ``good``."""
    n_rows, n_features = good.shape
    ragged = [[0.0] * n_features] * max(1, n_rows - 1) + [[0.0] * (n_features + 1)]
    return st.one_of(
        st.sampled_from([np.nan, np.inf, -np.inf]).map(lambda v: with_entry(good, v)),
        # Beyond MAX_ABS squared distances overflow float64.
        st.floats(MAX_ABS, 1e308, exclude_min=True).flatmap(
            lambda v: st.sampled_from([v, -v])).map(lambda v: with_entry(good, v)),
        st.sampled_from([
            good[0], good[:, :, None], good[:0], good[:, :0], np.float64(3.0),
            good.astype(complex), good.astype(object), good.astype(str), ragged, [[[0.0]], [0.0]],
        ]),
    )


def bad_sites(n_pool):
    return st.sampled_from([
        ["site-a"] * (n_pool + 1), ["site-a"] * (n_pool - 1), [1] * n_pool, [b"site-a"] * n_pool,
        ["site-a"] * (n_pool - 1) + [None], "site-a", [["site-a"]] * n_pool,
        np.zeros(n_pool, dtype=np.int64), (name for name in ["site-a"] * n_pool),
    ])


BAD_ARGUMENTS = {
    "method": st.sampled_from(["full", "XSSR", "", "xssr-no-density", None, 3]),
    "alpha": st.sampled_from([-0.1, 1.1, np.nan, np.inf, "best", "AUTO", None, True]),
    "beta": st.sampled_from([-0.1, 1.1, np.nan, -np.inf, "auto", None, True, np.float64(2.0)]),
    "k": st.one_of(st.sampled_from([0, -1, 2.0, "10", None, True]), st.integers(max_value=0)),
    "alpha_grid": st.sampled_from([[], [[0.1]], ["a"], [1.5], [-0.1], [np.nan], "0.5", {0.5}]),
    "metric": st.sampled_from(["manhattan", "COSINE", "", None]),
    "backend": st.sampled_from(["cuda", "torch", None]),
    "random_state": st.sampled_from([-1, np.int64(-3), 1.5, "x", [1]]),
}


@st.composite
def broken_calls(draw, method):
    """A valid call with one argument made invalid: (arguments, the invalid one's name)."""
    case = draw(cases(method))
    call = dict(case.kwargs, pool_embeddings=case.pool, source_embeddings=case.source)
    n_pool = case.pool.shape[0]
    options = list(BAD_ARGUMENTS) + ["budget", "pool_embeddings", "source_embeddings", "sites", "scores"]
    if method == "xssr":
        options.append("missing source")
    options.append("zero row")
    name = draw(st.sampled_from(options))
    if name in BAD_ARGUMENTS:
        call[name] = draw(BAD_ARGUMENTS[name])
    elif name == "budget":
        call[name] = draw(st.one_of(
            st.sampled_from([0, -1, 0.0, -0.5, 1.5, np.nan, np.inf, True, "5%", None, [3]]),
            st.integers(n_pool + 1, 10**30),
        ))
    elif name == "pool_embeddings":
        call[name] = draw(bad_embeddings(case.pool))
    elif name == "source_embeddings":
        good = case.pool if case.source is None else case.source
        wide = np.zeros((good.shape[0], good.shape[1] + 1))
        call[name] = draw(st.one_of(bad_embeddings(good), st.just(wide)))
    elif name == "sites":
        if method == "stratified-random":
            call[name] = draw(st.one_of(st.none(), bad_sites(n_pool)))
        else:
            call[name] = draw(bad_sites(n_pool))
    elif name == "scores":
        bad = st.one_of(st.just(np.ones(n_pool + 1)), st.just(np.full(n_pool, np.nan)),
                        st.just(np.full(n_pool, np.inf)), st.just(np.ones((n_pool, 1))))
        call[name] = draw(st.one_of(st.none(), bad) if method == "uncertainty" else bad)
    elif name == "missing source":
        name = "source_embeddings"
        call.update(source_embeddings=None, alpha=draw(st.sampled_from(["auto", 0.5, 1.0])),
                    alpha_grid=None)
    else:  # zero row
        name = "pool_embeddings"
        pool = case.pool.copy()
        pool[draw(st.integers(0, n_pool - 1))] = 0.0
        call.update(pool_embeddings=pool, metric="cosine")
    return call, name


def check_rejected(call, name):
    # Rejections go through ValueError or TypeError, and name the bad argument in the
    # package's format: "The 'NAME' parameter must ... Got ... instead."
    with pytest.raises((ValueError, TypeError)) as caught:
        select(**call)
    message = str(caught.value)
    assert re.match(rf"The '{name}' parameter (must|is required)", message), message
    assert "Got " in message, message
    assert name in SELECT_PARAMETERS


@pytest.mark.parametrize("method", METHODS)
@settings(FAST, max_examples=10)
@given(data=st.data())
def test_invalid_arguments_are_rejected_by_name(method, data):
    check_rejected(*data.draw(broken_calls(method)))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@SLOW
@given(data=st.data())
def test_invalid_arguments_are_rejected_by_name_slow(method, data):
    check_rejected(*data.draw(broken_calls(method)))
