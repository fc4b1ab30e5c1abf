"""One minibatch training loop shared by MAE pretraining and U-Net training.

Data live in memory as tensors (a 5 % annotation budget is tens of images, a source set a
few thousand at 128 px), so batches are plain index slices: no DataLoader workers to fork
on a 2-core machine, and every epoch's order comes from one seeded generator.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from xssr.train import distributed

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Sequence[torch.Tensor], torch.Generator], torch.Tensor]


@dataclass
class TrainHistory:
    """Mean loss per epoch and throughput of one training run."""

    epoch_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    samples_seen: int = 0
    steps: int = 0
    precision: str = ""  # what the arithmetic ran in ("bf16" or "fp32")

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.seconds if self.seconds > 0 else 0.0


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (CUDA with bf16, or a CPU with AVX-512 BF16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:  # oneDNN's own test; private, so a torch without it counts as "no"
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_warned_emulated: set[str] = set()


def resolve_precision(device: torch.device, precision: str) -> str:
    """"auto" -> "bf16" where the hardware has it, else "fp32"; an explicit value is kept.

    On a CPU without native bf16 (AVX2 only), autocast to bf16 is emulated and about ten times
    slower than fp32 (benchmarks/precision_speed.py; docs/recipes.md has the figures). Explicit "bf16" is honoured (committed
    benchmark runs were made with it), with a warning.
    """
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.type == "cpu" and "cpu" not in _warned_emulated and not native_bf16(device):
        _warned_emulated.add("cpu")
        logger.warning("precision bf16 on a CPU without native bfloat16 is emulated and several times slower than "
                       "fp32; set precision = auto (or fp32) unless you need to reproduce bf16 results")
    return precision


def autocast_context(device: torch.device, precision: str):
    """bfloat16 autocast where asked for ("auto": where the hardware has it); it roughly doubles
    conv throughput on CPUs with AVX-512 BF16."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"The 'precision' parameter must be 'auto', 'bf16' or 'fp32'. Got {precision!r} instead.")
    if resolve_precision(device, precision) == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_minibatches(
    model: nn.Module,
    tensors: Sequence[torch.Tensor],
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
    precision: str = "auto",
    min_steps: int = 0,
    max_steps: int | None = None,
    augment: Callable[[Sequence[torch.Tensor], torch.Generator], Sequence[torch.Tensor]] | None = None,
    lr_schedule: str = "constant",
    progress: Callable[[int, int, float], None] | None = None,
    distribute: bool = False,
) -> TrainHistory:
    """Train ``model`` with AdamW on in-memory ``tensors`` (first dim = samples).

    ``epochs`` full passes are made, extended when needed so that at least ``min_steps``
    optimiser steps happen: with a handful of annotated images 100 epochs can be only a few
    hundred steps; ``max_steps`` stops training early (min_steps = max_steps = S trains exactly
    S steps whatever the set size). ``progress(epoch, n_epochs, loss)`` is called after every epoch.
    Returns the loss history; the model is left in eval mode on ``device``.

    ``distribute``: under torchrun, train a DistributedDataParallel replica on this process's
    share of every batch (xssr.train.distributed), so that the processes together make the steps
    one process makes. Every process draws the same global batch, and ``augment`` sees it whole;
    the loss sees only the share, so it must be a mean over samples, call the model itself (not
    another of its methods: DDP syncs through ``forward``) and draw nothing random (draw it in
    ``augment``, for the whole batch, as the MAE's patch mask is). Without torchrun it changes nothing.
    """
    n = len(tensors[0])
    if n == 0:
        raise ValueError("Cannot train on an empty set of images.")
    model.to(device).train()
    net = distributed.data_parallel(model, device) if distribute and distributed.active() else model
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(n / batch_size)
    n_epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    total_steps = n_epochs * steps_per_epoch if max_steps is None else min(max_steps, n_epochs * steps_per_epoch)
    scheduler = learning_rate_schedule(optimiser, lr_schedule, total_steps)
    history = TrainHistory(precision=resolve_precision(device, precision))
    start = time.perf_counter()
    for epoch in range(n_epochs):
        order = torch.randperm(n, generator=generator)
        total, count = 0.0, 0
        for first in range(0, n, batch_size):
            if max_steps is not None and history.steps >= max_steps:
                break
            idx = order[first : first + batch_size]
            batch = [t[idx] for t in tensors]
            if augment is not None:
                batch = augment(batch, generator)
            weight = None
            if net is not model:
                batch, weight = distributed.batch_share(batch)
            batch = [t.to(device, non_blocking=True) for t in batch]
            loss = _optimiser_step(net, batch, loss_fn, generator, optimiser, scheduler, device, precision, weight)
            # An empty share's loss is NaN (a mean of nothing) with weight 0: it adds nothing.
            total += (float(loss.detach()) if weight != 0 else 0.0) * len(idx)
            count += len(idx)
            history.steps += 1
        if count == 0:
            break
        if net is not model:  # the weighted losses of all shares add up to W times the batch mean
            total = distributed.sum_over_processes(total) / distributed.world_size()
        history.epoch_loss.append(total / count)
        history.samples_seen += count
        if progress is not None:
            progress(epoch + 1, n_epochs, history.epoch_loss[-1])
        logger.info("epoch %d/%d loss %.5f", epoch + 1, n_epochs, history.epoch_loss[-1])
    history.seconds = time.perf_counter() - start
    if net is not model:
        model.load_state_dict(net.module.state_dict())  # the same weights on every process
    model.eval()
    return history


def _optimiser_step(net, batch, loss_fn: LossFn, generator, optimiser, scheduler, device, precision: str,
                    weight: float | None = None) -> torch.Tensor:
    """One AdamW step on ``batch`` (its loss times ``weight``, a process's share under torchrun);
    returns the detached loss."""
    with autocast_context(device, precision):
        loss = loss_fn(net, batch, generator)
        if weight is not None:
            loss = loss * weight
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach()


def learning_rate_schedule(optimiser: torch.optim.Optimizer, name: str, total_steps: int):
    """None for a constant rate; "cosine" anneals it to 0 over ``total_steps`` (stepped once per batch)."""
    if name == "constant":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, total_steps))
    raise ValueError(f"The 'lr_schedule' parameter must be 'constant' or 'cosine'. Got {name!r} instead.")


def train_steps(
    model: nn.Module,
    draw: Callable[[int], Sequence[torch.Tensor]],
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
    precision: str = "auto",
    lr_schedule: str = "constant",
    after_step: Callable[[int], None] | None = None,
    image_tensors: Sequence[int] = (0,),
    log_every: int = 50,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainHistory:
    """Train ``model`` for exactly ``steps`` AdamW steps on batches from ``draw(step)``.

    For recipes that mix several streams in one batch (source and target images, labeled and
    unlabeled ones), where an "epoch" of one stream means nothing. ``after_step(step)`` runs
    after every optimiser step (the mean teacher updates its EMA there); ``image_tensors`` says
    which tensors of a batch are images, for the throughput figure. The history holds
    the mean loss of every ``log_every`` steps; the model is left in eval mode on ``device``.
    Under torchrun every process runs all of it: these recipes are not split (docs/cluster.md).
    """
    if steps < 1:
        raise ValueError(f"The 'steps' parameter must be >= 1. Got {steps} instead.")
    model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = learning_rate_schedule(optimiser, lr_schedule, steps)
    generator = torch.Generator().manual_seed(seed)
    history = TrainHistory(precision=resolve_precision(device, precision))
    start = time.perf_counter()
    total, count = 0.0, 0
    for step in range(steps):
        batch = [t.to(device, non_blocking=True) for t in draw(step)]
        loss = _optimiser_step(model, batch, loss_fn, generator, optimiser, scheduler, device, precision)
        if after_step is not None:
            after_step(step)
        total += float(loss.detach())
        count += 1
        history.samples_seen += sum(len(batch[i]) for i in image_tensors)
        history.steps += 1
        if count == log_every or step == steps - 1:
            history.epoch_loss.append(total / count)
            total, count = 0.0, 0
            if progress is not None:
                progress(step + 1, steps, history.epoch_loss[-1])
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


@torch.no_grad()
def map_batches(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
) -> torch.Tensor:
    """Apply ``fn`` to (N, ...) ``images`` in batches on ``device``; results come back as float32 on CPU."""
    outputs = []
    for first in range(0, len(images), batch_size):
        batch = images[first : first + batch_size].to(device)
        with autocast_context(device, precision):
            outputs.append(fn(batch).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)
