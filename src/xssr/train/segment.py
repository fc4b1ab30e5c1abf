"""Stage 3: train the U-Net on the chosen annotated images and predict masks (§3.3, §4.4)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xssr.config import TrainConfig
from xssr.models import build_unet
from xssr.train.loop import TrainHistory, map_batches, train_minibatches


def train_unet(
    images: np.ndarray,
    masks: np.ndarray,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[torch.nn.Module, TrainHistory]:
    """Train a U-Net with binary cross-entropy (Eq. 10) and AdamW.

    images : (N, C, S, S) float32; masks : (N, 1, S, S) in {0, 1}.
    The same ``seed`` gives every selection method the same initial weights and batch
    order, so methods differ only in which images they were given.
    """
    if len(images) != len(masks):
        raise ValueError(f"Got {len(images)} images but {len(masks)} masks.")
    torch.manual_seed(seed)
    model = build_unet(images.shape[1], config.channels, config.num_res_units)

    def loss_fn(net, batch, generator):
        logits = net(batch[0]).float()
        return F.binary_cross_entropy_with_logits(logits, batch[1])

    history = train_minibatches(
        model,
        [torch.from_numpy(images), torch.from_numpy(masks.astype(np.float32))],
        loss_fn,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        seed=seed,
        device=device,
        precision=config.precision,
        min_steps=config.steps or config.min_steps,
        max_steps=config.steps or None,
        progress=progress,
    )
    return model, history


def predict_probabilities(
    model: torch.nn.Module, images: np.ndarray, *, device: torch.device, precision: str = "bf16", batch_size: int = 16
) -> np.ndarray:
    """(N, C, S, S) float32 images -> (N, 1, S, S) float32 foreground probabilities."""
    model.to(device).eval()
    logits = map_batches(model, torch.from_numpy(images), batch_size=batch_size, device=device, precision=precision)
    return torch.sigmoid(logits).numpy()


def load_unet(state: dict, in_channels: int, config: TrainConfig) -> torch.nn.Module:
    model = build_unet(in_channels, config.channels, config.num_res_units)
    model.load_state_dict(state)
    return model.eval()
