"""Recipes made of one supervised U-Net run (or none): supervised, source-only, fine-tune, fusion,
and the two MedSASS initialisations."""

from __future__ import annotations

from xssr.config import TrainConfig
from xssr.train.loop import TrainHistory
from xssr.train.recipes.base import TrainingData
from xssr.train.segment import new_unet, train_unet


def supervised(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """The paper's recipe: a U-Net from scratch on the annotated target images alone."""
    data.require("images", "masks")
    return train_unet(data.images, data.masks, config, seed=seed, device=device, progress=progress)


def source_only(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """The source-trained U-Net as it is: what a team gets with no target annotation at all."""
    data.require("source_state")
    return new_unet(data.channels, config, data.source_state).eval(), TrainHistory()


def fine_tune(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """The source-trained U-Net, trained further on the annotated target images."""
    data.require("images", "masks", "source_state")
    return train_unet(data.images, data.masks, config, seed=seed, device=device, init_state=data.source_state,
                      progress=progress)


def fusion(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """The source-trained U-Net (source branch) and the supervised recipe's U-Net on the same
    annotated images (target branch), fused pixel-wise by confidence (xssr.models.fusion). Each
    branch alone is the source-only and the supervised row. Without a given target branch it is
    trained here."""
    from xssr.models.fusion import FusionNet

    data.require("source_state")
    if data.target_state is not None:
        target, history = new_unet(data.channels, config, data.target_state), TrainHistory()
    else:
        data.require("images", "masks")
        target, history = train_unet(data.images, data.masks, config, seed=seed, device=device, progress=progress)
    return FusionNet(new_unet(data.channels, config, data.source_state), target.cpu()).eval(), history


def from_ssl_model(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """MedSASS's end-to-end transfer (E+D): the whole self-supervised U-Net, trained on the picks."""
    data.require("images", "masks", "ssl_state")
    return train_unet(data.images, data.masks, config, seed=seed, device=device, init_state=data.ssl_state,
                      progress=progress)


def from_ssl_encoder(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """MedSASS's encoder-only transfer (E): its encoder, a fresh decoder, trained on the picks."""
    import torch

    from xssr.models.unet import encoder_prefixes

    data.require("images", "masks", "ssl_state")
    torch.manual_seed(seed)  # the fresh decoder is the one the supervised recipe would start from
    start = new_unet(data.channels, config).state_dict()
    prefixes = encoder_prefixes(new_unet(data.channels, config))
    state = {k: (data.ssl_state[k] if k.startswith(prefixes) else v) for k, v in start.items()}
    return train_unet(data.images, data.masks, config, seed=seed, device=device, init_state=state, progress=progress)
