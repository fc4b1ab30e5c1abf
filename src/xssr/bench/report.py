"""Aggregate cached benchmark runs into tables (Markdown + CSV) and plots; nothing is typed in.

Every number comes from the run files under ``RESULTS/<suite>/runs``. Each cell is the mean
± sample std over seeds; differences to random are paired by seed (same MAE, same U-Net
initialisation and batch order) with a t-based 95 % confidence interval.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from xssr.selection.registry import get_method

from xssr.metrics.stats import paired_difference
from xssr.report.io import atomic_path, write_csv, write_text

#: XSSR paper (shared/papers/000_9616efd9f321ea97.txt), for comparison only. Its data differ from
#: ours (see docs/benchmarks.md), so these are context, not targets.
#: Table 2 (5 % budget) with Table 1's full-data figure:
PAPER_T2 = {
    "cxr": {"full": 0.952, "xssr": 0.945, "coreset": 0.941, "random": 0.938},
    "fundus": {"full": 0.974, "xssr": 0.940, "coreset": 0.935, "random": 0.927},
}
#: Table 4 (ablations; the paper ran them as a separate batch, so its full-XSSR figure differs from Table 2):
PAPER_T4 = {
    "cxr": {"xssr": 0.943, "xssr-no-diversity": 0.912, "xssr-no-density": 0.938, "xssr-no-novelty": 0.940},
    "fundus": {"xssr": 0.945, "xssr-no-diversity": 0.934, "xssr-no-density": 0.917, "xssr-no-novelty": 0.905},
}
#: Table 5: % of the full-data Dice retained, by annotated share of the pool.
PAPER_T5 = {
    "cxr": {"xssr": {0.05: 99.2, 0.1: 99.6, 0.2: 99.8, 0.5: 99.8},
            "random": {0.05: 98.9, 0.1: 99.5, 0.2: 99.8, 0.5: 99.9}},
    "fundus": {"xssr": {0.05: 95.7, 0.1: 96.7, 0.2: 99.1, 0.5: 99.7},
               "random": {0.05: 94.0, 0.1: 97.8, 0.2: 99.1, 0.5: 99.8}},
}
PAPER_T1 = {name: table["full"] for name, table in PAPER_T2.items()}


logger = logging.getLogger(__name__)

# A rank correlation over 3 or 4 selections can only be one of a few coarse values (±1, ±0.5, ...),
# which reads as signal when it is not; with fewer runs in a seed the cell stays empty.
MIN_RUNS_FOR_RANK_CORRELATION = 5


def load_runs(results: str | Path, suite) -> list[dict[str, Any]]:
    """Finished runs of ``suite`` whose key matches its current definition.

    A run file left from an earlier protocol (other settings, same name) is ignored, so a
    table never averages two protocols.
    """
    folder = Path(results) / suite.name / "runs"
    current = {spec.key for spec in suite.runs()}
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    kept = [r for r in runs if r.get("key") in current]
    if len(kept) < len(runs):
        # Never silent: these may be hours of compute that a settings change orphaned.
        logger.warning("%s: %d of %d run files in %s match no run of the suite's current definition and are "
                       "left out of its tables", suite.name, len(runs) - len(kept), len(runs), folder)
    return kept


def _dice(run: dict, site: str | None = None) -> float:
    block = run["dice"]["overall"] if site is None else run["dice"]["per_site"].get(site, {})
    return float(block.get("mean", float("nan")))


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    values = np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.4f} (1 seed)"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def _diff_cell(a: dict[int, float], b: dict[int, float]) -> str:
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return "–"
    d = paired_difference({s: a[s] for s in shared}, {s: b[s] for s in shared})
    # The pair count is shown because the other cells of a row may average more seeds.
    return f"{d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (n={len(shared)})"


def _by_seed(runs: Iterable[dict], site: str | None = None) -> dict[int, float]:
    return {int(r["seed"]): _dice(r, site) for r in runs}


def _index(runs: list[dict]) -> dict[tuple, list[dict]]:
    index: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        index[(r["dataset"], r["method"], round(float(r["budget"]), 6), r.get("variant", ""))].append(r)
    return index


def _paper_key(dataset: str) -> str | None:
    return next((k for k in PAPER_T2 if dataset.startswith(k)), None) if "multisite" not in dataset else None


def method_table(runs: list[dict], datasets: list[str], methods: list[str], budget: float,
                 variant: str = "", paper_table: dict | None = None) -> list[dict[str, Any]]:
    """Rows: dataset, method, n, Dice mean ± std, % of full, paired Δ vs random [95 % CI], paper.

    ``paper_table`` (default :data:`PAPER_T2`) gives the paper column, shown at the 5 % budget only.
    """
    paper_table = PAPER_T2 if paper_table is None else paper_table
    index = _index(runs)
    rows = []
    for dataset in datasets:
        full = [_dice(r) for r in index.get((dataset, "full", 1.0, variant), [])]
        full_mean = float(np.mean(full)) if full else None
        random_runs = _by_seed(index.get((dataset, "random", round(budget, 6), variant), []))
        paper = paper_table.get(_paper_key(dataset) or "", {})
        for method in methods:
            key = (dataset, method, 1.0 if method == "full" else round(budget, 6), variant)
            group = index.get(key, [])
            values = [_dice(r) for r in group]
            rows.append({
                "dataset": dataset, "method": method, "seeds": len(values),
                "n_train": group[0]["n_train"] if group else "",
                "dice": _cell(values),
                "pct_full": _pct_full(values, full_mean),
                "delta_vs_random": "–" if method in ("random", "full") else _diff_cell(_by_seed(group), random_runs),
                "paper": paper.get(method, "–") if abs(budget - 0.05) < 1e-9 or method == "full" else "–",
            })
    return rows


def _pct_full(values: list[float], full_mean: float | None) -> str:
    return f"{100 * np.mean(values) / full_mean:.1f}%" if values and full_mean else "–"


def site_table(runs: list[dict], dataset: str, methods: list[str], budget: float) -> list[dict[str, Any]]:
    """Per-site Dice (T3): one row per method and test site, with its share of that site's full-data Dice."""
    index = _index(runs)
    rows = []
    sites = sorted({s for r in runs if r["dataset"] == dataset for s in r["dice"]["per_site"]})
    full_group = index.get((dataset, "full", 1.0, ""), [])
    full_by_site = {site: float(np.mean([_dice(r, site) for r in full_group])) if full_group else None
                    for site in sites}
    random_group = index.get((dataset, "random", round(budget, 6), ""), [])
    for method in methods:
        group = index.get((dataset, method, 1.0 if method == "full" else round(budget, 6), ""), [])
        for site in sites:
            picked = [r["selected_sites"].get(site, 0) for r in group]
            values = [_dice(r, site) for r in group]
            rows.append({
                "method": method, "site": site, "seeds": len(group), "dice": _cell(values),
                "pct_full": _pct_full(values, full_by_site[site]),
                "delta_vs_random": "–" if method in ("random", "full") else
                _diff_cell(_by_seed(group, site), _by_seed(random_group, site)),
                "picked_from_site": f"{np.mean(picked):.1f}" if picked else "–",
            })
    return rows


def budget_table(runs: list[dict], datasets: list[str], methods: list[str], budgets: list[float]) -> list[dict]:
    rows = []
    for budget in budgets:
        for row in method_table(runs, datasets, methods, budget):
            paper = PAPER_T5.get(_paper_key(row["dataset"]) or "", {}).get(row["method"], {})
            rows.append({"budget": f"{budget:g}", **{k: v for k, v in row.items() if k != "paper"},
                         "paper_pct_full": paper.get(round(budget, 6), "–")})
    return rows


def _random_reference(index: dict, dataset: str, budget: float, exp) -> list[dict]:
    """The random runs a variant is compared with: the variant's own, or, when the variant only
    changes selection or embedding settings (random reads neither, so its data and U-Net training
    are the plain runs'), the plain ones."""
    own = index.get((dataset, "random", round(budget, 6), exp.variant), [])
    if own or not all(name.startswith(("select.", "embed.")) for name, _ in exp.overrides):
        return own
    return index.get((dataset, "random", round(budget, 6), ""), [])


def _plain_reference(index: dict, dataset: str, method: str, budget: float, variant: str) -> list[dict]:
    """The same selection under the suite's plain settings: the runs without a variant, or the
    variant named "plain" where a suite (a validation one) has no plain runs."""
    if variant in ("", "plain"):
        return []
    return index.get((dataset, method, round(budget, 6), ""), []) or index.get((dataset, method, round(budget, 6), "plain"), [])


def _source_only_reference(index: dict, dataset: str, budget: float) -> list[dict]:
    """The source-only runs of ``dataset``: a source-only model ignores the annotations, so the
    runs of any budget are its runs at every budget (the same budget's are preferred)."""
    same = index.get((dataset, "random", round(budget, 6), "source-only"), [])
    if same:
        return same
    return next((group for (d, method, _, variant), group in sorted(index.items(), key=lambda kv: kv[0][2])
                 if d == dataset and method == "random" and variant == "source-only"), [])


def variant_table(runs: list[dict], experiments: list, source_only_datasets: Iterable[str] = ()
                  ) -> list[dict[str, Any]]:
    """One row per (dataset, variant, method, budget): Dice over seeds, the paired difference to
    the plain settings with the same selection method, to random where a comparable random arm
    exists and (where the table or the suite has a source-only arm for a dataset, named in
    ``source_only_datasets`` or in ``experiments``) to the source-only model of the same seed,
    optimiser steps, train time and throughput."""
    index = _index(runs)
    source_only_datasets = set(source_only_datasets) | {
        d for exp in experiments if exp.variant == "source-only" for d in exp.datasets}
    has_source_only = any(d in source_only_datasets for exp in experiments for d in exp.datasets)
    rows = []
    for exp in experiments:
        for dataset in exp.datasets:
            for method in exp.methods:
                for budget in exp.budgets:
                    group = index.get((dataset, method, round(budget, 6), exp.variant), [])
                    reference = _random_reference(index, dataset, budget, exp)
                    plain = _plain_reference(index, dataset, method, budget, exp.variant)
                    # "do no harm": annotations should never make the model worse than using none
                    source_only = [] if exp.variant == "source-only" or dataset not in source_only_datasets \
                        else _source_only_reference(index, dataset, budget)
                    rows.append({
                        "dataset": dataset, "variant": exp.variant, "method": method, "budget": f"{budget:g}",
                        "seeds": len(group), "dice": _cell([_dice(r) for r in group]),
                        "delta_vs_plain": _diff_cell(_by_seed(group), _by_seed(plain)) if plain else "–",
                        "delta_vs_random": "–" if method == "random" or not reference
                        else _diff_cell(_by_seed(group), _by_seed(reference)),
                        **({"delta_vs_source_only": _diff_cell(_by_seed(group), _by_seed(source_only))
                            if source_only else "–"} if has_source_only else {}),
                        "steps": group[0]["timings"]["unet_steps"] if group else "–",
                        # a fusion's target branch is another run's model, but its cost is the fusion's too
                        "train_seconds": f"{np.mean([r['timings']['unet_train_seconds'] + r['timings'].get('target_branch_seconds', 0) for r in group]):.0f}"
                        if group else "–",
                        "images_per_second": f"{np.median([r['timings']['unet_images_per_second'] for r in group]):.0f}"
                        if group and all(r["timings"].get("unet_images_per_second") for r in group) else "–",
                        "source_train_seconds": f"{np.mean([r['timings']['source_train_seconds'] for r in group]):.0f}"
                        if group and all("source_train_seconds" in r["timings"] for r in group) else "–",
                    })
    return rows


def full_table(runs: list[dict], datasets: list[str]) -> list[dict[str, Any]]:
    """T1: the full-data upper bound of every dataset (whole annotated pool, same schedule)."""
    index = _index(runs)
    rows = []
    for dataset in datasets:
        group = index.get((dataset, "full", 1.0, ""), [])
        rows.append({
            "dataset": dataset, "seeds": len(group), "n_train": group[0]["n_train"] if group else "–",
            "dice": _cell([_dice(r) for r in group]),
            "paper": PAPER_T1.get(_paper_key(dataset) or "", "–"),
        })
    return rows


def cost_table(runs: list[dict]) -> list[dict[str, Any]]:
    """Measured cost per dataset and method: stage seconds and throughput, medians over runs.

    Medians, because a run that shared the CPU with other work is slower for reasons that
    have nothing to do with the method, and a mean would carry that over.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["dataset"], r["method"])].append(r)

    def median(group, key, digits=1):
        values = [r["timings"].get(key) for r in group if r["timings"].get(key) is not None]
        return f"{np.median(values):.{digits}f}" if values else "–"

    def mae(group, method, key, digits=1):
        # Methods that read no embeddings never pay for the MAE.
        return median(group, key, digits) if get_method(method).uses_embeddings else "–"

    return [{
        "dataset": dataset, "method": method, "runs": len(group),
        "mae_train_s": mae(group, method, "pretrain_seconds"),
        "mae_img_per_s": mae(group, method, "mae_images_per_second"),
        "embed_s": mae(group, method, "embed_seconds"), "embed_img_per_s": mae(group, method, "embed_images_per_second"),
        "select_s": median(group, "select_seconds", 3),
        "unet_train_s": median(group, "unet_train_seconds"), "unet_img_per_s": median(group, "unet_images_per_second"),
        "inference_img_per_s": median(group, "inference_images_per_second"),
    } for (dataset, method), group in sorted(groups.items())]


def selection_cost_table(rows: list[dict]) -> list[dict[str, Any]]:
    """Rows of ``xssr bench cost``: seconds and peak memory against pool size, and for exact XSSR
    the arithmetic limit of :func:`xssr.bench.cost.arithmetic_limit` on the machine it ran on."""
    from xssr.bench.cost import arithmetic_limit

    def limit(r):
        if r["method"] != "xssr" or r.get("backend", "auto") != "auto" or "machine" not in r or "seconds" not in r:
            return "–", "–"
        bound = arithmetic_limit(r["n_pool"], r["n_source"], r["dim"], r["n_selected"], r["machine"])
        return f"{bound['total_seconds']:.1f}", f"{r['seconds'] / bound['total_seconds']:.2f}"

    table = []
    for r in sorted(rows, key=lambda r: (r["method"], r.get("backend", "auto"), r["n_pool"], "code_commit" not in r)):
        limit_seconds, ratio = limit(r)
        table.append({
            "method": r["method"], "backend": r.get("backend", "auto"),
            "code": "before (--code)" if "code_commit" in r else "this", "n_pool": r["n_pool"],
            "n_source": r.get("n_source", "–"), "dim": r.get("dim", "–"), "budget": r.get("n_selected", "–"),
            "seconds": f"{r['seconds']:.2f}" if "seconds" in r else "error",
            "neighbour_s": f"{r['neighbour_seconds']:.1f}" if "neighbour_seconds" in r else "–",
            "limit_s": limit_seconds, "x_limit": ratio,
            "peak_rss_mb": f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "–",
            "coverage": f"{r['coverage']:.4f}" if "coverage" in r else "–",
            "knn_recall": f"{r['knn_recall']:.3f}" if "knn_recall" in r else "–",
            "cpus": r.get("environment", {}).get("cpus", "–"),
            "commit": (r.get("code_commit") or r.get("environment", {}).get("git_commit", "–"))[:7],
        })
    return table


def render_selection_cost(rows: list[dict]) -> str:
    """Markdown section for ``xssr bench cost`` results."""
    machine = next((r["machine"] for r in reversed(rows) if "machine" in r), None)
    rates = ("" if machine is None else
             f" The machine of the newest rows sustained {machine['gemm_gflops']:.0f} GFLOP/s in float32 matrix "
             f"products and read memory at {machine['read_gbps']:.1f} GB/s (`machine_rates`).")
    return ("## Selection cost against pool size\n\n"
            "Written by `xssr bench cost`: one selection of 5 % of the pool on synthetic clustered 256-d "
            "embeddings (source as large as the pool), each point in a fresh process so that peak "
            "resident memory (`peak_rss_mb`, including about 130 MB of Python, numpy and the inputs) "
            "belongs to that selection alone. XSSR includes auto-alpha over the 11-value grid; "
            "`neighbour_s` is the part of its time spent in the density and novelty searches. "
            "`limit_s` is the arithmetic limit of exact XSSR (`xssr.bench.cost.arithmetic_limit`: the two "
            "neighbour searches as float32 products at the machine's measured rate, plus one read of the "
            "float64 pool per pick at its measured memory rate), and `x_limit` the measured time over it; "
            "block pruning can beat the greedy's share of it on clustered pools. `backend` faiss-ivf is the "
            "approximate neighbour search; `knn_recall` is the share of the true 10 nearest neighbours it "
            "found for 2,000 sampled pool images. `code` 'before (--code)' marks rows measured on an older "
            "checkout (`--code`, commit in the last column), on the same machine as the others, to show a "
            "change's effect." + rates + "\n\n"
            + markdown(selection_cost_table(rows)))


def peers_table(rows: list[dict]) -> list[dict[str, Any]]:
    """Rows of ``xssr bench peers``: seconds, memory and agreement of each contender's picks."""
    from xssr.bench.peers import CONTENDERS

    def number(row, key, digits):
        return f"{row[key]:.{digits}f}" if row.get(key) is not None else "–"

    order = {name: i for i, name in enumerate(CONTENDERS)}
    return [{
        "n_pool": r["n_pool"], "dim": r["dim"], "picks": r["picks"], "contender": r["contender"],
        "seconds": number(r, "seconds", 2) if "error" not in r else "error: " + " ".join(r["error"]),
        "peak_rss_mb": number(r, "peak_rss_mb", 0), "data_rss_mb": number(r, "data_rss_mb", 0),
        "coverage": number(r, "coverage", 4), "delta": number(r, "delta", 4),
        "ball_coverage": number(r, "ball_coverage", 4), "alpha": r.get("alpha", "–"),
        "vs": r.get("compared_with", "–"), "overlap": number(r, "overlap", 3),
        "same_order": {True: "yes", False: "no"}.get(r.get("same_order"), "–"),
        "version": f"skactiveml {r['library_version']}" if r.get("library_version")
        else f"xssr {r.get('environment', {}).get('git_commit', '')[:7] or '–'}",
        "cpus": r.get("environment", {}).get("cpus", "–"),
    } for r in sorted(rows, key=lambda r: (r["n_pool"], r["dim"], r["picks"], order.get(r["contender"], 99)))]


def render_peers(rows: list[dict]) -> str:
    """Markdown section for ``xssr bench peers`` results."""
    return ("## Side by side with other implementations\n\n"
            "Written by `xssr bench peers`: each contender picks the same number of images (`picks`) from "
            "the same synthetic clustered embeddings as the cost block (`dim` dimensions; for XSSR a source "
            "as large as the pool), each in a fresh process, timed and measured as there (`peak_rss_mb`: "
            "peak resident memory; `data_rss_mb`: the process before the selection, with Python, the "
            "library and the embeddings). torch is hidden from every process: scikit-activeml imports it "
            "when installed, for wrappers these strategies do not use. scikit-activeml is given the whole "
            "pool as candidates with every label missing. Made like for like: its ProbCover gets the "
            "`delta` xssr's ProbCover chose by purity (`deltas=[delta]`), so both cover the same ball "
            "graph; its TypiClust gets xssr's 20 typicality neighbours (its default is 5) and the same "
            "k-means seed, so both cluster alike, but xssr leaves clusters of fewer than 5 images until "
            "the larger ones run out, as the TypiClust authors' code does. `naive:xssr` is a "
            "straightforward numpy XSSR (`xssr.bench.peers.naive_xssr`: cdist distances, every term "
            "z-scored over the remaining images at each step, the 11 alphas one after another): a "
            "reference for speed only. `coverage`: Eq. 9, the mean distance from each pool embedding to "
            "its nearest pick (lower is better); `ball_coverage`: the share of the pool within `delta` of "
            "a pick (higher is better); `overlap`: the share of the picks that the contender in `vs` made "
            "too; `same_order`: the same picks in the same order.\n\n"
            + markdown(peers_table(rows), empty="nothing measured yet"))


def diagnostics_table(runs: list[dict]) -> list[dict[str, Any]]:
    """Per dataset and budget: does lower coverage (Eq. 9, what auto-alpha minimises) go with
    higher Dice? Also the chosen alphas and how well the MAE separates source from target."""
    from xssr.metrics.embedding import rank_correlation

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        if r["method"] != "full" and not r.get("variant"):
            groups[(r["dataset"], round(float(r["budget"]), 6))].append(r)
    rows = []
    for (dataset, budget), group in sorted(groups.items()):
        with_cov = [r for r in group if r["selection"].get("coverage") is not None]
        alphas = [r["selection"]["alpha"] for r in group if r["method"] == "xssr" and r["selection"].get("alpha") is not None]
        aucs = [r["embedding"]["domain_auc"] for r in group if r.get("embedding", {}).get("domain_auc") is not None]
        ratios = [q for q in (_novelty_coverage_ratio(r) for r in group if r["method"] == "xssr") if q is not None]
        # Within each seed only: every seed has its own MAE, whose distances have their own scale.
        by_seed: dict[int, list[dict]] = defaultdict(list)
        for r in with_cov:
            by_seed[int(r["seed"])].append(r)
        rhos = [rank_correlation([r["selection"]["coverage"] for r in rs], [_dice(r) for r in rs])
                for rs in by_seed.values() if len(rs) >= MIN_RUNS_FOR_RANK_CORRELATION]
        rhos = [rho for rho in rhos if np.isfinite(rho)]
        rows.append({
            "dataset": dataset, "budget": f"{budget:g}", "runs_with_coverage": len(with_cov),
            "spearman_coverage_vs_dice": (f"{np.median(rhos):+.2f} (" + ", ".join(f"{rho:+.1f}" for rho in rhos) + ")")
            if rhos else "–",
            "xssr_alphas": ", ".join(f"{a:g}" for a in sorted(alphas)) or "–",
            "coverage_max_over_min_alpha": f"{np.median(ratios):.2f} ({sum(q > 1 for q in ratios)}/{len(ratios)} > 1)"
            if ratios else "–",
            "same_picks_as_no_novelty": _same_picks(group, "xssr", "xssr-no-novelty"),
            "domain_auc": f"{np.mean(aucs):.3f}" if aucs else "–",
        })
    return rows


def _novelty_coverage_ratio(run: dict) -> float | None:
    """Why auto-alpha lands where it does: the coverage (Eq. 9) at the largest grid alpha (most
    novelty) over that at the smallest (pure diversity); above 1, novelty hurts the criterion."""
    curve = run["selection"].get("alpha_curve") or []
    if len(curve) < 2 or curve[0][1] <= 0:
        return None
    return curve[-1][1] / curve[0][1]


def _same_picks(runs: list[dict], a: str, b: str) -> str:
    """How many seeds' selections of methods ``a`` and ``b`` are the same set, as 'k/n'."""
    picks = defaultdict(dict)
    for r in runs:
        if r["method"] in (a, b):
            picks[r["seed"]][r["method"]] = {(s["case_id"], s["slice_index"]) for s in r["selected"]}
    both = [p for p in picks.values() if len(p) == 2]
    return f"{sum(p[a] == p[b] for p in both)}/{len(both)}" if both else "–"


def provenance_note(runs: list[dict]) -> str:
    """Which commits made the runs and which input data they saw, so mixed provenance is visible."""
    if not runs:
        return ""
    commits = Counter(r.get("git_commit", "")[:7] or "unknown" for r in runs)
    lines = ["Code: " + ", ".join(f"`{c}` ({n} runs)" for c, n in sorted(commits.items(), key=lambda x: -x[1])) + "."]
    by_dataset: dict[str, Counter] = defaultdict(Counter)
    for r in runs:
        by_dataset[r["dataset"]][r.get("inputs_sha1", "")[:12]] += 1
    for dataset, digests in sorted(by_dataset.items()):
        recorded = {d: n for d, n in digests.items() if d}
        unrecorded = digests.get("", 0)
        text = ", ".join(f"`{d}` ({n} runs)" for d, n in recorded.items()) or "none recorded"
        if unrecorded:
            text += f"; {unrecorded} runs made before input digests were recorded"
        warning = " **Warning: these runs saw different input data.**" if len(recorded) > 1 else ""
        lines.append(f"Inputs of `{dataset}`: {text}.{warning}")
    return "\n".join(f"- {line}" for line in lines) + "\n"


def markdown(rows: list[dict[str, Any]], empty: str = "no finished runs yet") -> str:
    if not rows:
        return f"_{empty}_\n"
    columns = list(rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_suite(suite, results: str | Path, out: str | Path) -> str:
    """Write tables (CSV + Markdown) and plots for ``suite`` under ``out``; returns the Markdown."""
    runs = load_runs(results, suite)
    out = Path(out)
    parts = [f"## Suite `{suite.name}`\n\n{suite.description}\n",
             f"Finished runs: {len(runs)} of {len(suite.runs())}.\n" + provenance_note(runs)]
    datasets_with_full = [d for d in suite.datasets if any(r["dataset"] == d and r["method"] == "full" for r in runs)]
    if datasets_with_full:
        rows = full_table(runs, datasets_with_full)
        write_csv(out / "T1.csv", rows)
        parts.append(f"### T1 — full-data upper bound\n\n{markdown(rows)}")
    variant_tables: dict[str, list] = defaultdict(list)
    for exp in suite.experiments:
        if exp.variant:
            variant_tables[exp.table].append(exp)
    # "do no harm" is asked of every table: wherever the suite trains a source-only model for a
    # dataset, each row of that dataset is compared with it, whichever table it sits in
    source_only_datasets = {d for exp in suite.experiments if exp.variant == "source-only" for d in exp.datasets}
    for table, experiments in variant_tables.items():
        rows = variant_table(runs, experiments, source_only_datasets)
        write_csv(out / f"{table}.csv", rows)
        parts.append(f"### {table}\n\n{markdown(rows)}")
    for exp in suite.experiments:
        if exp.variant:
            continue
        datasets = list(exp.datasets)
        rows_note = ""
        if exp.table.startswith("T3"):
            rows = site_table(runs, datasets[0], list(exp.methods), exp.budgets[0])
        elif exp.table.startswith("T5"):
            rows = budget_table(runs, datasets, list(exp.methods), list(exp.budgets))
            _plot_budgets(runs, datasets, list(exp.methods), list(exp.budgets), out / f"{exp.table}.png")
            rows_note = f"\n![{exp.table}: test Dice against budget, mean ± std over seeds]({exp.table}.png)\n"
        else:
            paper = PAPER_T4 if exp.table.startswith("T4") else PAPER_T2
            rows = [r for b in exp.budgets
                    for r in method_table(runs, datasets, list(exp.methods), b, exp.variant, paper)]
        write_csv(out / f"{exp.table}.csv", rows)
        parts.append(f"### {exp.table}\n\n{markdown(rows)}{rows_note}")
    if runs:
        rows = diagnostics_table(runs)
        write_csv(out / "diagnostics.csv", rows)
        parts.append("### Selection diagnostics\n\nSpearman correlation between a selection's coverage "
                     "(Eq. 9; lower is better for XSSR) and its test Dice, over the runs of one seed that "
                     "have embeddings (all share that seed's MAE), in seeds with at least 5 such runs; "
                     "the median over seeds, then each seed's: "
                     "negative supports the coverage criterion. Domain AUC: a linear classifier telling "
                     "source from target MAE embeddings (0.5 = no separation). "
                     "`coverage_max_over_min_alpha`: median over xssr runs of the coverage at the largest "
                     "grid alpha (most novelty) divided by that at the smallest; above 1, novelty worsens "
                     "the criterion that auto-alpha minimises. `same_picks_as_no_novelty`: seeds where "
                     "xssr and xssr-no-novelty chose the same images.\n\n"
                     + markdown(rows, empty="no plain (non-variant) selection runs to diagnose"))
        rows = cost_table(runs)
        write_csv(out / "cost.csv", rows)
        parts.append("### Measured cost (seconds and images/s, median over runs; 2-core CPU)\n\n" + markdown(rows))
    text = "\n".join(parts)
    write_text(out / "tables.md", text)
    return text


def _plot_budgets(runs, datasets, methods, budgets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullFormatter

    index = _index(runs)
    # Budgets below 1 are shares of the pool, the others image counts (as in the suite files).
    as_share = all(b < 1 for b in budgets)
    ticks = sorted({100 * b if as_share else b for b in budgets})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for method in methods:
            xs, means, stds = [], [], []
            for b in budgets:
                values = [_dice(r) for r in index.get((dataset, method, round(b, 6), ""), [])]
                if values:
                    xs.append(100 * b if as_share else b)
                    means.append(np.mean(values))
                    stds.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
            if xs:
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=method)
        full = [_dice(r) for r in index.get((dataset, "full", 1.0, ""), [])]
        if full:
            ax.axhline(np.mean(full), color="grey", linestyle="--", label="full")
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap the budgets
        ax.set_xlabel("annotated share of the pool (%)" if as_share else "annotated images")
        ax.set_ylabel("test Dice")
        ax.set_title(dataset)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def update_docs(path: str | Path, suite_name: str, text: str, command: str | None = None,
                figures: str | Path | None = None) -> Path:
    """Replace the generated block of ``suite_name`` in a Markdown file (appended when absent).

    ``figures``: the folder the report's images were written to; their links, relative to that
    folder in ``text``, are rewritten to be relative to the Markdown file.
    """
    path = Path(path)
    if figures is not None:
        prefix = Path(os.path.relpath(Path(figures).resolve(), path.resolve().parent)).as_posix()
        text = re.sub(r"\]\(([^/)]+\.png)\)", lambda m: f"]({prefix}/{m.group(1)})", text)
    begin, end = f"<!-- BEGIN generated: {suite_name} -->", f"<!-- END generated: {suite_name} -->"
    command = command or f"xssr bench report {suite_name}"
    block = f"{begin}\n<!-- written by `{command} --docs {path.as_posix()}`; do not edit -->\n\n{text}\n{end}"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in current and end in current:
        head, _, rest = current.partition(begin)
        _, _, tail = rest.partition(end)
        updated = head + block + tail
    else:
        updated = current.rstrip("\n") + "\n\n" + block + "\n"
    return write_text(path, updated)
