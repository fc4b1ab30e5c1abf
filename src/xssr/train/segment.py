"""Stage 3: train the U-Net on annotated images and predict masks (§3.3, §4.4).

The recipes (xssr.train.recipes) decide *which* images and weights a U-Net is trained from;
this module holds what they share: one supervised training run with the configured
ingredients (augmentation, loss, learning-rate schedule), prediction with optional flip
test-time augmentation, and keeping the largest connected components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from xssr.config import TrainConfig
from xssr.models import build_unet
from xssr.train.augment import build_augment
from xssr.train.loop import TrainHistory, map_batches, train_minibatches


LOSSES = ("bce", "dice-bce", "focal-tversky", "tversky", "focal")


def segmentation_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(logits, masks)``: "bce" (the paper's Eq. 10), "dice-bce" (MONAI's Dice + BCE, equal
    weights), or for MedSASS pretraining "focal-tversky" (Abraham & Khan, 2019: the Tversky loss
    with alpha 0.3 on false positives and 0.7 on false negatives, raised to 0.75), "tversky" and
    "focal" (gamma 2), the paper's loss ablation."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits
    if name == "dice-bce":
        from monai.losses import DiceCELoss

        # With one output channel and sigmoid=True MONAI uses BCE-with-logits for the CE part.
        return DiceCELoss(sigmoid=True)
    if name in ("tversky", "focal-tversky"):
        from monai.losses import TverskyLoss

        tversky = TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7, reduction="none")
        exponent = 0.75 if name == "focal-tversky" else 1.0
        # MONAI has the Tversky index; the focal exponent over each image's loss is applied here.
        return lambda logits, masks: tversky(logits, masks).clamp_min(0).pow(exponent).mean()
    if name == "focal":
        from monai.losses import FocalLoss

        return FocalLoss(gamma=2.0, use_softmax=False)
    raise ValueError(f"The 'loss' parameter must be one of {', '.join(LOSSES)}. Got {name!r} instead.")


def new_unet(in_channels: int, config: TrainConfig, init_state: dict | None = None) -> torch.nn.Module:
    model = build_unet(in_channels, config.channels, config.num_res_units)
    if init_state is not None:
        model.load_state_dict(init_state)
    return model


def train_unet(
    images: np.ndarray,
    masks: np.ndarray,
    config: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    init_state: dict | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[torch.nn.Module, TrainHistory]:
    """Train a U-Net with AdamW on ``images`` and ``masks``, from ``init_state`` or from scratch.

    images : (N, C, S, S) float32; masks : (N, 1, S, S) in {0, 1}.
    The same ``seed`` gives every selection method the same initial weights and batch
    order, so methods differ only in which images they were given. At the defaults (BCE, no
    augmentation, constant rate) this is the paper's recipe, computed exactly as before the
    ingredients existed, so committed runs reproduce.
    """
    if len(images) != len(masks):
        raise ValueError(f"Got {len(images)} images but {len(masks)} masks.")
    torch.manual_seed(seed)
    model = new_unet(images.shape[1], config, init_state)
    loss = segmentation_loss(config.loss)

    def loss_fn(net, batch, generator):
        return loss(net(batch[0]).float(), batch[1])

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
        augment=build_augment(config.augment, images.shape[-1], seed),
        lr_schedule=config.lr_schedule,
        progress=progress,
        distribute=True,  # BCE, Dice and Tversky are means over images; MONAI's U-Net uses instance norm
    )
    return model, history


def predict_probabilities(
    model: torch.nn.Module, images: np.ndarray, *, device: torch.device, precision: str = "auto",
    batch_size: int = 16, tta: bool = False,
) -> np.ndarray:
    """(N, C, S, S) float32 images -> (N, 1, S, S) float32 foreground probabilities.

    ``tta`` averages the probabilities of each image and of its left-right mirror (flipped back).
    """
    model.to(device).eval()

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(model(batch).float())
        if tta:
            p = 0.5 * (p + torch.sigmoid(model(batch.flip(-1)).float()).flip(-1))
        return p

    return map_batches(probabilities, torch.from_numpy(images), batch_size=batch_size, device=device,
                       precision=precision).numpy()


def keep_largest_components(binary: np.ndarray, n: int) -> np.ndarray:
    """Keep the ``n`` largest 8-connected foreground components of each (N, 1, S, S) mask (0 = keep all).

    Two for lungs and one for an optic disc remove the specks a small training set leaves.
    """
    if n <= 0:
        return binary
    from scipy import ndimage

    out = np.zeros_like(binary)
    for i, mask in enumerate(binary[:, 0]):
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel())[1:]
        if len(sizes) == 0:
            continue
        keep = np.argsort(sizes)[::-1][:n] + 1
        out[i, 0] = np.isin(labels, keep)
    return out


def segment_images(model: torch.nn.Module, images: np.ndarray, config: TrainConfig, *, device: torch.device) -> np.ndarray:
    """Binary (N, 1, S, S) uint8 masks: probabilities (with TTA if asked), threshold, components."""
    probabilities = predict_probabilities(model, images, device=device, precision=config.precision, tta=config.tta)
    return keep_largest_components((probabilities >= config.threshold).astype(np.uint8), config.keep_components)


def load_unet(state: dict, in_channels: int, config: TrainConfig) -> torch.nn.Module:
    """The trained segmenter of a state dict: a U-Net, or the fusion of two U-Nets."""
    from xssr.models.fusion import FusionNet

    if FusionNet.holds(state):
        model = FusionNet(new_unet(in_channels, config), new_unet(in_channels, config))
    else:
        model = new_unet(in_channels, config)
    model.load_state_dict(state)
    return model.eval()


def read_source_weights(path: str | Path, in_channels: int, config: TrainConfig) -> dict:
    """The state dict of a user's source U-Net, read as data (``weights_only``) and checked
    against the configured architecture; problems are ``ValueError("path: reason")``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: train.source_weights names no file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a file that is not a state dict
        raise ValueError(f"{path}: not a PyTorch state dict that loads with weights_only=True "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps its weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (names -> tensors), got {type(state).__name__}")
    try:
        new_unet(in_channels, config, state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ValueError(f"{path}: does not fit the configured U-Net (train.channels {list(config.channels)}, "
                         f"train.num_res_units {config.num_res_units}, {in_channels} input channel(s)): "
                         f"{first}") from None
    return state
