"""The default training recipe, chosen by the rule written in benchmarks/suites/recipes-val.toml
before its runs, applied to its finished validation runs (never to a test split).

Rule 1: the highest validation Dice averaged over the datasets (each dataset's mean over the
suite's seeds); if a cheaper recipe is within ``TOLERANCE`` of it, the cheaper one. "Cheaper" is
measured, not assumed: the median seconds a run spent training its own U-Net(s) (the recipe's
stage and, for fusion, its target branch), summed over the datasets. The source U-Net, trained
once per source and seed and shared by every run that starts from it, is not counted. The same
rule over the recipes that need no source data gives the fallback for a team without source
masks or a source model, and over those that need no source masks (a source model is enough)
the choice for a team that brings only its model.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean, median
from typing import Any, Sequence

TOLERANCE = 0.005
#: The reference of table A (the paper's recipe without the shared ingredients), not a candidate.
REFERENCE = "plain"


@dataclass(frozen=True)
class RecipeScore:
    recipe: str
    dice: dict[str, float]  # dataset -> mean validation Dice over its seeds
    seeds: dict[str, int]
    average: float
    train_seconds: float
    complete: bool  # every dataset at every seed: only then may the rule use it


@dataclass(frozen=True)
class Choice:
    who: str  # which teams this choice is for
    candidates: tuple[str, ...]
    best: str | None
    chosen: str | None
    reason: str


def recipe_scores(runs: Sequence[dict], datasets: Sequence[str], seeds: Sequence[int]) -> list[RecipeScore]:
    """One score per recipe variant of ``runs`` with at least one run on every dataset (means over
    the seeds it has; ``complete`` when it has them all)."""
    dice: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    seconds: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.get("variant") in (None, "", REFERENCE):
            continue
        dice[run["variant"]][run["dataset"]][run["seed"]] = run["dice"]["overall"]["mean"]
        t = run.get("timings", {})
        seconds[run["variant"]][run["dataset"]].append((t.get("unet_train_seconds") or 0.0)
                                                       + (t.get("target_branch_seconds") or 0.0))
    scores = []
    for recipe, by_dataset in sorted(dice.items()):
        if not all(by_dataset.get(d) for d in datasets):
            continue
        per_dataset = {d: mean(v for s, v in by_dataset[d].items() if s in seeds) for d in datasets}
        scores.append(RecipeScore(recipe, per_dataset,
                                  {d: len(set(by_dataset[d]) & set(seeds)) for d in datasets},
                                  mean(per_dataset.values()), sum(median(seconds[recipe][d]) for d in datasets),
                                  all(set(seeds) <= set(by_dataset[d]) for d in datasets)))
    return scores


def choose(scores: Sequence[RecipeScore], candidates: Sequence[str], who: str) -> Choice:
    pool = [s for s in scores if s.recipe in candidates and s.complete]
    missing = sorted(set(candidates) - {s.recipe for s in pool})
    if missing or not pool:
        return Choice(who, tuple(candidates), None, None,
                      f"not yet: {', '.join(missing)} lack finished runs at some dataset or seed")
    best = max(pool, key=lambda s: s.average)
    close = [s for s in pool if s.average >= best.average - TOLERANCE]
    chosen = min(close, key=lambda s: (s.train_seconds, -s.average))
    if chosen is best:
        reason = f"highest average validation Dice ({best.average:.4f})"
    else:
        reason = (f"within {TOLERANCE} of {best.recipe} ({chosen.average:.4f} vs {best.average:.4f}) and cheaper "
                  f"({chosen.train_seconds:.0f} s vs {best.train_seconds:.0f} s of U-Net training)")
    return Choice(who, tuple(candidates), best.recipe, chosen.recipe, reason)


def recipe_choices(scores: Sequence[RecipeScore], recipe_of: dict[str, str]) -> list[Choice]:
    """The three choices: with source masks, with only a source model, with neither. ``recipe_of``
    maps each compared variant to the recipe its runs train with. Candidates train on the
    annotations: source-only ignores them and stays the do-nothing reference."""
    from xssr.train.recipes import get_recipe, recipe_names

    def usable(needs_allowed: set[str]) -> list[str]:
        return [v for v, r in recipe_of.items() if v not in ("", REFERENCE) and r in recipe_names()
                and "labels" in get_recipe(r).needs and set(get_recipe(r).needs) <= needs_allowed]

    everything = {"labels", "source_model", "source_masks", "pool", "target_model"}
    return [
        choose(scores, usable(everything), "teams with source masks"),
        choose(scores, usable({"labels", "source_model", "pool", "target_model"}),
               "teams with only a source model (--source-weights)"),
        choose(scores, usable({"labels", "pool"}), "teams with neither"),
    ]


def render_choice(scores: Sequence[RecipeScore], choices: Sequence[Choice], datasets: Sequence[str],
                  finished: int, total: int) -> str:
    head = "| recipe | " + " | ".join(f"{d} (seeds)" for d in datasets) + " | average | U-Net training s |"
    lines = [f"{finished} of {total} runs finished.", "", head, "|" + "---|" * (len(datasets) + 3)]
    for s in sorted(scores, key=lambda s: -s.average):
        lines.append(f"| {s.recipe} | " + " | ".join(f"{s.dice[d]:.4f} ({s.seeds[d]})" for d in datasets)
                     + f" | {s.average:.4f} | {s.train_seconds:.0f} |")
    lines.append("")
    for c in choices:
        verdict = f"**{c.chosen}**: {c.reason}" if c.chosen else c.reason
        lines.append(f"- {c.who} (from {', '.join(c.candidates) or 'none'}): {verdict}")
    return "\n".join(lines) + "\n"


def summary(runs: Sequence[dict], suite, table: str = "A") -> tuple[str, list[Choice]]:
    """The rendered verdict of ``suite``'s finished runs of ``table``, and the choices."""
    specs = suite.runs((table,))
    if not specs:
        tables = sorted({e.table for e in suite.experiments})
        raise ValueError(f"--table {table}: not in suite {suite.name!r}; it has: {', '.join(tables)}")
    recipe_of = {spec.variant: spec.config.train.recipe for spec in specs}
    datasets = sorted({spec.dataset for spec in specs})
    mine = [r for r in runs if r.get("variant") in recipe_of]
    scores = recipe_scores(mine, datasets, suite.seeds)
    choices = recipe_choices(scores, recipe_of)
    if not any(c.candidates for c in choices):
        raise ValueError(f"--table {table}: none of its variants trains a recipe that uses the annotations; "
                         "it compares no recipes")
    return render_choice(scores, choices, datasets, len(mine), len(specs)), choices


@dataclass(frozen=True)
class IngredientVerdict:
    """Rule 2 for one ingredient: the chosen recipe with it (``base``) and without it (``variant``)."""

    setting: str  # "train.augment", ...
    kept: Any  # its value in the chosen recipe
    removed: Any  # its value in the ablation (the plain recipe's)
    base: str
    variant: str
    with_it: dict[str, float]  # dataset -> mean validation Dice over the seeds both have
    without: dict[str, float]
    change: float  # average Dice without it minus with it (the mean paired difference)
    keep: bool | None  # None until both have every dataset at every seed


def ablations(suite, table: str, base_table: str) -> dict[str, tuple[str, str, Any, Any]]:
    """{ablation variant: (base variant, setting, value in base, value in ablation)}: each variant of
    ``table`` against the variant of ``base_table`` whose runs differ from it in exactly one training
    setting, on every dataset (a ValueError names a variant with no such partner). A value that
    differs by dataset (keep_components: 2 lungs, 1 optic disc) is given as a tuple."""
    import dataclasses

    base_specs = suite.runs((base_table,))
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    values: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)
    for spec in suite.runs((table,)):
        mine = dataclasses.asdict(spec.config.train)
        partners = set()
        for other in base_specs:
            if other.dataset != spec.dataset or other.method != spec.method or other.budget != spec.budget:
                continue
            theirs = dataclasses.asdict(other.config.train)
            differ = [k for k in mine if mine[k] != theirs[k]]
            if len(differ) == 1:
                partners.add((other.variant, f"train.{differ[0]}"))
                kept, removed = values[spec.variant].setdefault(other.variant, ([], []))
                for seen, value in ((kept, theirs[differ[0]]), (removed, mine[differ[0]])):
                    if value not in seen:
                        seen.append(value)
        found[spec.variant] |= partners
    for variant, partners in found.items():
        if len(partners) != 1:
            raise ValueError(f"table {table} variant {variant!r}: it must differ from one variant of table {base_table} "
                             f"in exactly one training setting on every dataset; found {sorted(map(str, partners)) or 'none'}")

    def one(found_values: list) -> Any:
        return found_values[0] if len(found_values) == 1 else tuple(found_values)

    pairs = {}
    for variant, partners in found.items():
        base, setting = next(iter(partners))
        kept, removed = values[variant][base]
        pairs[variant] = (base, setting, one(kept), one(removed))
    return pairs


def ingredient_verdicts(runs: Sequence[dict], suite, table: str = "B", base_table: str = "A",
                        pairs: dict[str, tuple[str, str, Any, Any]] | None = None) -> list[IngredientVerdict]:
    """Rule 2: an ingredient stays if removing it lowers the validation Dice averaged over the
    datasets (each the mean over the suite's seeds); a tie or a gain drops it (simpler wins).
    ``pairs`` is ``ablations(suite, table, base_table)`` where the caller has it already."""
    if pairs is None:
        pairs = ablations(suite, table, base_table)
    datasets = sorted({spec.dataset for spec in suite.runs((table,))})
    dice: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for run in runs:
        if run.get("seed") in suite.seeds:
            dice[run.get("variant"), run.get("dataset")][run["seed"]] = run["dice"]["overall"]["mean"]
    verdicts = []
    for variant, (base, setting, kept, removed) in sorted(pairs.items()):
        paired = {d: sorted(set(dice[base, d]) & set(dice[variant, d])) for d in datasets}
        if not all(paired.values()):  # listed, so that a default is not written without it
            verdicts.append(IngredientVerdict(setting, kept, removed, base, variant, {}, {}, float("nan"), None))
            continue
        with_it = {d: mean(dice[base, d][s] for s in paired[d]) for d in datasets}
        without = {d: mean(dice[variant, d][s] for s in paired[d]) for d in datasets}
        change = mean(without.values()) - mean(with_it.values())
        complete = all(len(paired[d]) == len(suite.seeds) for d in datasets)
        verdicts.append(IngredientVerdict(setting, kept, removed, base, variant, with_it, without, change,
                                          (change < 0) if complete else None))
    return verdicts


def render_ingredients(verdicts: Sequence[IngredientVerdict], datasets: Sequence[str], finished: int,
                       total: int) -> str:
    lines = [f"{finished} of {total} ablation runs finished.", "",
             "| ingredient | with → without | " + " | ".join(datasets) + " | average change | verdict |",
             "|" + "---|" * (len(datasets) + 4)]
    for v in verdicts:
        verdict = "not yet" if v.keep is None else ("**keep**" if v.keep else "drop")
        if not v.with_it:
            lines.append(f"| {v.setting} | {v.kept} → {v.removed} | " + "– | " * (len(datasets) + 1) + f"{verdict} |")
            continue
        lines.append(f"| {v.setting} | {v.kept} → {v.removed} | "
                     + " | ".join(f"{v.with_it[d]:.4f} → {v.without[d]:.4f}" for d in datasets)
                     + f" | {v.change:+.4f} | {verdict} |")
    return "\n".join(lines) + "\n"


def ingredient_summary(runs: Sequence[dict], suite, table: str, base_table: str,
                       choices: Sequence[Choice]) -> tuple[str, list[IngredientVerdict]]:
    """The rendered rule-2 verdict of ``table``. It must ablate the recipe ``base_table`` chose for
    teams with source masks, once that choice is made."""
    pairs = ablations(suite, table, base_table)
    bases = {base for base, *_ in pairs.values()}
    chosen = choices[0].chosen if choices else None
    if chosen is not None and bases != {chosen}:
        raise ValueError(f"table {table} ablates {', '.join(sorted(bases))}, but table {base_table} chose {chosen}: "
                         f"add a table that removes each ingredient from {chosen}")
    specs = suite.runs((table,))
    datasets = sorted({spec.dataset for spec in specs})
    mine = [r for r in runs if r.get("variant") in pairs]
    verdicts = ingredient_verdicts(runs, suite, table, base_table, pairs)
    return render_ingredients(verdicts, datasets, len(mine), len(specs)), verdicts


#: Which choice serves which situation of xssr.pipeline.recipe_choice.
_SITUATION_OF = {"teams with source masks": "source_masks",
                 "teams with only a source model (--source-weights)": "source_model",
                 "teams with neither": "none"}


#: The ingredients a verdict's runs trained with, which ``--recipe auto`` carries over with the recipe.
INGREDIENTS = ("augment", "loss", "lr_schedule", "tta")


def write_default_choices(choices: Sequence[Choice], suite, table: str, verdict: str, path=None,
                          ingredients: Sequence[IngredientVerdict] | None = None, ingredients_table: str = ""):
    """Write the choices as ``xssr/train/recipes/default.json`` (what ``--recipe auto`` reads): per
    situation the chosen variant's recipe and the ingredients its runs trained with, less those
    rule 2 dropped (``ingredients``; it is measured on one recipe and applied to all three).
    Refused while any choice or ingredient has no verdict. Returns the path."""
    from pathlib import Path

    import xssr.train.recipes as recipes
    from xssr.report.io import write_json

    pending = [c.who for c in choices if c.chosen is None] + [v.setting for v in ingredients or () if v.keep is None]
    if pending:
        raise ValueError(f"No default written: no verdict yet for {', '.join(pending)}.")
    trained_with = {spec.variant: spec.config.train for spec in suite.runs((table,))}
    dropped = {v.setting: v.removed for v in ingredients or () if not v.keep}

    def settings(variant: str) -> dict[str, Any]:
        return {f"train.{k}": dropped.get(f"train.{k}", getattr(trained_with[variant], k)) for k in INGREDIENTS}

    path = Path(path) if path is not None else Path(recipes.__file__).parent / "default.json"
    return write_json(path, {
        "suite": suite.name,
        "recipes": {_SITUATION_OF[c.who]: trained_with[c.chosen].recipe for c in choices},
        "settings": {_SITUATION_OF[c.who]: settings(c.chosen) for c in choices},
        "ingredients": {v.setting: {"kept": v.keep, "in_recipe": v.kept, "removed": v.removed,
                                    "average_change_without": round(v.change, 4)} for v in ingredients or ()},
        "reasons": {_SITUATION_OF[c.who]: f"{c.chosen}: {c.reason}" for c in choices},
        "written_by": (f"xssr bench choose {suite.name} --table {table}"
                       + (f" --ingredients {ingredients_table}" if ingredients_table else "") + " --write-default"),
        # False while rule 2 has not been applied: the settings are then those table A's runs trained with.
        "rule_2_applied": ingredients is not None,
        "verdict": verdict})
