"""Selection cost against pool size, measured in a fresh process per point for honest peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from xssr.report.io import read_json, write_json
from xssr.report.provenance import environment

# The probe needs nothing of xssr but ``select``, so it also measures another checkout's code
# (``--code``): the parent writes the embeddings, the probe only reads them.
_PROBE = r"""
import json, sys, time
import numpy as np
def peak_rss_mb():
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
from xssr.selection import select, xssr as xssr_module
folder, method, seed, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
pool, source = np.load(folder + "/pool.npy"), np.load(folder + "/source.npy")
# Time XSSR's neighbour searches (density, novelty) apart from its greedy.
searching = [0.0]
def timed(search):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return search(*args, **kwargs)
        finally:
            searching[0] += time.perf_counter() - started
    return wrapper
xssr_module.knn_mean_distance = timed(xssr_module.knn_mean_distance)
xssr_module.nearest_distance = timed(xssr_module.nearest_distance)
base = peak_rss_mb()
start = time.perf_counter()
result = select(pool, source if method.startswith("xssr") else None, method=method, budget=0.05, random_state=seed,
                backend=backend)
seconds = time.perf_counter() - start
row = {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "data_rss_mb": base, "n_selected": int(len(result.indices)),
       "coverage": float(result.coverage)}
if method == "xssr":
    row["neighbour_seconds"] = searching[0]
if backend == "faiss-ivf":
    from xssr.selection.neighbors import knn_recall
    row["knn_recall"] = knn_recall(pool, 10, n_queries=2000, backend=backend)
print(json.dumps(row))
"""


def clustered_embeddings(n_pool: int, n_source: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic pool ``(n_pool, dim)`` and source ``(n_source, dim)`` embeddings, float32, around 20
    shared cluster centres, the source shifted by 0.5 in every coordinate.

    Clustered rather than pure noise so that k-means and ball purity behave as on real data. The
    selection probes of ``xssr bench cost`` and ``xssr bench peers`` make their inputs here, so
    both measure on the same embeddings for the same sizes and seed.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim), dtype=np.float32) * 3
    pool = centres[rng.integers(0, 20, n_pool)] + rng.standard_normal((n_pool, dim), dtype=np.float32)
    source = centres[rng.integers(0, 20, n_source)] + rng.standard_normal((n_source, dim), dtype=np.float32) + 0.5
    return pool, source


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB.

    Linux's ``VmHWM``, not ``getrusage``: a process that ``subprocess`` starts (vfork, then exec)
    begins with its parent's ``ru_maxrss``, so a probe smaller than the process that started it
    would report the parent's memory. ``ru_maxrss`` (kB on Linux) where /proc is absent.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def selection_cost(n_pool: int, method: str, *, n_source: int | None = None, dim: int = 256, seed: int = 0,
                   backend: str = "auto", code: str | Path | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Seconds and peak resident memory of one selection on synthetic clustered embeddings.

    XSSR rows also say how long its neighbour searches took (``neighbour_seconds``); rows of the
    approximate backend say what share of the true 10 nearest neighbours it found (``knn_recall``).
    ``code`` is the ``src`` folder of another xssr checkout to measure instead of this one (for
    before/after rows on the same machine); its row names that checkout's commit.
    """
    import os
    import tempfile

    n_source = n_pool if n_source is None else n_source
    where = {"n_pool": n_pool, "method": method, "backend": backend}
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(Path(code).resolve())
        where["code_commit"] = _commit_of(Path(code))
    with tempfile.TemporaryDirectory() as folder:
        pool, source = clustered_embeddings(n_pool, n_source, dim, seed)
        np.save(Path(folder) / "pool.npy", pool)
        np.save(Path(folder) / "source.npy", source)
        del pool, source
        try:
            completed = subprocess.run([sys.executable, "-c", _PROBE, folder, method, str(seed), backend],
                                       capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {**where, "error": [f"no result within {timeout:.0f} s"]}
    if completed.returncode != 0:
        return {**where, "error": completed.stderr.strip().splitlines()[-1:]}
    return {"n_source": n_source, "dim": dim, **where,
            **json.loads(completed.stdout.strip().splitlines()[-1]), "environment": environment()}


def _commit_of(folder: Path) -> str:
    completed = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


def machine_rates(seconds: float = 2.0) -> dict[str, float]:
    """What this machine sustains, for the arithmetic limit of a selection: float32 matrix
    products (GFLOP/s, 2048 x 2048 operands, numpy's BLAS) and reading memory (GB/s, summing a
    256 MB float32 array, far larger than any cache)."""
    import time

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    big = np.ones(2**26, dtype=np.float32)
    rates = {}
    for name, work, units in (("gemm_gflops", lambda: a @ a, 2 * 2048**3 / 1e9),
                              ("read_gbps", lambda: big.sum(), big.nbytes / 1e9)):
        work()
        started, count = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            work()
            count += 1
        rates[name] = count * units / (time.perf_counter() - started)
    return rates


def arithmetic_limit(n_pool: int, n_source: int, dim: int, budget: int, rates: dict[str, float],
                     n_alphas: int = 11) -> dict[str, float]:
    """Seconds an exact auto-alpha XSSR needs at the very least without skipping work.

    The neighbour searches are two float32 products, pool x pool and pool x source
    (``2 n (n + m) d`` flops); the greedy, unpruned, streams the float64 pool once per pick for
    the distances from that step's picks (``budget n d 8`` bytes; the picks of all alphas share
    one pass). Nothing else is counted, so a real run can only be slower, unless it skips work,
    as the block pruning of ``xssr.selection.nearest`` does on clustered pools.
    """
    search = 2.0 * n_pool * (n_pool + n_source) * dim / (rates["gemm_gflops"] * 1e9)
    greedy = budget * n_pool * dim * 8 / (rates["read_gbps"] * 1e9)
    return {"search_seconds": search, "greedy_seconds": greedy, "total_seconds": search + greedy,
            "n_alphas": n_alphas}


def run_selection_cost(out: str | Path, pool_sizes: Sequence[int], methods: Sequence[str], *,
                       backend: str = "auto", code: str | Path | None = None,
                       on_row: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Measure every (method, pool size, backend) not yet in ``out``; resumable, saved after every point.

    Returns all rows of ``out``, earlier ones included; ``on_row`` sees each new one.
    """
    path = Path(out)
    rows = read_json(path) if path.exists() else []
    done = {(r["method"], r["n_pool"], r.get("backend", "auto")) for r in rows if "error" not in r}
    rates = None
    for n in pool_sizes:
        for method in methods:
            if (method, n, backend) in done:
                continue
            rates = rates or machine_rates()  # once, before the first point, on the quiet machine
            row = {**selection_cost(n, method, backend=backend, code=code), "machine": rates}
            rows.append(row)
            write_json(path, rows)  # after every point, so an interruption loses at most one
            if on_row is not None:
                on_row(row)
    return rows
