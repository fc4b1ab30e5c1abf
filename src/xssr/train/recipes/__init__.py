"""Training recipes: how the U-Net is trained on the annotated images, chosen by ``train.recipe``.

A recipe is a function ``fit(images, masks, config, *, seed, device, progress) -> (model,
history)`` with ``images`` (N, C, S, S) float32 and ``masks`` (N, 1, S, S) in {0, 1}. Adding
one is one file plus one :func:`register_recipe` line. Entries are ``"module:function"`` and
imported on first use, so reading the names needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Callable

_RECIPES: dict[str, str | Callable] = {
    "supervised": "xssr.train.segment:train_unet",  # the paper's recipe: BCE on the picks alone
}


def register_recipe(name: str, target: str | Callable) -> None:
    """Register ``target`` (a function, or ``"module:function"``) as the recipe ``name``."""
    if name in _RECIPES:
        raise ValueError(f"A training recipe named {name!r} is already registered.")
    _RECIPES[name] = target


def unregister_recipe(name: str) -> None:
    """Remove a recipe (for tests that register a toy one)."""
    _RECIPES.pop(name, None)


def recipe_names() -> tuple[str, ...]:
    return tuple(_RECIPES)


def get_recipe(name: str) -> Callable:
    try:
        target = _RECIPES[name]
    except KeyError:
        raise ValueError(f"Unknown training recipe {name!r}; valid: {', '.join(_RECIPES)}.") from None
    if isinstance(target, str):
        module, _, function = target.partition(":")
        target = getattr(importlib.import_module(module), function)
    return target
