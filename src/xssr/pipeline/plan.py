"""Which inputs a command reads, worked out from the configuration before anything runs."""

from __future__ import annotations

from xssr.config import RunConfig
from xssr.selection.registry import get_method


def needs_embeddings(config: RunConfig) -> bool:
    """Whether any configured method reads embeddings (so the MAE must be trained and applied)."""
    return any(get_method(m).uses_embeddings for m in config.select.methods)


def needs_source(config: RunConfig) -> bool:
    """Whether a configured method weighs novelty (distance to the source), so it needs source embeddings."""
    for name in config.select.methods:
        method = get_method(name)
        if method.uses_source and method.select_kwargs(config.select).get("alpha") != 0:
            return True
    return False


def plan(config: RunConfig, command: str) -> tuple[list[str], list[str]]:
    """The input groups a command reads, and those whose masks must all exist, for ``config``."""
    from xssr.embedding import get_embedder, pretrain_groups, uses_source_model

    # A learned embedder trains on the source; otherwise the source images are needed only when
    # a method weighs novelty.
    embedder = get_embedder(config)
    source = ["source"] if embedder.learns or uses_source_model(embedder) or needs_source(config) else []
    embedding_groups = source + ["pool"]
    embeds = needs_embeddings(config)
    if command == "pretrain":
        return pretrain_groups(embedder, config), []
    # An embedder that reads the source U-Net needs the source masks to train it (unless given).
    embed_masks = ["source"] if uses_source_model(embedder) and not config.train.source_weights else []
    # So does a method that reads its uncertainty.
    if needs_scores(config) and not config.train.source_weights and command != "embed":
        embed_masks, embedding_groups = ["source"], ["source"] + [g for g in embedding_groups if g != "source"]
    if command == "embed":
        return embedding_groups, embed_masks
    if command == "select":
        return (embedding_groups, embed_masks) if embeds else (["pool"], [])
    # Pool masks are needed up front only when the whole pool is trained on; otherwise only the
    # selected images must be annotated, and that is checked once the selection is known.
    pool_masks = ["pool"] if any(get_method(m).algorithm is None for m in config.select.methods) else []
    groups = embedding_groups if embeds else ["pool"]
    # A recipe that trains a source U-Net here, or trains on the source, needs every source mask.
    source_masks = ["source"] if needs_source_masks(config) else []
    from xssr.train.recipes import get_recipe

    # MedSASS pretraining (for a recipe that starts from it) reads the source images, no masks.
    ssl = ["source"] if "ssl_model" in get_recipe(config.train.recipe).needs else []
    groups = groups + [g for g in source_masks + ssl if g not in groups]
    if embeds and embed_masks and not source_masks:
        source_masks = embed_masks
    if command == "train":
        return groups, pool_masks + source_masks
    return groups + ["test"], pool_masks + source_masks + ["test"]


def needs_scores(config: RunConfig) -> bool:
    """Whether a configured method reads the source U-Net's per-image uncertainty."""
    return any(get_method(m).uses_scores for m in config.select.methods)


def needs_source_masks(config: RunConfig) -> bool:
    """Whether the recipe trains on the source images and masks (itself, or to make its source U-Net)."""
    from xssr.train.recipes import get_recipe

    needs = get_recipe(config.train.recipe).needs
    return "source_masks" in needs or ("source_model" in needs and not config.train.source_weights)


def needs_source_weights(config: RunConfig) -> bool:
    """Whether the recipe starts from the user's source U-Net file (checked before any work)."""
    from xssr.train.recipes import get_recipe

    return "source_model" in get_recipe(config.train.recipe).needs and bool(config.train.source_weights)
