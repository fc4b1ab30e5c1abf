"""What a recipe is given, and helpers the recipes share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from xssr.config import TrainConfig


@dataclass
class TrainingData:
    """Everything a recipe may train from; the pipeline fills only what the recipe needs.

    Arrays are (N, C, S, S) float32 images and (N, 1, S, S) {0, 1} masks, all at one size.
    """

    channels: int
    images: np.ndarray | None = None  # the annotated target images
    masks: np.ndarray | None = None
    source_state: dict | None = None  # state dict of the source-trained U-Net
    target_state: dict | None = None  # state dict of the supervised recipe's U-Net on the same picks
    ssl_state: dict | None = None  # state dict of the U-Net MedSASS pretrained without labels
    source_images: np.ndarray | None = None
    source_masks: np.ndarray | None = None
    pool_images: np.ndarray | None = None  # the unlabeled target pool

    def require(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"This recipe needs {', '.join(missing)}, which the training data lack.")


def step_count(config: TrainConfig, n_labeled: int) -> int:
    """Optimiser steps for recipes that draw mixed batches: ``train.steps`` when set, else as
    many as the epoch rule gives the labeled images alone (so a recipe costs what the plain one does)."""
    if config.steps:
        return config.steps
    return max(config.min_steps, config.epochs * math.ceil(n_labeled / config.batch_size))


class IndexStream:
    """Indices 0..n-1 in a fresh seeded order every pass, drawn ``k`` at a time, forever."""

    def __init__(self, n: int, generator: torch.Generator):
        if n < 1:
            raise ValueError("Cannot draw batches from an empty set of images.")
        self.n, self.generator = n, generator
        self._order: Iterator[int] = iter(())

    def take(self, k: int) -> torch.Tensor:
        out = []
        while len(out) < k:
            try:
                out.append(next(self._order))
            except StopIteration:
                self._order = iter(torch.randperm(self.n, generator=self.generator).tolist())
        return torch.tensor(out, dtype=torch.long)
