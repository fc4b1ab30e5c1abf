"""Time one selection method on random embeddings (not a test).

Usage::

    PYTHONPATH=src python benchmarks/select_timing.py [--method xssr] [--n-pool 10000] \
        [--dim 256] [--n-source 10000] [--backend auto]

Prints wall-clock seconds for ``select(method=...)`` (default 5% budget; XSSR with
``alpha="auto"`` and its 11-value grid) and the process's peak resident memory. Source
embeddings are generated and passed only for ``--method xssr``. Target on a 2-core
machine: under 30 s and under 2 GB for 10,000 x 10,000 x 256.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from xssr.selection import select


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--method", default="xssr", choices=("xssr", "typiclust", "probcover", "coreset", "random")
    )
    parser.add_argument("--n-pool", type=int, default=10_000)
    parser.add_argument("--n-source", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--backend", default="auto", choices=("auto", "numpy", "faiss"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    pool = rng.standard_normal((args.n_pool, args.dim), dtype=np.float32)
    source = None
    if args.method == "xssr":
        source = rng.standard_normal((args.n_source, args.dim), dtype=np.float32) + 0.1
    print(f"data ready, peak RSS {_peak_rss_mb():.0f} MB")

    start = time.perf_counter()
    result = select(
        pool, source, method=args.method, alpha="auto", backend=args.backend,
        random_state=args.seed,
    )
    seconds = time.perf_counter() - start

    n_source = args.n_source if source is not None else 0
    print(
        f"select(method={args.method!r}): pool={args.n_pool} source={n_source} "
        f"dim={args.dim} budget={result.indices.size} backend={args.backend}"
    )
    extra = ""
    if args.method == "xssr":
        extra = f" chosen alpha={result.alpha}"
    elif args.method == "probcover":
        purity = dict(result.purity_curve)[result.delta]
        extra = f" delta={result.delta:.6g} (purity {purity:.3f})"
    print(f"coverage={result.coverage:.6g}{extra}")
    print(f"seconds: {seconds:.2f}")
    print(f"peak RSS: {_peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
