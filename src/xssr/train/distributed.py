"""Several processes at once under ``torchrun``: DistributedDataParallel training, split embedding.

torchrun starts the same command once per process and tells each one who it is through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Without
those variables, or with ``WORLD_SIZE=1``, every function here does nothing and xssr runs as
one process, exactly as before. docs/cluster.md says how to launch it and what is split.

What the processes share:

- training (:func:`xssr.train.loop.train_minibatches` with ``distribute=True``): every process
  draws the same global batch from the same seeded stream and trains a DDP replica on its
  contiguous share (:func:`batch_share`), so N processes make the very steps one process makes;
- embedding: each process embeds a contiguous share of the images, rank 0 gathers the rows;
- everything else (the stage decisions, selection, evaluation, writing files) is rank 0's.

Process-group helpers read the environment first and import torch only when they act, so the
CLI and the pipeline can ask ``is_main()`` without importing torch.
"""

from __future__ import annotations

import atexit
import functools
import os
from datetime import timedelta
from typing import Any, Sequence

#: How long a process waits for the others at a collective. Rank 0 alone selects, evaluates and
#: may wait for a shared stage's lock held by another sweep, while the others wait at a barrier:
#: torch's 30-minute default would end long runs that are not stuck.
TIMEOUT = timedelta(hours=6)


def world_size() -> int:
    """Number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def active() -> bool:
    """Whether this process is one of several started by torchrun."""
    return world_size() > 1


def rank() -> int:
    """This process's place among all of them, 0 .. world_size() - 1 (0 without torchrun)."""
    return int(os.environ.get("RANK", "0") or 0) if active() else 0


def local_rank() -> int:
    """This process's place among those on its machine: the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if active() else 0


def is_main() -> bool:
    """Whether this process speaks and writes for all (rank 0, or the only process)."""
    return rank() == 0


def init() -> None:
    """Join the process group once (no-op for one process).

    With CUDA, CUDA tensors travel by NCCL and CPU tensors (stage decisions, gathered embeddings,
    loss sums) by gloo in the same group; without CUDA everything goes by gloo.
    """
    if not active():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "gloo"
    if local_rank() < torch.cuda.device_count():  # more processes than GPUs can only be a CPU run
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, timeout=TIMEOUT)
    atexit.register(_leave)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def device(resolved):
    """Under torchrun, a CUDA device given without an index is this process's own GPU (LOCAL_RANK)."""
    import torch

    if active() and resolved.type == "cuda" and resolved.index is None:
        if local_rank() >= torch.cuda.device_count():
            raise ValueError(f"torchrun started process {local_rank()} on this machine, but PyTorch sees "
                             f"{torch.cuda.device_count()} GPU(s) here; give --nproc_per_node at most that, "
                             f"or run with --device cpu.")
        return torch.device("cuda", local_rank())
    return resolved


def agree(value: Any) -> Any:
    """Rank 0's ``value`` on every process.

    For decisions such as "is this stage finished?": a process that skipped a stage the others
    train would leave them waiting for it for ever.
    """
    if not active():
        return value
    import torch.distributed as dist

    init()
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process got here (after rank 0 wrote what the others read next)."""
    if not active():
        return
    import torch.distributed as dist

    init()
    dist.barrier()


def gather(part: Any) -> list[Any] | None:
    """Every process's ``part`` in rank order on rank 0; None on the others (and ``[part]`` alone)."""
    if not active():
        return [part]
    import torch.distributed as dist

    init()
    parts = [None] * world_size() if is_main() else None
    dist.gather_object(part, parts, dst=0)
    return parts


def share(n: int) -> slice:
    """This process's contiguous share of ``n`` items in rank order; sizes differ by at most one
    and the shares of ranks 0, 1, ... put end to end are ``range(n)``."""
    size, extra = divmod(n, world_size())
    r = rank()
    start = r * size + min(r, extra)
    return slice(start, start + size + (r < extra))


def batch_share(batch: Sequence[Any]) -> tuple[list[Any], float]:
    """This process's share of every tensor of a global batch, and the weight of its loss.

    DDP averages the W processes' gradients. A process's loss is a mean over its n_r samples;
    weighted by W * n_r / N, the average of the W gradients is the gradient of the mean over all
    N samples, which is the step one process makes on the whole batch. This holds when N is not a
    multiple of W too; a process whose share is empty (N < W) runs on an empty batch with
    weight 0, so it still joins every collective DDP and batch norm make.
    """
    n = len(batch[0])
    part = share(n)
    return [t[part] for t in batch], world_size() * (part.stop - part.start) / n


def sum_over_processes(value: float) -> float:
    """The sum of ``value`` over all processes (``value`` itself for one process)."""
    if not active():
        return value
    import torch
    import torch.distributed as dist

    init()
    total = torch.tensor([value], dtype=torch.float64)  # a CPU tensor: it goes by gloo
    dist.all_reduce(total)
    return float(total.item())


def data_parallel(model, device_):
    """A DistributedDataParallel replica of ``model`` (already on ``device_``) for this process.

    Batch norm computes its statistics over the whole global batch, as one process would: torch's
    SyncBatchNorm on GPUs; on CPUs, which SyncBatchNorm refuses, :class:`CPUSyncBatchNorm`. The
    replica is a copy, so ``model`` keeps its own layer classes; copy the trained weights back
    with ``model.load_state_dict(replica.module.state_dict())`` (the names are the same).
    The U-Net's instance norm needs nothing: it normalises each image on its own.
    """
    import copy

    import torch
    from torch.nn.parallel import DistributedDataParallel

    init()
    replica = copy.deepcopy(model)
    if device_.type == "cuda":
        replica = torch.nn.SyncBatchNorm.convert_sync_batchnorm(replica)
        return DistributedDataParallel(replica, device_ids=[device_.index])
    return DistributedDataParallel(_cpu_sync_batchnorm(replica))


def _cpu_sync_batchnorm(module):
    """``module`` with each BatchNorm layer replaced by a :class:`CPUSyncBatchNorm` sharing its
    parameters and running statistics (what ``SyncBatchNorm.convert_sync_batchnorm`` does on GPUs)."""
    import torch

    cls = _cpu_sync_batchnorm_class()
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
        synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        synced.running_mean, synced.running_var = module.running_mean, module.running_var
        synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, _cpu_sync_batchnorm(child))
    return module


@functools.cache
def _cpu_sync_batchnorm_class():
    import torch
    import torch.distributed as dist

    class _Sum(torch.autograd.Function):
        """all_reduce(SUM) that gradients pass through: its backward adds the gradients over the
        processes (torch.distributed.nn's all_reduce does the same but is deprecated in torch 2.13,
        and its replacement is private)."""

        @staticmethod
        def forward(ctx, tensor):
            out = tensor.clone()
            dist.all_reduce(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            grad = grad.clone()
            dist.all_reduce(grad)
            return grad

    # Not a subclass of torch.nn.SyncBatchNorm, which DDP refuses in a CPU model.
    class _CPUSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
        """Batch norm whose training statistics are those of the global batch, on CPU tensors.

        torch's SyncBatchNorm runs only on GPUs, and no well-kept library fills the gap, so it is
        written here: the per-channel sums and counts are added over the processes by an all_reduce
        whose backward adds the gradients over the processes too (as SyncBatchNorm's backward
        does), and the variance is computed in two passes, as torch's batch norm does.
        Evaluation uses the running statistics, like any batch norm.
        """

        def _check_input_dim(self, x):
            if x.dim() < 2:
                raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

        def forward(self, x):
            if not self.training or not torch.distributed.is_initialized():
                return super().forward(x)
            dims = [0, *range(2, x.dim())]
            shape = [1, -1] + [1] * (x.dim() - 2)
            values = x.float()
            # Sums in float64: a count of a few million pixels is exact there, and sums of many
            # float32 values lose little.
            count = torch.full((1,), values.numel() // max(values.shape[1], 1), dtype=torch.float64)
            totals = _Sum.apply(torch.cat([values.sum(dims, dtype=torch.float64), count]))
            n = totals[-1]
            mean = (totals[:-1] / n).to(values.dtype)
            centred = values - mean.view(shape)
            squares = (centred * centred).sum(dims, dtype=torch.float64)
            variance = (_Sum.apply(squares) / n).to(values.dtype)  # biased, used to normalise
            out = centred * torch.rsqrt(variance + self.eps).view(shape)
            if self.affine:
                out = out * self.weight.view(shape) + self.bias.view(shape)
            if self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                    self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                    pixels = float(n)
                    unbiased = variance.detach() * (pixels / (pixels - 1)) if pixels > 1 else variance.detach()
                    self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
            return out.to(x.dtype)

    return _CPUSyncBatchNorm


def __getattr__(name: str):
    # The class needs torch: made on first use, so that importing this module does not import torch.
    if name == "CPUSyncBatchNorm":
        return _cpu_sync_batchnorm_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
