"""Mean teacher (Tarvainen & Valpola 2017; seed paper 002's label-efficient adaptation).

A student U-Net learns from the annotated target images (the supervised loss) and, on the
unlabeled pool, to agree with a teacher whose weights are an exponential moving average of the
student's (torch's AveragedModel). The teacher sees each unlabeled image as it is, the student
a perturbed copy (intensity, noise and blur: pixels stay in place, so the two predictions can
be compared pixel for pixel). The consistency weight ramps up as exp(-5 (1 - t)^2) over the
first ``train.consistency_rampup`` of the steps, as in the original paper, because an early
teacher is no better than chance. Registered twice: "mean-teacher" starts both networks from
the source-trained U-Net, "mean-teacher-scratch" from random weights (for teams without source
labels or a source model).

``train.pseudo_threshold`` > 0.5 replaces the squared difference by FixMatch-style
pseudo-labels: the student is trained with BCE towards the teacher's binarised prediction on
the pixels where the teacher is at least that confident. The teacher is the model returned:
it is the smoother of the two.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from xssr.config import TrainConfig
from xssr.train.augment import build_augment, build_perturbation
from xssr.train.loop import train_steps
from xssr.train.recipes.base import IndexStream, TrainingData, step_count
from xssr.train.segment import new_unet, segmentation_loss


def rampup(step: int, steps: int, share: float) -> float:
    """0 -> 1 sigmoid-shaped over the first ``share`` of ``steps``, then 1."""
    length = share * steps
    if length <= 0 or step >= length:
        return 1.0
    t = step / length
    return math.exp(-5.0 * (1.0 - t) ** 2)


def consistency_loss(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor,
                     pseudo_threshold: float) -> torch.Tensor:
    if pseudo_threshold <= 0:
        return F.mse_loss(torch.sigmoid(student_logits), teacher_probabilities)
    confident = ((teacher_probabilities >= pseudo_threshold) | (teacher_probabilities <= 1 - pseudo_threshold)).float()
    per_pixel = F.binary_cross_entropy_with_logits(student_logits, (teacher_probabilities >= 0.5).float(),
                                                   reduction="none")
    return (per_pixel * confident).sum() / confident.sum().clamp_min(1.0)


def mean_teacher(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """Student and teacher start from the source-trained U-Net."""
    data.require("source_state")
    return _mean_teacher(data, config, data.source_state, seed=seed, device=device, progress=progress)


def mean_teacher_from_scratch(data: TrainingData, config: TrainConfig, *, seed, device, progress=None):
    """Student and teacher start from random weights: for teams with no source labels or model."""
    return _mean_teacher(data, config, None, seed=seed, device=device, progress=progress)


def _mean_teacher(data: TrainingData, config: TrainConfig, init_state: dict | None, *, seed, device, progress):
    data.require("images", "masks", "pool_images")
    steps = step_count(config, len(data.images))
    generator = torch.Generator().manual_seed(seed)
    labeled = [torch.from_numpy(data.images), torch.from_numpy(data.masks.astype(np.float32))]
    pool = torch.from_numpy(data.pool_images)
    labeled_stream, pool_stream = IndexStream(len(data.images), generator), IndexStream(len(pool), generator)
    augment = build_augment(config.augment, data.images.shape[-1], seed)
    perturb = build_perturbation(seed + 1)

    def draw(step):
        i, u = labeled_stream.take(config.batch_size), pool_stream.take(config.batch_size)
        batch = [labeled[0][i], labeled[1][i]]
        if augment is not None:
            batch = augment(batch)
        unlabeled = pool[u]
        weight = config.consistency_weight * rampup(step, steps, config.consistency_rampup)
        return [*batch, unlabeled, perturb(unlabeled), torch.tensor(weight)]

    torch.manual_seed(seed)
    student = new_unet(data.channels, config, init_state).to(device)
    teacher = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    teacher.requires_grad_(False)
    teacher.eval()  # its targets must not depend on the batch or on dropout (none today: instance norm)
    supervised_loss = segmentation_loss(config.loss)

    def loss_fn(net, batch, g):
        images, masks, unlabeled, perturbed, weight = batch
        n = len(images)
        # One forward for both: the U-Net's instance norm treats every image on its own.
        logits = net(torch.cat([images, perturbed])).float()
        with torch.no_grad():
            teacher_probabilities = torch.sigmoid(teacher(unlabeled).float())
        return supervised_loss(logits[:n], masks) + weight * consistency_loss(
            logits[n:], teacher_probabilities, config.pseudo_threshold)

    history = train_steps(
        student, draw, loss_fn, steps=steps, lr=config.lr, weight_decay=config.weight_decay, seed=seed,
        device=device, precision=config.precision, lr_schedule=config.lr_schedule,
        after_step=lambda step: teacher.update_parameters(student), image_tensors=(0, 2), progress=progress)
    return teacher.module.eval(), history
