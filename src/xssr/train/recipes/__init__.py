"""Training recipes: how the U-Net is trained for a selection, chosen by ``train.recipe``.

A recipe is a function ``fit(data, config, *, seed, device, progress) -> (model, history)``
where ``data`` is a :class:`~xssr.train.recipes.base.TrainingData`, and a registry line that
says what it needs: the annotated target images (``labels``), a U-Net trained on the source
(``source_model``: the user's weights, or one the pipeline trains once on the source images and
masks and shares through the stage cache), the source images and masks themselves
(``source_masks``), the unlabeled pool (``pool``), or the U-Net the ``supervised`` recipe trains
on the same picks (``target_model``, made or reused as that recipe's own stage, so a fusion never
trains its target branch twice), or the U-Net MedSASS pretrained on the unlabeled images
(``ssl_model``, the same pretrain stage as the ``medsass`` embedder). The pipeline reads only what a recipe
needs, checks it before any work, and keys the recipe's stage by exactly that.

Entries are ``"module:function"`` and imported on first use, so reading the names needs no torch.
docs/recipes.md describes each recipe and what it measured.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

NEEDS = frozenset({"labels", "source_model", "source_masks", "pool", "target_model", "ssl_model"})


@dataclass(frozen=True)
class Recipe:
    name: str
    target: str | Callable
    needs: frozenset[str]

    def load(self) -> Callable:
        if isinstance(self.target, str):
            module, _, function = self.target.partition(":")
            return getattr(importlib.import_module(module), function)
        return self.target


_RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, target: str | Callable, needs: tuple[str, ...] = ("labels",)) -> None:
    """Register ``target`` (a function, or ``"module:function"``) as the recipe ``name``."""
    if name in _RECIPES:
        raise ValueError(f"A training recipe named {name!r} is already registered.")
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"Recipe {name!r}: unknown needs {sorted(unknown)}; valid: {sorted(NEEDS)}.")
    _RECIPES[name] = Recipe(name, target, frozenset(needs))


def unregister_recipe(name: str) -> None:
    """Remove a recipe (for tests that register a toy one)."""
    _RECIPES.pop(name, None)


def recipe_names() -> tuple[str, ...]:
    return tuple(_RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        raise ValueError(f"Unknown training recipe {name!r}; valid: {', '.join(_RECIPES)}.") from None


_HERE = "xssr.train.recipes"
register_recipe("supervised", f"{_HERE}.supervised:supervised")  # the paper's: the picks alone, from scratch
register_recipe("source-only", f"{_HERE}.supervised:source_only", needs=("source_model",))
register_recipe("fine-tune", f"{_HERE}.supervised:fine_tune", needs=("labels", "source_model"))
register_recipe("fusion", f"{_HERE}.supervised:fusion", needs=("labels", "source_model", "target_model"))
register_recipe("joint", f"{_HERE}.joint:joint", needs=("labels", "source_masks"))
register_recipe("mean-teacher", f"{_HERE}.mean_teacher:mean_teacher", needs=("labels", "source_model", "pool"))
register_recipe("medsass", f"{_HERE}.supervised:from_ssl_model", needs=("labels", "ssl_model"))
register_recipe("medsass-encoder", f"{_HERE}.supervised:from_ssl_encoder", needs=("labels", "ssl_model"))
register_recipe("mean-teacher-scratch", f"{_HERE}.mean_teacher:mean_teacher_from_scratch", needs=("labels", "pool"))
