"""How far each target site lies from the source in a suite's cached MAE embeddings (not a test).

Usage::

    python benchmarks/site_novelty.py [benchmarks/cache/cxr-multisite/cxr-multisite]

For every seed folder under the given cache directory (written by ``xssr bench run``), prints
the median over each site's pool images of the XSSR novelty (Eq. 8: distance to the nearest
source embedding). It reads the cached ``embed/`` stage only and trains nothing, so run it after
the suite. This is the embedding-space counterpart of the paper's "shift" column in Table 3.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from xssr.report.io import read_csv
from xssr.selection.neighbors import nearest_distance


def site_novelty(seed_folder: Path) -> dict[str, float]:
    """Median novelty of each site's pool images, from one seed's cached embeddings."""
    embed = seed_folder / "embed"
    pool, source = np.load(embed / "pool.npy"), np.load(embed / "source.npy")
    sites = np.array([row["site"] for row in read_csv(embed / "pool_index.csv")])
    if len(sites) != len(pool):
        raise SystemExit(f"{embed / 'pool_index.csv'}: {len(sites)} rows for {len(pool)} embeddings")
    novelty = nearest_distance(pool, source)
    return {site: float(np.median(novelty[sites == site])) for site in sorted(set(sites))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", type=Path,
                        default=Path("benchmarks/cache/cxr-multisite/cxr-multisite"))
    args = parser.parse_args()
    folders = sorted(p for p in args.cache.glob("*_s*") if (p / "embed" / "pool.npy").exists())
    if not folders:
        raise SystemExit(f"{args.cache}: no seed folder with cached embeddings; run the suite first")
    rows = {folder.name.rsplit("_", 1)[1]: site_novelty(folder) for folder in folders}
    sites = sorted({s for per_site in rows.values() for s in per_site})
    print("| seed | " + " | ".join(sites) + " |")
    print("|---" * (len(sites) + 1) + "|")
    for seed, per_site in sorted(rows.items()):
        print(f"| {seed} | " + " | ".join(f"{per_site.get(s, float('nan')):.3f}" for s in sites) + " |")


if __name__ == "__main__":
    main()
