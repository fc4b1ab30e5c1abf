"""The plain-text summary a run ends with: one line per method.

The numbers come from :func:`metrics_rows` and :func:`seeds_rows`, which the HTML report
(:mod:`xssr.report.run_report`) shows too, so the page and the text never disagree.
"""

from __future__ import annotations

from typing import Any


def metrics_rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per method of one run: ``method``, ``n_train``, ``mean``, ``std``, ``n`` (test
    images), ``share`` (of the full pool's mean Dice, None without a ``full`` run), ``recipe``,
    ``per_site`` ({site: {"mean", "std", "n"}})."""
    full = metrics.get("full", {}).get("dice", {}).get("overall", {}).get("mean")
    rows = []
    for method, m in metrics.items():
        overall = m["dice"]["overall"]
        rows.append({"method": method, "n_train": m["n_train"], "mean": overall["mean"], "std": overall["std"],
                     "n": overall.get("n"), "share": overall["mean"] / full if full else None,
                     "recipe": m.get("recipe"), "per_site": m["dice"].get("per_site", {})})
    return rows


def metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Method, annotated images, test Dice (mean ± std over test images), share of full-data Dice;
    then the training recipe, and where its source model came from."""
    lines = [f"{'method':<20} {'n_labelled':>10} {'test Dice':>17} {'% of full':>10}"]
    for row in metrics_rows(metrics):
        share = f"{100 * row['share']:9.1f}%" if row["share"] is not None else f"{'-':>10}"
        lines.append(f"{row['method']:<20} {row['n_train']:>10d} {row['mean']:>9.4f} ± {row['std']:.4f} {share}")
    recipes = sorted({m["recipe"] for m in metrics.values() if "recipe" in m})
    sources = sorted({m["source_model"] for m in metrics.values() if "source_model" in m})
    if recipes:
        lines.append(f"training recipe: {', '.join(recipes)}" + (f" (source model: {'; '.join(sources)})"
                                                                 if sources else ""))
    return "\n".join(lines)


def seeds_rows(per_seed: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One dict per method over seeds: ``method``, ``seeds`` (how many), ``mean`` and ``std`` of
    the per-seed mean test Dice, ``share`` (of the full pool's, None when that did not run),
    ``versus_random`` (a :class:`xssr.metrics.stats.PairedDifference`, or None for random, full,
    or when random did not run), ``n_train``, ``recipe``.

    Runs with the same seed share the U-Net initialisation and batch order, so the difference
    to random is paired seed by seed.
    """
    from xssr.metrics.stats import paired_difference

    def by_seed(method: str) -> dict[int, float]:
        return {s: m[method]["dice"]["overall"]["mean"] for s, m in per_seed.items() if method in m}

    methods = list(dict.fromkeys(name for m in per_seed.values() for name in m))
    full = by_seed("full")
    full_mean = sum(full.values()) / len(full) if full else None
    rows = []
    for method in methods:
        values = by_seed(method)
        mean = sum(values.values()) / len(values)
        std = (sum((v - mean) ** 2 for v in values.values()) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        versus = None
        if method not in ("random", "full") and "random" in methods:
            versus = paired_difference(values, by_seed("random"))
        some = next(m[method] for m in per_seed.values() if method in m)
        rows.append({"method": method, "seeds": len(values), "mean": mean, "std": std,
                     "share": mean / full_mean if full_mean else None, "versus_random": versus,
                     "n_train": some.get("n_train"), "recipe": some.get("recipe")})
    return rows


def seeds_table(per_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Methods compared over seeds: mean test Dice ± std over seeds, its share of the full pool's
    (when that ran), and the paired difference to random with its 95 % t interval
    (:func:`seeds_rows`)."""
    lines = [f"{'method':<20} {'seeds':>5} {'test Dice (over seeds)':>23} {'% of full':>10} {'vs random (95 % CI)':>32}"]
    for row in seeds_rows(per_seed):
        share = f"{100 * row['share']:9.1f}%" if row["share"] is not None else f"{'-':>10}"
        d = row["versus_random"]
        versus = "-" if d is None else f"{d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (n={d.n})"
        lines.append(f"{row['method']:<20} {row['seeds']:>5} {row['mean']:>14.4f} ± {row['std']:.4f} {share} {versus:>32}")
    return "\n".join(lines)
