"""Selection cost against pool size, measured in a fresh process per point for honest peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from xssr.report.io import read_json, write_json
from xssr.report.provenance import environment

_PROBE = r"""
import json, resource, sys, time
import numpy as np
from xssr.selection import select
n_pool, n_source, dim, method, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rng = np.random.default_rng(seed)
# Clustered embeddings (not pure noise) so k-means and ball purity behave as on real data.
centres = rng.standard_normal((20, dim), dtype=np.float32) * 3
pool = centres[rng.integers(0, 20, n_pool)] + rng.standard_normal((n_pool, dim), dtype=np.float32)
source = centres[rng.integers(0, 20, n_source)] + rng.standard_normal((n_source, dim), dtype=np.float32) + 0.5
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = select(pool, source if method.startswith("xssr") else None, method=method, budget=0.05, random_state=seed)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024, "data_rss_mb": base / 1024,
                  "n_selected": int(len(result.indices))}))
"""


def selection_cost(n_pool: int, method: str, *, n_source: int | None = None, dim: int = 256, seed: int = 0,
                   timeout: float = 3600) -> dict[str, Any]:
    """Seconds and peak resident memory of one selection on synthetic clustered embeddings."""
    n_source = n_pool if n_source is None else n_source
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _PROBE, str(n_pool), str(n_source), str(dim), method, str(seed)],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"n_pool": n_pool, "method": method, "error": [f"no result within {timeout:.0f} s"]}
    if completed.returncode != 0:
        return {"n_pool": n_pool, "method": method, "error": completed.stderr.strip().splitlines()[-1:]}
    return {"n_pool": n_pool, "n_source": n_source, "dim": dim, "method": method,
            **json.loads(completed.stdout.strip().splitlines()[-1]), "environment": environment()}


def run_selection_cost(out: str | Path, pool_sizes: Sequence[int], methods: Sequence[str], *,
                       on_row: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Measure every (method, pool size) not yet in ``out``; resumable, saved after every point.

    Returns all rows of ``out``, earlier ones included; ``on_row`` sees each new one.
    """
    path = Path(out)
    rows = read_json(path) if path.exists() else []
    done = {(r["method"], r["n_pool"]) for r in rows if "error" not in r}
    for n in pool_sizes:
        for method in methods:
            if (method, n) in done:
                continue
            row = selection_cost(n, method)
            rows.append(row)
            write_json(path, rows)  # after every point, so an interruption loses at most one
            if on_row is not None:
                on_row(row)
    return rows
