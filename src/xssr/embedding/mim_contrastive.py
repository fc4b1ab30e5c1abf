"""Target-informed pretraining (seed paper 003): masked image modelling plus a contrastive loss,
on the source AND the unlabeled target pool.

Paper 003 gives only the recipe's outline (MIM + contrastive learning on unlabeled target and
source images); the details are ours and follow the two methods it combines:

- the network is xssr's ConvMAE (``pretrain.widths``), so the MIM half is exactly the MAE's
  masked reconstruction (``pretrain.mask_ratio``, ``patch_size``, ``loss_on``);
- the contrastive half is SimCLR's NT-Xent (temperature 0.2) between the pooled encodings of
  two random views of each image, through a two-layer projection head that is dropped after
  training; the views are made with MONAI transforms (torchvision does not import here): a
  random affine (scale 0.8-1.2, rotation within 10 degrees, shift within 8 %), a left-right flip,
  and gamma / intensity / noise / blur changes;
- the two losses are added with equal weight; the embedding is the pooled encoder output;
- it always trains on source + pool (that is what makes it "target-informed").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xssr.embedding.mae import MAEEmbedder

TEMPERATURE = 0.2


def nt_xent(a, b, temperature: float = TEMPERATURE):
    """SimCLR's normalised-temperature cross-entropy for two (B, D) batches of paired views."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    similarity = z @ z.t() / temperature
    n = len(a)
    similarity.fill_diagonal_(float("-inf"))  # an image is not its own positive
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, targets)


def _views(image_size: int, seed: int):
    from monai import transforms as mt

    from xssr.train.augment import _plain

    transform = mt.Compose([
        mt.RandFlip(prob=0.5, spatial_axis=1),
        mt.RandAffine(prob=1.0, rotate_range=math.radians(10), scale_range=0.2, translate_range=0.08 * image_size,
                      padding_mode="zeros"),
        mt.RandAdjustContrast(prob=0.5, gamma=(0.7, 1.5)),
        mt.RandScaleIntensity(prob=0.5, factors=0.2),
        mt.RandGaussianNoise(prob=0.3, std=0.03),
        mt.RandGaussianSmooth(prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
    ])
    transform.set_random_state(seed=seed)

    def view(images):
        import torch

        return torch.stack([_plain(transform(image.float())) for image in images]).to(images.dtype)

    return view


class MIMContrastiveEmbedder(MAEEmbedder):
    """The MAE's network, saving and embedding, trained with the contrastive loss added."""

    name = "mim-contrastive"
    checkpoint = "mim_contrastive.pt"
    pretrain_groups = ("source", "pool")  # target-informed: the unlabeled pool always takes part

    def settings(self) -> dict[str, Any]:
        from xssr.config import RunConfig, fingerprint_settings

        keyed = fingerprint_settings(RunConfig(pretrain=self.config))["pretrain"]
        return {"model": self.name, "temperature": TEMPERATURE,
                **{k: v for k, v in keyed.items() if k not in ("train_on", "pseudo_labels", "ssl_loss")}}

    def fit(self, images: np.ndarray, *, seed: int, device, progress=None) -> tuple[Any, dict[str, Any]]:
        import torch
        from torch import nn

        from xssr.models import ConvMAE, masked_reconstruction_loss, random_patch_mask
        from xssr.train.loop import train_minibatches

        c = self.config
        torch.manual_seed(seed)
        mae = ConvMAE(in_channels=images.shape[1], widths=c.widths)
        width = mae.embedding_dim
        model = nn.ModuleDict({"mae": mae, "head": nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                                                  nn.Linear(width, 128))})
        view = _views(images.shape[-1], seed)

        def loss_fn(net, batch, generator):
            x = batch[0]
            first, second = view(x.cpu()).to(x.device), view(x.cpu()).to(x.device)
            hidden = random_patch_mask(first.shape, c.patch_size, c.mask_ratio, generator).to(x.device)
            reconstruction = masked_reconstruction_loss(net["mae"], first, hidden, c.loss_on)
            contrast = nt_xent(net["head"](net["mae"].embed(first).float()), net["head"](net["mae"].embed(second).float()))
            return reconstruction + contrast

        # Not distribute=True: NT-Xent compares each image with every other one in the batch and the
        # views are drawn inside the loss, so a share alone would give another model; under
        # torchrun every process trains it whole.
        history = train_minibatches(model, [torch.from_numpy(images)], loss_fn, epochs=c.epochs,
                                    batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay, seed=seed,
                                    device=device, precision=c.precision, progress=progress)
        return mae.eval(), {"widths": list(c.widths), "final_loss": history.epoch_loss[-1],
                            "images_per_second": round(history.samples_per_second, 2), "precision": history.precision,
                            "history": [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)]}
