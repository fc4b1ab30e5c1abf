"""Training: the MAE that embeds images and the U-Net that segments them (torch lives here)."""

from xssr.train.loop import TrainHistory, train_minibatches
from xssr.train.pretrain import embed_batches, load_mae, train_mae
from xssr.train.segment import load_unet, predict_probabilities, train_unet

__all__ = [
    "TrainHistory", "embed_batches", "load_mae", "load_unet", "predict_probabilities",
    "train_mae", "train_minibatches", "train_unet",
]
