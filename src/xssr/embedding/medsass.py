"""MedSASS (seed paper 004): a whole U-Net pretrained to predict each unlabeled image's own Otsu mask.

Unlike the MAE, the pretrained network is the segmentation U-Net itself (``train.channels``,
``train.num_res_units``), so it serves twice: its pooled bottleneck is an embedding for every
selection method, and its weights initialise the U-Net of the ``medsass`` recipes, encoder and
decoder (E+D) or encoder only (E). It always trains on the source and pool images together: the
unlabeled target is what self-supervision can learn from, and ``pretrain.train_on`` stays the
MAE's choice, so a medsass recipe does not change the MAE its selection reads. It trains for
``pretrain.epochs`` passes with ``pretrain.batch_size``, ``lr`` and ``weight_decay``; the
pseudo-masks (``pretrain.pseudo_labels``: Otsu, or the paper's adaptive mean / Gaussian ablations)
and the loss (``pretrain.ssl_loss``: focal-Tversky, or the Tversky and focal ablations) are the
paper's choices by default. Ours: the paper trains a ResNet-50 U-Net at
224 px for 50 epochs; here it is xssr's MONAI U-Net at ``data.image_size``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.config import PretrainConfig, TrainConfig
from xssr.data import ImageRecord
from xssr.embedding.base import Batches


class MedSASSEmbedder:
    name = "medsass"
    learns = True
    checkpoint = "medsass.pt"
    per_image = True  # a row depends on its image alone: torchrun may split the images
    pretrain_groups = ("source", "pool")

    def __init__(self, pretrain: PretrainConfig, train: TrainConfig):
        self.pretrain, self.train = pretrain, train

    def settings(self) -> dict[str, Any]:
        from xssr.config import RunConfig, fingerprint_settings

        keyed = fingerprint_settings(RunConfig(pretrain=self.pretrain, train=self.train))
        mae_only = ("mask_ratio", "patch_size", "widths", "loss_on")
        return {"model": self.name, **{k: v for k, v in keyed["pretrain"].items() if k not in mae_only + ("train_on",)},
                "unet": {"channels": list(self.train.channels), "num_res_units": self.train.num_res_units}}

    def check(self, records) -> None:
        pass  # it reads only the images, which the input check has opened already

    def fit(self, images: np.ndarray, *, seed: int, device, progress=None) -> tuple[Any, dict[str, Any]]:
        from xssr.train.pseudo_labels import pseudo_masks
        from xssr.train.segment import train_unet

        masks = pseudo_masks(images, self.pretrain.pseudo_labels)
        # One supervised run on the pseudo-masks, with the pretraining schedule and loss.
        config = dataclasses.replace(
            self.train, epochs=self.pretrain.epochs, steps=0, min_steps=0, batch_size=self.pretrain.batch_size,
            lr=self.pretrain.lr, weight_decay=self.pretrain.weight_decay, precision=self.pretrain.precision,
            loss=self.pretrain.ssl_loss, augment="none", lr_schedule="constant")
        model, history = train_unet(images, masks, config, seed=seed, device=device, progress=progress)
        return model, {"final_loss": history.epoch_loss[-1], "images_per_second": round(history.samples_per_second, 2),
                       "precision": history.precision, "pseudo_foreground": round(float(masks.mean()), 4),
                       "history": [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)]}

    def save(self, model: Any, path: Path) -> None:
        from xssr.train.checkpoint import save_state

        save_state(path, model.state_dict())

    def embed(self, group: str, records: Sequence[ImageRecord], batches: Batches, *, checkpoint: Path | None,
              channels: int, device) -> np.ndarray:
        from xssr.embedding.source_unet import pooled_bottleneck

        return pooled_bottleneck(checkpoint, batches, channels=channels, config=self.train, device=device)
