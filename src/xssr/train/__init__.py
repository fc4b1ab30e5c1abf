"""Training: the MAE that embeds images and the U-Net that segments them (torch lives here).

Names are imported on first use, so that code which only reads the recipe registry (the
configuration check, say) does not import torch.
"""

import importlib

_WHERE = {
    "TrainHistory": "loop", "train_minibatches": "loop",
    "embed_batches": "pretrain", "load_mae": "pretrain", "train_mae": "pretrain",
    "load_unet": "segment", "predict_probabilities": "segment", "train_unet": "segment", "segment_images": "segment",
    "keep_largest_components": "segment", "read_source_weights": "segment",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'xssr.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xssr.train.{_WHERE[name]}"), name)
