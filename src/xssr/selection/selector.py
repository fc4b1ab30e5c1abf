"""One entry point for every selection method: :func:`select` and :class:`XSSRSelector`.

Methods (``select(..., method=...)``):

* ``"xssr"``: the paper's greedy (density, novelty, diversity), :mod:`.xssr`;
* ``"random"``: uniform without replacement;
* ``"stratified-random"``: uniform within each site, budget split by site size
  (needs ``sites``), :func:`.baselines.stratified_random_select`;
* ``"coreset"``: k-center greedy (Sener & Savarese, 2018);
* ``"typiclust"``: most typical sample of each k-means cluster (Hacohen et al., 2022),
  :mod:`.typiclust`;
* ``"probcover"``: greedy coverage of the delta-ball graph, delta by purity (Yehuda et
  al., 2022), :mod:`.probcover`.

Both entry points validate their inputs and run the same code; the estimator only stores
arguments in ``__init__`` and exposes the result as attributes ending in ``_``.
"""

from __future__ import annotations

import dataclasses

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .baselines import (
    coreset_select,
    random_select,
    stratified_random_select,
)
from .neighbors import (
    BACKENDS,
    METRICS,
    nearest_distance,
    prepare_embeddings,
)
from .checks import (
    check_choice,
    check_embeddings,
    check_grid,
    check_labeled,
    check_positive_int,
    check_random_state,
    check_real,
    check_sites,
    is_int,
    show,
)
from .probcover import probcover_select
from .typiclust import typiclust_select
from .xssr import xssr_select

logger = logging.getLogger(__name__)

#: Algorithm name -> function(validated params) -> SelectionResult. Filled by
#: :func:`register_algorithm`; :func:`select` dispatches through it.
ALGORITHMS: dict[str, Callable[[dict], "SelectionResult"]] = {}


def register_algorithm(name: str):
    """Decorator: make ``function(params) -> SelectionResult`` the algorithm ``name`` of :func:`select`.

    ``params`` holds the validated arguments of :func:`select`: ``pool`` and ``source``
    (float64 arrays), ``budget`` (a count), ``alpha``, ``beta``, ``k``, ``alpha_grid``,
    ``metric``, ``rng`` (a Generator), ``backend`` and ``sites``.
    """
    def add(function):
        if name in ALGORITHMS:
            raise ValueError(f"A selection algorithm named {name!r} is already registered.")
        ALGORITHMS[name] = function
        return function

    return add


@dataclass(frozen=True)
class SelectionResult:
    """Which pool samples were selected, and why.

    Attributes
    ----------
    method : str
        The algorithm that made it (a name in :data:`ALGORITHMS`).
    indices : ndarray of shape (budget,), int64
        Selected pool indices in pick order.
    coverage : float
        Mean distance from every pool sample to its nearest selected sample (paper Eq. 9).
    alpha, beta : float or None
        XSSR weights used (alpha is the chosen one when alpha="auto"); None for baselines.
    alpha_curve : list of (alpha, coverage)
        Coverage of every grid alpha when alpha="auto"; empty otherwise.
    components : dict of str -> ndarray of shape (budget,)
        Per-pick values aligned with ``indices``. XSSR: "density", "novelty",
        "diversity" (raw, at pick time), "z_density", "z_novelty", "z_diversity",
        "score". CoreSet: "diversity" (distance to the nearest earlier centre).
        TypiClust: "typicality" (at pick time; NaN for a one-sample cluster) and
        "cluster_size". ProbCover: "newly_covered" (0 for random fill picks once the
        pool is covered). Random and stratified random: empty. The first pick's raw
        diversity is NaN (nothing selected yet).
    delta : float or None
        ProbCover ball radius (chosen by purity); None for the other methods.
    purity_curve : list of (delta, purity)
        ProbCover's ball purity for every candidate delta; empty otherwise.
    """

    method: str
    indices: np.ndarray
    coverage: float
    alpha: float | None = None
    beta: float | None = None
    alpha_curve: list[tuple[float, float]] = field(default_factory=list)
    components: dict[str, np.ndarray] = field(default_factory=dict)
    delta: float | None = None
    purity_curve: list[tuple[float, float]] = field(default_factory=list)

    def to_rows(self) -> list[dict]:
        """One dict per pick: ``rank`` (from 1), ``index`` and each component as a float."""
        rows = []
        for rank, index in enumerate(self.indices, start=1):
            row = {"rank": rank, "index": int(index)}
            for name, values in self.components.items():
                row[name] = float(values[rank - 1])
            rows.append(row)
        return rows


# --------------------------------------------------------------------------- validation
def resolve_budget(budget, n_pool: int) -> int:
    """Number of samples to select; the budget has this one meaning everywhere in xssr.

    A whole number >= 1 (an int, or a float such as ``22.0``) is a count of images; a
    number strictly between 0 and 1 is a fraction of the pool, rounded down but at least 1
    (5 % of 453 is 22, as in the paper). So ``1`` and ``1.0`` both mean one image; the whole
    pool is ``n_pool`` (or the method ``"full"`` of a run). Raises ValueError otherwise, or
    when the count exceeds ``n_pool``.
    """
    expected = "The 'budget' parameter must be a whole number >= 1 (a count) or a number in (0, 1) (a fraction). "
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, numbers.Real):
        raise ValueError(expected + f"Got {show(budget)} instead.")
    if is_int(budget) or (math.isfinite(budget) and float(budget).is_integer() and budget >= 1):
        count = int(budget)
        if count < 1:
            raise ValueError(expected + f"Got {show(budget)} instead.")
    elif math.isfinite(budget) and 0.0 < budget < 1.0:
        count = max(1, math.floor(float(budget) * n_pool))
    else:
        raise ValueError(expected + f"Got {show(budget)} instead.")
    if count > n_pool:
        raise ValueError(
            f"The 'budget' parameter must be at most the pool size ({n_pool}). "
            f"Got {show(budget)} instead."
        )
    return count


def _validate(
    pool, source, method, budget, alpha, beta, k, alpha_grid, metric, random_state, backend,
    sites=None, scores=None, labeled=None,
):
    """Check every argument of :func:`select`; return them normalised, as a dict."""
    check_choice(method, "method", tuple(ALGORITHMS))
    check_choice(metric, "metric", METRICS)
    check_choice(backend, "backend", BACKENDS)
    pool = check_embeddings(pool, "pool_embeddings")
    if metric == "cosine":
        # The baselines would find an all-zero row too, but name the array 'X', which is
        # not an argument of select().
        prepare_embeddings(pool, metric, name="pool_embeddings")
    if source is not None:
        source = check_embeddings(source, "source_embeddings")
        if source.shape[1] != pool.shape[1]:
            raise ValueError(
                "The 'source_embeddings' parameter must have the same number of features as "
                f"'pool_embeddings' ({pool.shape[1]}). Got {source.shape[1]} instead."
            )
    params = dict(
        pool=pool,
        source=source,
        method=method,
        budget=resolve_budget(budget, pool.shape[0]),
        alpha=check_real(alpha, "alpha", high=1.0, keyword="auto"),
        beta=check_real(beta, "beta", high=1.0),
        k=check_positive_int(k, "k"),
        alpha_grid=None if alpha_grid is None else check_grid(alpha_grid, "alpha_grid", high=1.0),
        metric=metric,
        rng=check_random_state(random_state),
        backend=backend,
        sites=None if sites is None else check_sites(sites, pool.shape[0]),
        scores=None if scores is None else _check_scores(scores, pool.shape[0]),
    )
    params["labeled"] = check_labeled(labeled, pool.shape[0], params["budget"])
    if method == "uncertainty" and scores is None:
        raise ValueError("The 'scores' parameter is required for method='uncertainty': pass one uncertainty per "
                         f"pool image ({pool.shape[0]}). Got None instead.")
    if method == "stratified-random" and sites is None:
        raise ValueError(
            "The 'sites' parameter is required for method='stratified-random': pass one "
            f"site name per pool image ({pool.shape[0]}). Got None instead."
        )
    if method == "xssr" and source is None:
        needs_source = (
            params["alpha"] > 0
            if not isinstance(params["alpha"], str)
            else params["alpha_grid"] is None or bool(np.any(params["alpha_grid"] > 0))
        )
        if needs_source:
            raise ValueError(
                "The 'source_embeddings' parameter is required for method='xssr' when alpha "
                f"can be > 0 (alpha={show(alpha)}); pass source embeddings or set alpha=0. "
                "Got None instead."
            )
    return params


def _check_scores(scores, n_pool: int) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (n_pool,):
        raise ValueError(f"The 'scores' parameter must have one value per pool image, shape ({n_pool},). "
                         f"Got shape {values.shape} instead.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"The 'scores' parameter must be finite. Got {int((~np.isfinite(values)).sum())} "
                         "non-finite value(s) instead.")
    return values


# --------------------------------------------------------------------------- entry points
def select(
    pool_embeddings,
    source_embeddings=None,
    *,
    method: str = "xssr",
    budget=0.05,
    alpha="auto",
    beta: float = 0.5,
    k: int = 10,
    alpha_grid=None,
    metric: str = "euclidean",
    random_state=0,
    backend: str = "auto",
    sites=None,
    scores=None,
    labeled=None,
    alpha_criterion: str = "coverage",
) -> SelectionResult:
    """Select pool samples to annotate.

    Parameters
    ----------
    pool_embeddings : array-like of shape (n_pool, n_features)
        Target-domain embeddings to choose from.
    source_embeddings : array-like of shape (n_source, n_features) or None
        Source-domain embeddings; XSSR needs them unless alpha is 0. Ignored by the
        other methods (but checked if given).
    method : {"xssr", "random", "stratified-random", "coreset", "typiclust", "probcover"}
    budget : whole number >= 1, or float in (0, 1)
        Count, or fraction of the pool (see :func:`resolve_budget`: 1 and 1.0 both mean one).
    alpha : "auto" or float in [0, 1]
        XSSR novelty-vs-diversity weight; "auto" picks the grid value with the lowest
        coverage.
    beta : float in [0, 1]
        XSSR density weight.
    k : int >= 1
        Neighbours for XSSR density.
    alpha_grid : array-like of shape (n_alphas,) or None
        Grid for alpha="auto"; default ``np.linspace(0, 1, 11)``.
    metric : {"euclidean", "cosine"}
    random_state : int, None or numpy Generator
        Used by the random methods, CoreSet's first centre, the k-means of TypiClust
        and ProbCover, and ProbCover's random tie-break order; XSSR is deterministic.
    backend : {"auto", "numpy", "faiss", "faiss-ivf"}
        Nearest-neighbour search for XSSR density and novelty, TypiClust typicality, and
        the reported coverage. "auto", "numpy" and "faiss" are exact; "faiss-ivf" is
        approximate, for pools too large for exact search (its recall is measured by
        ``xssr bench cost``).
    sites : sequence of str of length n_pool, or None
        Site of every pool image; required by "stratified-random", ignored by the
        other methods (but checked if given).
    scores : array-like of shape (n_pool,) or None
        A per-image uncertainty (higher = less sure); required by "uncertainty",
        ignored by the other methods (but checked if given).
    alpha_criterion : {"coverage", "shift-weighted-coverage"}
        How alpha="auto" scores each grid alpha: the paper's coverage (Eq. 9), or the same
        with every pool image weighted by its distance to the nearest source image.
    labeled : array-like of int or None
        Pool indices annotated in an earlier round. They are never picked; XSSR, CoreSet and
        uncertainty count them as already selected (diversity and coverage are measured
        against them), the other methods choose among the remaining images.

    Returns
    -------
    SelectionResult
    """
    p = _validate(
        pool_embeddings, source_embeddings, method, budget, alpha, beta, k,
        alpha_grid, metric, random_state, backend, sites, scores, labeled,
    )
    p["alpha_criterion"] = check_choice(alpha_criterion, "alpha_criterion", ALPHA_CRITERIA)
    logger.debug("select: method=%s budget=%d pool=%s", method, p["budget"], p["pool"].shape)
    if p["labeled"] is not None and method not in CONDITIONED:
        return _among_unlabeled(p)
    return ALGORITHMS[method](p)


ALPHA_CRITERIA = ("coverage", "shift-weighted-coverage")

#: Algorithms that measure diversity against an earlier round's labeled images themselves.
CONDITIONED = ("xssr", "coreset", "uncertainty")


def _among_unlabeled(p: dict) -> SelectionResult:
    """Run an algorithm on the images not labeled yet and map its picks back to pool indices
    (coverage is then that of the unlabeled images)."""
    keep = np.setdiff1d(np.arange(p["pool"].shape[0]), p["labeled"])
    sub = dict(p, pool=p["pool"][keep], labeled=None,
               sites=None if p["sites"] is None else [p["sites"][i] for i in keep],
               scores=None if p["scores"] is None else p["scores"][keep])
    result = ALGORITHMS[p["method"]](sub)
    return dataclasses.replace(result, indices=keep[result.indices])


@register_algorithm("xssr")
def _xssr(p: dict) -> SelectionResult:
    run = xssr_select(
        p["pool"], p["source"], p["budget"], alpha=p["alpha"], beta=p["beta"], k=p["k"],
        alpha_grid=p["alpha_grid"], metric=p["metric"], backend=p["backend"], labeled=p["labeled"],
        alpha_criterion=p.get("alpha_criterion", "coverage"),
    )
    return SelectionResult(
        method="xssr", indices=run.indices, coverage=run.coverage, alpha=run.alpha,
        beta=p["beta"], alpha_curve=run.alpha_curve, components=run.components,
    )


@register_algorithm("uncertainty")
def _uncertainty(p: dict) -> SelectionResult:
    from xssr.selection.uncertainty import uncertainty_kcenter

    picks = uncertainty_kcenter(p["pool"], p["scores"], p["budget"], p["metric"], labeled=p["labeled"])
    return SelectionResult(
        method="uncertainty", indices=picks.indices, coverage=picks.coverage,
        components={"uncertainty": p["scores"][picks.indices], "weighted_distance": picks.weighted_distance},
    )


@register_algorithm("coreset")
def _coreset(p: dict) -> SelectionResult:
    picks = coreset_select(p["pool"], p["budget"], p["rng"], p["metric"], labeled=p["labeled"])
    return SelectionResult(
        method="coreset", indices=picks.indices, coverage=picks.coverage,
        components={"diversity": picks.diversity},
    )


@register_algorithm("typiclust")
def _typiclust(p: dict) -> SelectionResult:
    picks = typiclust_select(p["pool"], p["budget"], p["rng"], metric=p["metric"], backend=p["backend"])
    return SelectionResult(
        method="typiclust", indices=picks.indices, coverage=picks.coverage,
        components={"typicality": picks.typicality, "cluster_size": picks.cluster_size},
    )


@register_algorithm("probcover")
def _probcover(p: dict) -> SelectionResult:
    picks = probcover_select(p["pool"], p["budget"], p["rng"], metric=p["metric"], backend=p["backend"])
    return SelectionResult(
        method="probcover", indices=picks.indices, coverage=picks.coverage,
        components={"newly_covered": picks.newly_covered}, delta=picks.delta,
        purity_curve=picks.purity_curve,
    )


def coverage_of(p: dict, indices: np.ndarray) -> float:
    """Mean distance from every pool sample to its nearest pick (Eq. 9), for any algorithm."""
    return float(nearest_distance(p["pool"], p["pool"][indices], metric=p["metric"], backend=p["backend"]).mean())


@register_algorithm("stratified-random")
def _stratified_random(p: dict) -> SelectionResult:
    indices = stratified_random_select(p["sites"], p["budget"], p["rng"])
    return SelectionResult(method="stratified-random", indices=indices, coverage=coverage_of(p, indices))


@register_algorithm("random")
def _random(p: dict) -> SelectionResult:
    indices = random_select(p["pool"].shape[0], p["budget"], p["rng"])
    return SelectionResult(method="random", indices=indices, coverage=coverage_of(p, indices))


class XSSRSelector:
    """Estimator form of :func:`select` with ``method="xssr"``.

    Parameters are those of :func:`select`. ``fit`` sets ``selected_indices_``
    (budget,), ``alpha_``, ``coverage_``, ``alpha_curve_``, ``components_`` and
    ``result_`` (the full :class:`SelectionResult`).

    Example::

        selector = XSSRSelector(budget=0.05).fit(pool_embeddings, source_embeddings)
        selector.selected_indices_  # (budget,) pool indices in pick order
    """

    _PARAMS = ("budget", "alpha", "beta", "k", "alpha_grid", "metric", "random_state", "backend")

    def __init__(
        self,
        budget=0.05,
        alpha="auto",
        beta: float = 0.5,
        k: int = 10,
        alpha_grid=None,
        metric: str = "euclidean",
        random_state=0,
        backend: str = "auto",
    ):
        self.budget = budget
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.alpha_grid = alpha_grid
        self.metric = metric
        self.random_state = random_state
        self.backend = backend

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments as a dict (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> "XSSRSelector":
        """Set constructor arguments; unknown names raise ValueError."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(
                    f"Invalid parameter {name!r} for XSSRSelector. "
                    f"Valid parameters are: {', '.join(self._PARAMS)}."
                )
            setattr(self, name, value)
        return self

    def fit(self, pool_embeddings, source_embeddings=None) -> "XSSRSelector":
        """Select from ``pool_embeddings`` (n_pool, n_features) given the source embeddings."""
        result = select(
            pool_embeddings, source_embeddings, method="xssr", **self.get_params()
        )
        self.result_ = result
        self.selected_indices_ = result.indices
        self.alpha_ = result.alpha
        self.coverage_ = result.coverage
        self.alpha_curve_ = result.alpha_curve
        self.components_ = result.components
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._PARAMS)
        return f"XSSRSelector({args})"
