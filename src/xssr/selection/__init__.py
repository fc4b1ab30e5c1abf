"""Cold-start sample selection on embeddings: XSSR (paper §3.2), random and CoreSet.

Pure numpy (FAISS optional): arrays in, arrays out, no torch and no file I/O.

Example::

    from xssr.selection import select

    result = select(pool_embeddings, source_embeddings, method="xssr", budget=0.05)
    result.indices, result.alpha, result.coverage
"""

from .baselines import coreset_select, random_select
from .neighbors import knn_mean_distance, nearest_distance
from .selector import SelectionResult, XSSRSelector, resolve_budget, select

__all__ = [
    "SelectionResult",
    "XSSRSelector",
    "coreset_select",
    "knn_mean_distance",
    "nearest_distance",
    "random_select",
    "resolve_budget",
    "select",
]
