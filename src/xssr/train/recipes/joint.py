"""Joint training: one U-Net from scratch on the source images and the annotated target images
together, the target images over-sampled to a fixed share of every batch."""

from __future__ import annotations

import numpy as np
import torch

from xssr.config import TrainConfig
from xssr.train.augment import build_augment
from xssr.train.loop import train_steps
from xssr.train.recipes.base import IndexStream, TrainingData, step_count
from xssr.train.segment import new_unet, segmentation_loss


def joint(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    data.require("images", "masks", "source_images", "source_masks")
    # At least one target image per batch, else the annotations would be ignored at small fractions.
    n_target = max(1, round(config.joint_target_fraction * config.batch_size))
    n_source = config.batch_size - n_target
    target = [torch.from_numpy(data.images), torch.from_numpy(data.masks.astype(np.float32))]
    source = [torch.from_numpy(data.source_images), torch.from_numpy(data.source_masks.astype(np.float32))]
    generator = torch.Generator().manual_seed(seed)
    target_stream, source_stream = IndexStream(len(data.images), generator), IndexStream(len(data.source_images), generator)
    augment = build_augment(config.augment, data.images.shape[-1], seed)

    def draw(step):
        t, s = target_stream.take(n_target), source_stream.take(n_source)
        batch = [torch.cat([target[0][t], source[0][s]]), torch.cat([target[1][t], source[1][s]])]
        return augment(batch) if augment is not None else batch

    torch.manual_seed(seed)
    model = new_unet(data.channels, config)
    loss = segmentation_loss(config.loss)
    history = train_steps(
        model, draw, lambda net, batch, g: loss(net(batch[0]).float(), batch[1]),
        steps=step_count(config, len(data.images)), lr=config.lr, weight_decay=config.weight_decay, seed=seed,
        device=device, precision=config.precision, lr_schedule=config.lr_schedule, progress=progress)
    return model, history
