"""Cold-start sample selection on embeddings: XSSR (paper §3.2) and the baselines.

Baselines: random, site-stratified random, CoreSet, TypiClust and ProbCover. Pure numpy,
scipy and scikit-learn (FAISS optional): arrays in, arrays out, no torch and no file I/O.

Example::

    from xssr.selection import select

    result = select(pool_embeddings, source_embeddings, method="xssr", budget=0.05)
    result.indices, result.alpha, result.coverage
"""

from .baselines import coreset_select, random_select, site_allocation, stratified_random_select
from .neighbors import knn_mean_distance, nearest_distance
from .probcover import choose_delta, probcover_select
from .selector import ALGORITHMS, SelectionResult, XSSRSelector, register_algorithm, resolve_budget, select
from .typiclust import typiclust_select

__all__ = [
    "ALGORITHMS",
    "SelectionResult",
    "XSSRSelector",
    "choose_delta",
    "coreset_select",
    "knn_mean_distance",
    "nearest_distance",
    "probcover_select",
    "random_select",
    "register_algorithm",
    "resolve_budget",
    "select",
    "site_allocation",
    "stratified_random_select",
    "typiclust_select",
]
