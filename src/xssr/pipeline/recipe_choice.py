"""``train.recipe = "auto"``: the recipe chosen on validation data for what the team has.

The choice is not typed in here: ``xssr bench choose recipes-val --write-default`` applies the
rule written in benchmarks/suites/recipes-val.toml to its committed validation runs and writes
``xssr/train/recipes/default.json`` (one recipe for teams with source masks, one for teams with
only a source model, one for teams with neither, each with the ingredients its runs trained with). This module reads that file and looks at the
inputs: the user's ``train.source_weights``, else whether every source image has a mask.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from importlib import resources
from pathlib import Path

from xssr.config import RunConfig, TrainConfig

AUTO = "auto"
DEFAULT_FILE = "default.json"
#: The three situations, in the order they are checked.
SITUATIONS = ("source_model", "source_masks", "none")
stage_log = logging.getLogger("xssr.stages")


def default_choices() -> dict | None:
    """The generated choice file's content, or None while no verdict has been written."""
    path = resources.files("xssr.train.recipes") / DEFAULT_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def situation(config: RunConfig) -> tuple[str, str]:
    """(situation, why): what the team brings, read from the configuration and the source records."""
    from xssr.data import load_records

    if config.train.source_weights:
        return "source_model", f"you gave a source model ({config.train.source_weights})"
    spec = config.data.source
    if not spec:
        return "none", "no source images are configured"
    try:
        records = load_records(spec, data_root=config.data.data_root)
    except ValueError:
        return "none", "the source images could not be listed"  # the input check names the problem
    if records and all(r.mask is not None and Path(r.mask).is_file() for r in records):
        return "source_masks", f"all {len(records)} source images have masks"
    return "none", "not every source image has a mask, and no --source-weights was given"


def resolve_recipe(config: RunConfig) -> RunConfig:
    """``config`` with ``train.recipe = "auto"`` replaced by the chosen recipe (and said so on the
    stage log); any other recipe is returned unchanged."""
    if config.train.recipe != AUTO:
        return config
    choices = default_choices()
    if choices is None:
        raise ValueError("train.recipe 'auto' has no chosen default yet: the validation suite recipes-val has not "
                         "given its verdict (xssr bench choose recipes-val); name a recipe instead (docs/recipes.md)")
    where, why = situation(config)
    recipe = choices["recipes"][where]
    # The ingredients the verdict's runs trained with come along, except those the user moved from
    # their defaults (a setting left at its default cannot be told from one given at it).
    defaults = TrainConfig()
    carried = {key.split(".", 1)[1]: value for key, value in choices.get("settings", {}).get(where, {}).items()
               if getattr(config.train, key.split(".", 1)[1]) == getattr(defaults, key.split(".", 1)[1])}
    stage_log.info("recipe auto -> %s%s: %s (chosen on validation data by %s, docs/recipes.md)", recipe,
                   "".join(f", {k}={v}" for k, v in carried.items() if v != getattr(defaults, k)), why,
                   choices.get("suite", "recipes-val"))
    return dataclasses.replace(config, train=dataclasses.replace(config.train, recipe=recipe, **carried))
