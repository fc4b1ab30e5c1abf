"""Embedders: models that turn images into vectors for the selection methods, chosen by ``embed.model``.

Adding one is one file with a class following :class:`~xssr.embedding.base.Embedder` plus one
line in ``EMBEDDERS``.
"""

from __future__ import annotations

from typing import Callable

from xssr.embedding.base import Embedder

#: name -> factory(RunConfig) -> Embedder; imported lazily so reading the names needs no torch.
EMBEDDERS: dict[str, Callable] = {
    "mae": lambda config: _mae()(config.pretrain),
    "precomputed": lambda config: _precomputed()(config.embed),
    "source-unet": lambda config: _source_unet()(config.train),
    "medsass": lambda config: _medsass()(config.pretrain, config.train),
    "mim-contrastive": lambda config: _mim_contrastive()(config.pretrain),
}


def _mae():
    from xssr.embedding.mae import MAEEmbedder

    return MAEEmbedder


def _precomputed():
    from xssr.embedding.precomputed import PrecomputedEmbedder

    return PrecomputedEmbedder


def _mim_contrastive():
    from xssr.embedding.mim_contrastive import MIMContrastiveEmbedder

    return MIMContrastiveEmbedder


def pretrain_groups(embedder: Embedder, config) -> list[str]:
    """The groups a learned embedder is fitted on: its own choice, else ``pretrain.train_on``."""
    own = getattr(embedder, "pretrain_groups", None)
    if own:
        return list(own)
    return ["source"] + (["pool"] if config.pretrain.train_on == "source+pool" else [])


def _medsass():
    from xssr.embedding.medsass import MedSASSEmbedder

    return MedSASSEmbedder


def _source_unet():
    from xssr.embedding.source_unet import SourceUNetEmbedder

    return SourceUNetEmbedder


def uses_source_model(embedder: Embedder) -> bool:
    """Whether the embedder reads the source-trained U-Net (the pipeline's source-train stage)."""
    return bool(getattr(embedder, "uses_source_model", False))


def embedder_names() -> tuple[str, ...]:
    return tuple(EMBEDDERS)


def get_embedder(config) -> Embedder:
    """The embedder ``config.embed.model`` names, configured from ``config``."""
    try:
        factory = EMBEDDERS[config.embed.model]
    except KeyError:
        raise ValueError(f"Unknown embedder {config.embed.model!r}; valid: {', '.join(EMBEDDERS)}.") from None
    return factory(config)


__all__ = ["EMBEDDERS", "Embedder", "embedder_names", "get_embedder", "pretrain_groups", "uses_source_model"]
