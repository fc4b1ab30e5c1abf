"""The plain-text summary a run ends with: one line per method."""

from __future__ import annotations

from typing import Any


def metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Method, annotated images, test Dice (mean ± std over test images), share of full-data Dice;
    then the training recipe, and where its source model came from."""
    full = metrics.get("full", {}).get("dice", {}).get("overall", {}).get("mean")
    lines = [f"{'method':<20} {'n_labelled':>10} {'test Dice':>17} {'% of full':>10}"]
    for method, m in metrics.items():
        overall = m["dice"]["overall"]
        share = f"{100 * overall['mean'] / full:9.1f}%" if full else f"{'-':>10}"
        lines.append(f"{method:<20} {m['n_train']:>10d} {overall['mean']:>9.4f} ± {overall['std']:.4f} {share}")
    recipes = sorted({m["recipe"] for m in metrics.values() if "recipe" in m})
    sources = sorted({m["source_model"] for m in metrics.values() if "source_model" in m})
    if recipes:
        lines.append(f"training recipe: {', '.join(recipes)}" + (f" (source model: {'; '.join(sources)})"
                                                                 if sources else ""))
    return "\n".join(lines)


def seeds_table(per_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Methods compared over seeds: mean test Dice ± std over seeds, its share of the full pool's
    (when that ran), and the paired difference to random with its 95 % t interval (runs with the
    same seed share the U-Net initialisation and batch order)."""
    from xssr.metrics.stats import paired_difference

    def by_seed(method: str) -> dict[int, float]:
        return {s: m[method]["dice"]["overall"]["mean"] for s, m in per_seed.items() if method in m}

    methods = list(dict.fromkeys(name for m in per_seed.values() for name in m))
    full = by_seed("full")
    full_mean = sum(full.values()) / len(full) if full else None
    lines = [f"{'method':<20} {'seeds':>5} {'test Dice (over seeds)':>23} {'% of full':>10} {'vs random (95 % CI)':>32}"]
    for method in methods:
        values = by_seed(method)
        mean = sum(values.values()) / len(values)
        std = (sum((v - mean) ** 2 for v in values.values()) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        share = f"{100 * mean / full_mean:9.1f}%" if full_mean else f"{'-':>10}"
        if method in ("random", "full") or "random" not in methods:
            versus = "-"
        else:
            d = paired_difference(values, by_seed("random"))
            versus = f"{d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (n={d.n})"
        lines.append(f"{method:<20} {len(values):>5} {mean:>14.4f} ± {std:.4f} {share} {versus:>32}")
    return "\n".join(lines)
