"""How far each target site lies from the source in a suite's cached MAE embeddings (not a test).

Usage::

    python benchmarks/site_novelty.py [SUITE] [--work benchmarks/cache]

SUITE is a name in benchmarks/suites or a .toml path (default ``cxr-multisite``). For every
embedding stage in ``WORK/store/embed/`` made from one of the suite's pools (one per seed),
prints the median over each site's pool images of the XSSR novelty (Eq. 8: distance to the
nearest source embedding). It reads the cached stage only and trains nothing, so run it after
the suite. This is the embedding-space counterpart of the paper's "shift" column in Table 3.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from xssr.bench import load_suite
from xssr.report.io import read_csv, read_json
from xssr.selection.neighbors import nearest_distance


def site_novelty(embed: Path) -> dict[str, float]:
    """Median novelty of each site's pool images, from one embedding stage folder."""
    pool, source = np.load(embed / "pool.npy"), np.load(embed / "source.npy")
    sites = np.array([row["site"] for row in read_csv(embed / "pool_index.csv")])
    if len(sites) != len(pool):
        raise SystemExit(f"{embed / 'pool_index.csv'}: {len(sites)} rows for {len(pool)} embeddings")
    novelty = nearest_distance(pool, source)
    return {site: float(np.median(novelty[sites == site])) for site in sorted(set(sites))}


def suite_embeddings(store: Path, pools: set[str]) -> dict[int, Path]:
    """{seed: embed stage folder} of the finished stages in ``store`` made from one of ``pools``."""
    found = {}
    for manifest in sorted((store / "embed").glob("*/manifest.json")):
        outputs = read_json(manifest).get("outputs", {})
        if outputs.get("pool_spec") in pools:
            found[int(outputs["seed"])] = manifest.parent
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="cxr-multisite")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/cache"))
    args = parser.parse_args()
    path = Path(args.suite)
    suite = load_suite(path if path.suffix == ".toml" else Path("benchmarks/suites") / f"{args.suite}.toml")
    folders = suite_embeddings(args.work / "store", {d.pool for d in suite.datasets.values()})
    if not folders:
        raise SystemExit(f"{args.work / 'store'}: no cached embeddings of suite {suite.name!r}; run the suite first")
    rows = {seed: site_novelty(folder) for seed, folder in folders.items()}
    sites = sorted({s for per_site in rows.values() for s in per_site})
    print("| seed | " + " | ".join(sites) + " |")
    print("|---" * (len(sites) + 1) + "|")
    for seed, per_site in sorted(rows.items()):
        print(f"| s{seed} | " + " | ".join(f"{per_site.get(s, float('nan')):.3f}" for s in sites) + " |")


if __name__ == "__main__":
    main()
