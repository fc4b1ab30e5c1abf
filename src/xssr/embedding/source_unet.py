"""Embeddings from the source-trained U-Net: its pooled bottleneck (issue 12's first signal).

The MAE learns to redraw images; this U-Net learned the task on the labeled source, so its
deepest features describe what matters for segmenting, and "dense in the target, sparse in the
source" in this space is XSSR's novelty measured by a model that knows the anatomy. The model is
the pipeline's ``source-train`` stage (the user's ``train.source_weights``, or trained once on the
source images and masks and shared with the training recipes); nothing is pretrained here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.config import TrainConfig
from xssr.data import ImageRecord
from xssr.embedding.base import Batches


def bottleneck(unet) -> Any:
    """The deepest block of a MONAI UNet (its nested Sequential(down, SkipConnection, up) layout)."""
    layer = unet.model
    while hasattr(layer, "__len__") and len(layer) == 3 and hasattr(layer[1], "submodule"):
        layer = layer[1].submodule
    return layer


class SourceUNetEmbedder:
    """The global average of the source U-Net's bottleneck (train.channels[-1] features)."""

    name = "source-unet"
    learns = False  # no pretrain stage: its model is the source-train stage
    uses_source_model = True
    checkpoint = "unet.pt"
    per_image = True  # a row depends on its image alone: torchrun may split the images

    def __init__(self, config: TrainConfig):
        self.config = config

    def settings(self) -> dict[str, Any]:
        # The fitted model's fingerprint identifies the embedding; these only say how it is read.
        return {"model": self.name, "precision": self.config.precision}

    def check(self, records) -> None:
        pass  # it reads only the images; the source model is checked with the recipe's inputs

    def embed(self, group: str, records: Sequence[ImageRecord], batches: Batches, *, checkpoint: Path | None,
              channels: int, device) -> np.ndarray:
        return pooled_bottleneck(checkpoint, batches, channels=channels, config=self.config, device=device)


def pooled_bottleneck(checkpoint: Path, batches: Batches, *, channels: int, config: TrainConfig, device) -> np.ndarray:
    """(N, train.channels[-1]) spatial means of the bottleneck of the U-Net in ``checkpoint``."""
    import torch

    from xssr.train import load_unet
    from xssr.train.loop import autocast_context

    model = load_unet(torch.load(checkpoint, map_location="cpu", weights_only=True), channels, config)
    model.to(device).eval()
    pooled: list[torch.Tensor] = []
    hook = bottleneck(model).register_forward_hook(
        lambda module, inputs, output: pooled.append(output.float().mean(dim=(2, 3)).cpu()))
    try:
        with torch.no_grad():
            for batch in batches():
                with autocast_context(device, config.precision):
                    model(torch.from_numpy(batch).to(device))
    finally:
        hook.remove()
    return torch.cat(pooled).numpy().astype(np.float32) if pooled else np.zeros((0, config.channels[-1]), np.float32)
