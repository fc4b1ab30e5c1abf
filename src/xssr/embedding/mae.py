"""The paper's embedder: a convolutional masked autoencoder trained on the source images (§3.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.config import PretrainConfig
from xssr.data import ImageRecord
from xssr.embedding.base import Batches


class MAEEmbedder:
    """ConvMAE settings come from the ``[pretrain]`` section; the embedding is the pooled bottleneck."""

    name = "mae"
    learns = True
    checkpoint = "mae.pt"
    per_image = True  # a row depends on its image alone: torchrun may split the images

    def __init__(self, config: PretrainConfig):
        self.config = config

    def settings(self) -> dict[str, Any]:
        from xssr.config import RunConfig, fingerprint_settings

        # The key policy's view, so a setting added to [pretrain] at its default keeps cached MAEs.
        return fingerprint_settings(RunConfig(pretrain=self.config))["pretrain"]

    def check(self, records) -> None:
        pass  # it reads only the images, which the input check has opened already

    def fit(self, images: np.ndarray, *, seed: int, device, progress=None) -> tuple[Any, dict[str, Any]]:
        from xssr.train import train_mae

        model, history = train_mae(images, self.config, seed=seed, device=device, progress=progress)
        return model, {"widths": list(self.config.widths), "final_loss": history.epoch_loss[-1],
                       "images_per_second": round(history.samples_per_second, 2), "precision": history.precision,
                       "history": [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)]}

    def save(self, model: Any, path: Path) -> None:
        from xssr.train.checkpoint import save_state

        save_state(path, model.state_dict())

    def embed(self, group: str, records: Sequence[ImageRecord], batches: Batches, *, checkpoint: Path | None,
              channels: int, device) -> np.ndarray:
        import torch

        from xssr.train import embed_batches, load_mae

        model = load_mae(torch.load(checkpoint, map_location="cpu", weights_only=True), channels, self.config.widths)
        return embed_batches(model, batches(), device=device, precision=self.config.precision)
