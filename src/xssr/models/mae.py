"""Convolutional masked autoencoder (XSSR §3.1).

The paper swaps MAE's ViT for a small CNN: four stride-2 convolutional blocks encode the
image, global average pooling of the last feature map is the embedding, and a mirrored
decoder reconstructs the whole image from a copy whose random square patches were blanked
out in pixel space.
"""

from __future__ import annotations

import torch
from torch import nn


def _down_block(in_ch: int, out_ch: int) -> nn.Sequential:
    # The stride-2 conv halves the resolution; the second conv widens the receptive field
    # at the new scale so each block sees more context than a single strided conv would.
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
    )


def _up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
    )


class ConvMAE(nn.Module):
    """Encoder of four stride-2 blocks, GAP embedding, mirrored decoder.

    Parameters
    ----------
    in_channels : int
        1 for grayscale, 3 for RGB.
    widths : tuple of 4 ints
        Channels of the encoder blocks; the last one is the embedding dimension.

    Input images must have a side divisible by 16 (four halvings).
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"The 'widths' parameter must have 4 entries (one per stride-2 block). Got {widths!r}.")
        self.in_channels = in_channels
        self.widths = tuple(widths)
        chans = (in_channels, *widths)
        self.encoder = nn.Sequential(*[_down_block(chans[i], chans[i + 1]) for i in range(4)])
        rev = widths[::-1]
        # The last upsampling maps straight to pixels: a 3x3 conv at full resolution would
        # cost about as much as the rest of the network together for little gain in the
        # embedding, which is all the decoder is for.
        self.decoder = nn.Sequential(
            *[_up_block(rev[i], rev[i + 1]) for i in range(3)],
            nn.ConvTranspose2d(rev[3], in_channels, 2, stride=2),
        )

    @property
    def embedding_dim(self) -> int:
        return self.widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct (N, C, H, W) images from (possibly masked) (N, C, H, W) input."""
        return self.decoder(self.encoder(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, embedding_dim) GAP embeddings (Eq. 1)."""
        return self.encoder(x).mean(dim=(2, 3))


def random_patch_mask(
    shape: tuple[int, int, int, int], patch_size: int, mask_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Boolean (N, 1, H, W) mask, True where a pixel is hidden.

    The image is tiled into ``patch_size`` squares and ``round(mask_ratio * n_patches)``
    of them are hidden per image, as MAE does with tokens, but in pixel space.
    """
    n, _, h, w = shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"Image size {h}x{w} is not divisible by the 'patch_size' {patch_size}.")
    gh, gw = h // patch_size, w // patch_size
    n_patches = gh * gw
    n_hidden = int(round(mask_ratio * n_patches))
    # argsort of uniform noise gives an independent random subset per image in one call.
    order = torch.rand(n, n_patches, generator=generator).argsort(dim=1)
    hidden = torch.zeros(n, n_patches, dtype=torch.bool)
    hidden.scatter_(1, order[:, :n_hidden], True)
    hidden = hidden.view(n, 1, gh, gw)
    return hidden.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)


def masked_reconstruction_loss(
    model: ConvMAE, images: torch.Tensor, hidden: torch.Tensor, loss_on: str = "all"
) -> torch.Tensor:
    """L2 reconstruction loss (Eq. 2) of ``images`` from their masked copy.

    ``loss_on="all"`` scores every pixel, as the paper's Eq. 2 does; ``"masked"`` scores only
    the hidden pixels, as the original MAE does.
    """
    visible = images.masked_fill(hidden, 0.0)
    recon = model(visible).float()
    sq = (recon - images) ** 2
    if loss_on == "all":
        return sq.mean()
    if loss_on == "masked":
        weight = hidden.expand_as(sq).float()
        return (sq * weight).sum() / weight.sum().clamp_min(1.0)
    raise ValueError(f"The 'loss_on' parameter must be 'all' or 'masked'. Got {loss_on!r} instead.")
