"""What the `standard` augmentation costs inside a U-Net training step on this machine.

    python benchmarks/augment_speed.py

Times AdamW steps of the default U-Net (batch 8, 128 px, one channel, fp32) with and without
``train.augment = "standard"``, alternating, after a warm-up, and the augmentation of a batch
alone. Run it with nothing else busy: two torch jobs on a 2-core machine slow each other several
times over (and tiny multi-threaded ops, which MONAI's per-sample transforms are made of, most).
"""

from __future__ import annotations

import time

import torch

from xssr.models import build_unet
from xssr.train.augment import build_augment

STEPS = 15


def main() -> None:
    torch.manual_seed(0)
    model = build_unet(1, (16, 32, 64, 128, 256), 2)
    optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    images = torch.rand(8, 1, 128, 128)
    masks = (torch.rand(8, 1, 128, 128) > 0.5).float()
    augment = build_augment("standard", 128, 0)
    generator = torch.Generator().manual_seed(0)

    def step(augmented: bool) -> None:
        x, y = augment([images, masks], generator) if augmented else (images, masks)
        optimiser.zero_grad()
        loss_fn(model(x), y).backward()
        optimiser.step()

    step(True)
    step(False)
    for _ in range(2):
        for augmented in (False, True):
            start = time.perf_counter()
            for _ in range(STEPS):
                step(augmented)
            print(f"augment={'standard' if augmented else 'none'}: "
                  f"{(time.perf_counter() - start) / STEPS * 1000:.0f} ms per step", flush=True)
    start = time.perf_counter()
    for _ in range(2 * STEPS):
        augment([images, masks], generator)
    print(f"augmentation alone: {(time.perf_counter() - start) / (2 * STEPS) * 1000:.0f} ms per batch of 8")


if __name__ == "__main__":
    main()
