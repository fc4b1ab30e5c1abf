"""Peer comparison: xssr's selection beside other implementations, on the same embeddings.

Contenders, named ``library:algorithm`` (:data:`CONTENDERS`):

* ``xssr:typiclust`` and ``skactiveml:typiclust`` (``skactiveml.pool.TypiClust``);
* ``xssr:probcover`` and ``skactiveml:probcover`` (``skactiveml.pool.ProbCover``);
* ``xssr:xssr`` and ``naive:xssr`` (:func:`naive_xssr`, below: a reference for speed only).

Every contender selects the same number of images from the same synthetic clustered
embeddings (:func:`xssr.bench.cost.clustered_embeddings`), each in a fresh process so that its
seconds and peak resident memory are its own, measured as ``xssr bench cost`` measures them.
The parent then scores the picks on the same embeddings: Eq. 9 coverage for every contender,
for a peer the share of its picks that the xssr row it is compared with also made
(:data:`COMPARED_WITH`), and for ProbCover the share of the pool within delta of a pick.

Like for like, on purpose:

* scikit-activeml gets the whole pool as candidates, every label missing, ``batch_size`` = the
  number of picks;
* its ProbCover gets ``deltas=[delta]``, the radius xssr's ProbCover chose by purity on the same
  embeddings, so both run the greedy on the same ball graph (its own delta search, with two
  k-means clusters when no labels are given, is not compared);
* its TypiClust gets xssr's 20 typicality neighbours (its default is 5) and ``n_init=1`` with
  the k-means seed xssr's TypiClust derives from the same ``random_state``, so both cluster
  the pool alike and the overlap measures the implementations, not k-means luck. One
  difference stays: xssr takes images from clusters of fewer than 5 only once the larger
  clusters have none left (as the TypiClust authors' code does), scikit-activeml takes one
  image from every cluster, largest first.

scikit-activeml imports torch when it is installed, for neural-network wrappers these two
strategies never use; the measuring process hides torch from every contender, so no row pays
for loading it.
"""

from __future__ import annotations

import importlib.abc
import json
import logging
import subprocess
import sys
import warnings
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xssr.bench.cost import clustered_embeddings, peak_rss_mb
from xssr.report.io import read_json, write_json
from xssr.report.provenance import environment

logger = logging.getLogger(__name__)

#: Run in this order at each pool size: each xssr row comes before the peer compared with it
#: (scikit-activeml's ProbCover needs the delta xssr's chose).
CONTENDERS = ("xssr:typiclust", "skactiveml:typiclust", "xssr:probcover", "skactiveml:probcover",
              "xssr:xssr", "naive:xssr")
#: Peer -> the xssr contender its picks are compared with.
COMPARED_WITH = {"skactiveml:typiclust": "xssr:typiclust", "skactiveml:probcover": "xssr:probcover",
                 "naive:xssr": "xssr:xssr"}
#: Neighbours for TypiClust's typicality in xssr (:data:`xssr.selection.typiclust.TYPICALITY_K`).
TYPICALITY_K = 20
INSTALL_HINT = "scikit-activeml is not installed: pip install -c constraints.txt -e '.[peers]'"


# --------------------------------------------------------------------------- naive XSSR
def naive_xssr(pool, source, budget: int, *, beta: float = 0.5, k: int = 10,
               alphas: Sequence[float] = tuple(np.linspace(0.0, 1.0, 11).round(12)),
               block_bytes: int = 64 * 2**20) -> tuple[np.ndarray, float, float]:
    """XSSR as the paper's text reads, written the straightforward way: A REFERENCE FOR SPEED ONLY.

    Use :func:`xssr.selection.select` for real work. This exists so that ``xssr bench peers``
    can show what xssr's implementation (all alphas in lockstep, one GEMM per step for the
    distances, density and novelty by chunked neighbour search) gains over the obvious one:
    density and novelty from ``scipy.spatial.distance.cdist`` (in row blocks of ``block_bytes``,
    only so that a 20,000-image pool fits in memory), then for each alpha of the grid, one after
    another, a greedy that z-scores all three terms over the remaining candidates at every step,
    picks one candidate and updates diversity with one more ``cdist`` column. It makes the same
    choices as :mod:`xssr.selection.xssr` (documented there), so it picks the same images.

    Parameters
    ----------
    pool : array-like of shape (n_pool, n_features)
    source : array-like of shape (n_source, n_features)
    budget : int in [1, n_pool]

    Returns
    -------
    indices : ndarray of shape (budget,), int64, in pick order ; coverage : float ; alpha : float
    """
    from scipy.spatial.distance import cdist

    pool, source = np.asarray(pool, dtype=np.float64), np.asarray(source, dtype=np.float64)
    n = pool.shape[0]
    rows = max(1, block_bytes // (8 * max(n, source.shape[0])))
    neighbours = min(k, n - 1)
    density, novelty = np.empty(n), np.empty(n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        d = cdist(pool[start:stop], pool)
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        density[start:stop] = -np.partition(d, neighbours - 1, axis=1)[:, :neighbours].mean(axis=1)
        novelty[start:stop] = cdist(pool[start:stop], source).min(axis=1)
    best = None
    for alpha in alphas:  # one full greedy per alpha, one after another
        picks, coverage = _naive_greedy(pool, density, novelty, float(alpha), beta, budget, cdist)
        if best is None or coverage < best[1]:  # ties keep the smaller alpha
            best = (picks, coverage, float(alpha))
    return best


def _naive_greedy(pool, density, novelty, alpha, beta, budget, cdist) -> tuple[np.ndarray, float]:
    n = pool.shape[0]
    remaining = np.ones(n, dtype=bool)
    nearest_pick = np.full(n, np.inf)
    picks = np.empty(budget, dtype=np.int64)
    for step in range(budget):
        candidates = np.flatnonzero(remaining)
        # Nothing is picked before the first step: diversity is undefined and contributes 0.
        diversity = _zscore(nearest_pick[candidates]) if step else 0.0
        score = beta * _zscore(density[candidates]) + (1 - beta) * (
            alpha * _zscore(novelty[candidates]) + (1 - alpha) * diversity)
        picks[step] = candidates[np.argmax(score)]  # first maximum: the lowest index
        remaining[picks[step]] = False
        nearest_pick = np.minimum(nearest_pick, cdist(pool, pool[picks[step]][None, :])[:, 0])
    return picks, float(nearest_pick.mean())


def _zscore(values: np.ndarray) -> np.ndarray:
    mean, std = values.mean(), values.std()
    return np.zeros_like(values) if std <= 1e-10 * abs(mean) else (values - mean) / std


# --------------------------------------------------------------------------- contenders
def _xssr(algorithm: str, pool, source, picks: int, seed: int, delta=None) -> tuple[np.ndarray, dict]:
    from xssr.selection import select

    result = select(pool, source if algorithm == "xssr" else None, method=algorithm, budget=picks,
                    random_state=seed)
    extra = {"alpha": result.alpha} if algorithm == "xssr" else {}
    return result.indices, {**extra, **({"delta": result.delta} if result.delta is not None else {})}


def _naive(pool, source, picks: int, seed: int, delta=None) -> tuple[np.ndarray, dict]:
    indices, _, alpha = naive_xssr(pool, source, picks)
    return indices, {"alpha": alpha}


def _skactiveml_typiclust(pool, source, picks: int, seed: int, delta=None) -> tuple[np.ndarray, dict]:
    import skactiveml
    from skactiveml.pool import TypiClust

    strategy = TypiClust(random_state=seed, k=TYPICALITY_K,
                         cluster_algo_dict={"n_init": 1, "random_state": xssr_kmeans_seed(seed)})
    return _query(strategy, pool, picks), {"library_version": skactiveml.__version__}


def _skactiveml_probcover(pool, source, picks: int, seed: int, delta=None) -> tuple[np.ndarray, dict]:
    import skactiveml
    from skactiveml.pool import ProbCover

    if delta is None:
        raise ValueError("skactiveml:probcover needs the delta that xssr:probcover chose; got None.")
    with warnings.catch_warnings():
        # Given one delta it searches none, and warns that the purity it never measured is -1.
        warnings.filterwarnings("ignore", message="The maximum purity", category=UserWarning)
        indices = _query(ProbCover(deltas=[delta], random_state=seed), pool, picks)
    return indices, {"delta": delta, "library_version": skactiveml.__version__}


Run = Callable[..., tuple[np.ndarray, dict[str, Any]]]
#: contender -> run(pool, source, picks, seed, delta) -> (indices in pick order, extra fields of its row)
_RUNS: dict[str, Run] = {
    "xssr:typiclust": partial(_xssr, "typiclust"), "skactiveml:typiclust": _skactiveml_typiclust,
    "xssr:probcover": partial(_xssr, "probcover"), "skactiveml:probcover": _skactiveml_probcover,
    "xssr:xssr": partial(_xssr, "xssr"), "naive:xssr": _naive,
}
#: What each library's contenders import, loaded before the clock starts.
_IMPORTS = {"xssr": "xssr.selection", "naive": "scipy.spatial.distance", "skactiveml": "skactiveml.pool"}


def load_contender(name: str) -> Run:
    """Import what contender ``name`` needs and return its ``run(pool, source, picks, seed, delta)``."""
    if name not in _RUNS:
        raise ValueError(f"Unknown contender {name!r}; known: {', '.join(CONTENDERS)}.")
    library = name.partition(":")[0]
    try:
        import_module(_IMPORTS[library])
    except ImportError:
        if library != "skactiveml":
            raise
        raise ImportError(INSTALL_HINT) from None
    return _RUNS[name]


def _query(strategy, pool: np.ndarray, picks: int) -> np.ndarray:
    """Cold start as scikit-activeml spells it: every label missing, the whole pool as candidates."""
    X = np.asarray(pool, dtype=np.float64)
    return np.asarray(strategy.query(X, np.full(len(X), np.nan), candidates=np.arange(len(X)), batch_size=picks))


def xssr_kmeans_seed(seed: int) -> int:
    """The scikit-learn seed xssr's TypiClust gives k-means for ``random_state=seed``.

    Mirrors :func:`xssr.selection.typiclust.kmeans_labels` (the first draw of the seed's
    Generator); if that changes, the TypiClust overlap drops and shows it.
    """
    return int(np.random.default_rng(seed).integers(np.iinfo(np.int32).max))


class _HideTorch(importlib.abc.MetaPathFinder):
    """Make ``import torch`` fail, as on a machine without it (see the module docstring)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden while measuring)", name=name)
        return None


def _probe() -> None:
    """In a fresh process: ``contender n_pool n_source dim picks seed [delta]`` -> one JSON line."""
    import time

    sys.meta_path.insert(0, _HideTorch())
    name, n_pool, n_source, dim, picks, seed = sys.argv[1], *map(int, sys.argv[2:7])
    delta = float(sys.argv[7]) if len(sys.argv) > 7 else None
    run = load_contender(name)
    pool, source = clustered_embeddings(n_pool, n_source, dim, seed)
    base = peak_rss_mb()
    start = time.perf_counter()
    indices, extra = run(pool, source, picks, seed, delta)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "data_rss_mb": base,
                      "torch_loaded": "torch" in sys.modules, "indices": [int(i) for i in indices], **extra}))


_PROBE = "from xssr.bench.peers import _probe; _probe()"


# --------------------------------------------------------------------------- measuring
def measure(name: str, n_pool: int, *, n_source: int | None = None, dim: int = 128, picks: int = 500,
            seed: int = 0, delta: float | None = None, timeout: float = 3600) -> dict[str, Any]:
    """One contender's selection in a fresh process: seconds, peak resident memory and its picks."""
    n_source = n_pool if n_source is None else n_source
    row = dict(zip(_KEY_FIELDS, (name, n_pool, n_source, dim, picks, seed)))
    args = [sys.executable, "-c", _PROBE, name, str(n_pool), str(n_source), str(dim), str(picks), str(seed)]
    try:
        completed = subprocess.run(args + ([repr(float(delta))] if delta is not None else []),
                                   capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "error": [f"no result within {timeout:.0f} s"]}
    if completed.returncode != 0:
        return {**row, "error": completed.stderr.strip().splitlines()[-1:]}
    return {**row, **json.loads(completed.stdout.strip().splitlines()[-1]), "environment": environment()}


_KEY_FIELDS = ("contender", "n_pool", "n_source", "dim", "picks", "seed")


def _key(row: dict) -> tuple:
    return tuple(row[field] for field in _KEY_FIELDS)


def score_picks(rows: list[dict], pool: np.ndarray) -> None:
    """Fill in, where missing, each row's Eq. 9 ``coverage`` and, for ProbCover, ``ball_coverage``
    (share of the pool within the row's delta of a pick); for a peer whose xssr row is there,
    ``overlap`` (share of its picks the xssr row made too) and ``same_order``. In place."""
    from xssr.selection import nearest_distance

    points = np.asarray(pool, dtype=np.float64)
    by_key = {_key(r): r for r in rows if "error" not in r}
    for row in by_key.values():
        if "coverage" not in row:
            nearest = nearest_distance(points, points[row["indices"]])
            row["coverage"] = float(nearest.mean())
            if row.get("delta") is not None:
                row["ball_coverage"] = float(np.mean(nearest <= row["delta"]))
        reference = by_key.get((COMPARED_WITH.get(row["contender"]), *_key(row)[1:]))
        if reference is not None and "overlap" not in row:
            row["compared_with"] = reference["contender"]
            row["overlap"] = len(set(row["indices"]) & set(reference["indices"])) / len(row["indices"])
            row["same_order"] = row["indices"] == reference["indices"]


def run_peers(out: str | Path, pool_sizes: Sequence[int], contenders: Sequence[str] = CONTENDERS, *,
              dim: int = 128, picks: int = 500, seed: int = 0, timeout: float = 3600,
              on_row: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Measure every (contender, pool size) not yet in ``out``; resumable, saved after every point.

    Returns all rows of ``out``, earlier ones included; ``on_row`` sees each new one.
    """
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        raise ValueError(f"The 'contenders' parameter must name contenders from {', '.join(CONTENDERS)}. "
                         f"Got {', '.join(unknown)} instead.")
    for name, value in (("picks", picks), ("dim", dim)):
        if value < 1:
            raise ValueError(f"The '{name}' parameter must be at least 1. Got {value} instead.")
    too_small = [n for n in pool_sizes if n < picks]
    if too_small:
        raise ValueError(f"Every pool size must hold the {picks} picks. Got {', '.join(map(str, too_small))}.")
    path = Path(out)
    rows = read_json(path) if path.exists() else []
    for n in pool_sizes:
        pool = None
        for name in sorted(contenders, key=CONTENDERS.index):
            key = (name, n, n, dim, picks, seed)
            done = {_key(r): r for r in rows if "error" not in r}
            if key in done:
                continue
            delta = None
            if name == "skactiveml:probcover":
                delta = done.get(("xssr:probcover", *key[1:]), {}).get("delta")
            if name == "skactiveml:probcover" and delta is None:
                row = {**dict(zip(_KEY_FIELDS, key)),
                       "error": ["needs the delta of xssr:probcover at this pool size: measure xssr:probcover too"]}
            else:
                row = measure(name, n, dim=dim, picks=picks, seed=seed, delta=delta, timeout=timeout)
            rows = [r for r in rows if _key(r) != key] + [row]  # a retry replaces the error it had
            if "error" not in row:
                pool = clustered_embeddings(n, n, dim, seed)[0] if pool is None else pool
                score_picks([r for r in rows if r["n_pool"] == n], pool)
            write_json(path, rows)  # after every point, so an interruption loses at most one
            logger.info("%s, %d images: %s", name, n, row.get("error") or f"{row['seconds']:.2f} s")
            if on_row is not None:
                on_row(row)
    return rows
