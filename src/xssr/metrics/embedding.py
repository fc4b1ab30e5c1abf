"""Diagnostics of an embedding space: does it see the domain shift that XSSR's novelty relies on?"""

from __future__ import annotations

import numpy as np


def domain_separability(source: np.ndarray, pool: np.ndarray, *, random_state: int = 0, folds: int = 5) -> float:
    """Cross-validated ROC-AUC of a linear classifier telling source from target embeddings.

    source : (n_source, d); pool : (n_pool, d). 0.5 means the embeddings do not separate the
    domains (novelty is then mostly noise); 1.0 means they separate them perfectly.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source, pool]).astype(np.float64)
    y = np.concatenate([np.zeros(len(source)), np.ones(len(pool))])
    folds = min(folds, len(source), len(pool))
    if folds < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    return float(cross_val_score(model, x, y, cv=splitter, scoring="roc_auc").mean())


def rank_correlation(a, b) -> float:
    """Spearman correlation of two equal-length sequences (nan when undefined)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(spearmanr(a[keep], b[keep]).statistic)
