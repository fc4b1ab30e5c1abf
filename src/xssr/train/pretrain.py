"""Stage 1: train the convolutional MAE on unlabeled images and extract embeddings."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from xssr.config import PretrainConfig
from xssr.models import ConvMAE, masked_reconstruction_loss, random_patch_mask
from xssr.train.loop import TrainHistory, autocast_context, train_minibatches


def train_mae(
    images: np.ndarray,
    config: PretrainConfig,
    *,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[ConvMAE, TrainHistory]:
    """Train a ConvMAE on (N, C, S, S) float32 ``images``; returns the model (eval mode) and its history."""
    torch.manual_seed(seed)
    model = ConvMAE(in_channels=images.shape[1], widths=config.widths)

    def hide_patches(batch, generator):
        # The mask is drawn here, for the whole batch, at the point where the loss used to draw
        # it (so one process's runs are unchanged): under torchrun every process draws the same
        # masks and keeps its share along with its images.
        return [batch[0], random_patch_mask(batch[0].shape, config.patch_size, config.mask_ratio, generator)]

    def loss_fn(net, batch, generator):
        return masked_reconstruction_loss(net, batch[0], batch[1], config.loss_on)

    history = train_minibatches(
        model,
        [torch.from_numpy(images)],
        loss_fn,
        augment=hide_patches,
        distribute=True,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        seed=seed,
        device=device,
        precision=config.precision,
        progress=progress,
    )
    return model, history


@torch.no_grad()
def embed_batches(
    model: ConvMAE, batches: Iterable[np.ndarray], *, device: torch.device, precision: str = "auto"
) -> np.ndarray:
    """Embed an iterable of (B, C, S, S) float32 batches; returns (N, embedding_dim) float32.

    Taking batches rather than one array lets a large pool stream from disk in bounded memory.
    """
    model.to(device).eval()
    parts = []
    for batch in batches:
        with autocast_context(device, precision):
            parts.append(model.embed(torch.from_numpy(np.ascontiguousarray(batch)).to(device)).float().cpu().numpy())
    if not parts:
        return np.zeros((0, model.embedding_dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)


def load_mae(state: dict, in_channels: int, widths: tuple[int, ...]) -> ConvMAE:
    model = ConvMAE(in_channels=in_channels, widths=widths)
    model.load_state_dict(state)
    return model.eval()
