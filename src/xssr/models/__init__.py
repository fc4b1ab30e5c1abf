"""Networks: the convolutional MAE that gives embeddings and the U-Net that segments."""

from xssr.models.mae import ConvMAE, masked_reconstruction_loss, random_patch_mask
from xssr.models.unet import build_unet

__all__ = ["ConvMAE", "build_unet", "masked_reconstruction_loss", "random_patch_mask"]
