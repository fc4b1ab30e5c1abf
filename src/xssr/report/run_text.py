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
