"""The plain-text summary a run ends with: one line per method.

The numbers come from :func:`metrics_rows` and :func:`seeds_rows`, which the HTML report
(:mod:`xssr.report.run_report`) shows too, so the page and the text never disagree.
"""

from __future__ import annotations

from typing import Any


def metrics_rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per method of one run: ``method``, ``n_train``, ``mean``, ``std``, ``n`` (test
    images), ``share`` (of the full pool's mean Dice, None without a ``full`` run),
    ``share_source`` (of the source U-Net's alone, None without a ``source-only`` row), ``alpha``,
    ``recipe``, ``stage_seconds`` and ``per_site`` ({site: {"mean", "std", "n"}})."""
    def reference(name: str) -> float | None:
        return metrics.get(name, {}).get("dice", {}).get("overall", {}).get("mean")

    full, source = reference("full"), reference("source-only")
    rows = []
    for method, m in metrics.items():
        overall = m["dice"]["overall"]
        rows.append({"method": method, "n_train": m["n_train"], "mean": overall["mean"], "std": overall["std"],
                     "n": overall.get("n"), "share": overall["mean"] / full if full else None,
                     "share_source": overall["mean"] / source if source else None, "alpha": m.get("alpha"),
                     "recipe": m.get("recipe"), "stage_seconds": m.get("stage_seconds", {}),
                     "per_site": m["dice"].get("per_site", {})})
    return rows


def _percent(share: float | None) -> str:
    return f"{100 * share:9.1f}%" if share is not None else f"{'-':>10}"


def metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Method, annotated images, test Dice (mean ± std over test images), its share of full-data
    Dice and of the source model's alone, the chosen alpha; then the recipe, where its source
    model came from, and the seconds of each stage."""
    rows = metrics_rows(metrics)
    with_source = any(r["share_source"] is not None for r in rows)
    lines = [f"{'method':<20} {'n_labelled':>10} {'test Dice':>17} {'% of full':>10}"
             + (f" {'% of source':>11}" if with_source else "") + f" {'alpha':>6}"]
    for row in rows:
        alpha = f"{row['alpha']:6.2g}" if row["alpha"] is not None else f"{'-':>6}"
        lines.append(f"{row['method']:<20} {row['n_train']:>10d} {row['mean']:>9.4f} ± {row['std']:.4f} "
                     f"{_percent(row['share'])}" + (f" {_percent(row['share_source']):>11}" if with_source else "")
                     + f" {alpha}")
    recipes = sorted({m["recipe"] for name, m in metrics.items() if "recipe" in m and name != "source-only"})
    sources = sorted({m["source_model"] for m in metrics.values() if "source_model" in m})
    if recipes:
        lines.append(f"training recipe: {', '.join(recipes)}" + (f" (source model: {'; '.join(sources)})"
                                                                 if sources else ""))
    seconds: dict[str, float] = {}
    for row in rows:
        seconds.update(row["stage_seconds"])
    if seconds:
        lines.append("seconds per stage (as computed; reused stages cost nothing now): "
                     + ", ".join(f"{label} {value:g}" for label, value in seconds.items()))
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
        if method not in ("random", "full", "source-only") and "random" in methods:
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
