"""Segmentation network (XSSR §3.3): MONAI's residual 2-D U-Net with one output logit."""

from __future__ import annotations

from monai.networks.nets import UNet
from torch import nn


def build_unet(
    in_channels: int = 1,
    channels: tuple[int, ...] = (16, 32, 64, 128, 256),
    num_res_units: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """2-D U-Net producing one logit per pixel; input side must be divisible by 2**(len(channels)-1)."""
    if len(channels) < 2:
        raise ValueError(f"The 'channels' parameter needs at least 2 levels. Got {channels!r}.")
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=1,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
        dropout=dropout,
    )


def encoder_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the encoder of a MONAI UNet (each level's down block and the bottom).

    MONAI nests the network as Sequential(down, SkipConnection(submodule), up) per level; the
    decoder is every ``up`` block. Used to transfer an encoder alone (MedSASS's "E" transfer).
    """
    prefixes, layer, name = [], model.model, "model"
    while isinstance(layer, nn.Sequential) and len(layer) == 3 and hasattr(layer[1], "submodule"):
        prefixes.append(f"{name}.0.")
        layer, name = layer[1].submodule, f"{name}.1.submodule"
    prefixes.append(f"{name}.")
    return tuple(prefixes)
