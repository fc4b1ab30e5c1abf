import logging

import numpy as np
import pytest
import torch

from xssr.config import PAPER_TRAINING, PretrainConfig, TrainConfig
from xssr.train import embed_batches, predict_probabilities, train_mae, train_unet
from xssr.train.loop import train_minibatches

CPU = torch.device("cpu")


def _toy_segmentation(n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, 1, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, size - 12, 2)
        masks[i, 0, r : r + 8, c : c + 8] = 1
    images += masks
    return images, masks


def test_unet_learns_a_bright_square():
    images, masks = _toy_segmentation()
    # The paper's training: what the loop does with no ingredient switched on.
    cfg = TrainConfig(epochs=50, steps=0, batch_size=2, lr=3e-3, channels=(8, 16, 32), num_res_units=1, precision="fp32",
                      **PAPER_TRAINING)
    model, history = train_unet(images, masks, cfg, seed=0, device=CPU)
    assert history.epoch_loss[-1] < 0.5 * history.epoch_loss[0]
    prob = predict_probabilities(model, images, device=CPU, precision="fp32")
    dice = (2 * ((prob >= 0.5) & (masks == 1)).sum()) / ((prob >= 0.5).sum() + masks.sum())
    assert dice > 0.8


def test_training_is_deterministic_for_a_seed():
    images, masks = _toy_segmentation(n=4)
    cfg = TrainConfig(epochs=2, steps=0, batch_size=2, channels=(4, 8), num_res_units=0, precision="fp32")
    a, _ = train_unet(images, masks, cfg, seed=3, device=CPU)
    b, _ = train_unet(images, masks, cfg, seed=3, device=CPU)
    c, _ = train_unet(images, masks, cfg, seed=4, device=CPU)
    pa, pb, pc = (predict_probabilities(m, images, device=CPU, precision="fp32") for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_min_steps_extends_short_runs():
    model = torch.nn.Linear(2, 1)
    x = torch.rand(5, 2)
    history = train_minibatches(model, [x], lambda m, b, g: m(b[0]).pow(2).mean(), epochs=1, batch_size=2,
                                lr=1e-2, weight_decay=0, seed=0, device=CPU, precision="fp32", min_steps=10)
    # 3 steps per epoch -> 4 epochs are needed for 10 steps
    assert history.steps == 12 and len(history.epoch_loss) == 4


def test_mae_reconstruction_improves_and_embeds():
    rng = np.random.default_rng(0)
    images = rng.random((16, 1, 32, 32)).astype(np.float32)
    cfg = PretrainConfig(epochs=8, batch_size=8, widths=(4, 8, 8, 16), patch_size=8, lr=3e-3)
    model, history = train_mae(images, cfg, seed=0, device=CPU)
    assert history.epoch_loss[-1] < history.epoch_loss[0]
    emb = embed_batches(model, [images[:5], images[5:]], device=CPU, precision="fp32")
    assert emb.shape == (16, 16) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_empty_training_set_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        train_minibatches(torch.nn.Linear(1, 1), [torch.zeros(0, 1)], lambda m, b, g: m(b[0]).sum(), epochs=1,
                          batch_size=1, lr=1e-3, weight_decay=0, seed=0, device=CPU)


def test_fixed_steps_train_exactly_that_many_steps():
    model = torch.nn.Linear(2, 1)
    x = torch.rand(5, 2)
    history = train_minibatches(model, [x], lambda m, b, g: m(b[0]).pow(2).mean(), epochs=1, batch_size=2,
                                lr=1e-2, weight_decay=0, seed=0, device=CPU, precision="fp32", min_steps=7,
                                max_steps=7)
    assert history.steps == 7 and len(history.epoch_loss) == 3


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("every, expected", [(60.0, 0), (0.0, 2)])
def test_a_stage_without_a_progress_bar_says_it_is_alive_at_most_once_a_minute(monkeypatch, every, expected):
    from xssr.pipeline import models
    from xssr.pipeline.stage import stage_log

    monkeypatch.setattr(models, "HEARTBEAT_SECONDS", every)
    handler = _Lines()
    stage_log.addHandler(handler)
    level = stage_log.level
    stage_log.setLevel(logging.INFO)
    try:
        update = models.progress_bar(False, "pretrain mae", 3)
        for epoch in (1, 2, 3):
            update(epoch, 3, 0.25)
    finally:
        stage_log.removeHandler(handler)
        stage_log.setLevel(level)
    # the last epoch is the stage's own "done" line's business, never a heartbeat
    assert len(handler.lines) == expected
    if expected:
        assert handler.lines[0].startswith("pretrain mae: 1/3, loss 0.2500")
