"""U-Net training throughput in each precision on this machine (the reason precision "auto" exists).

    python benchmarks/precision_speed.py [--out benchmarks/results/speed/precision.json]

Times AdamW steps of the default U-Net (batch 8, 128 px, one channel) after two warm-up steps,
in bf16 autocast and in fp32, and records what ``precision = "auto"`` picks here. Run it with
nothing else busy: two torch jobs on a 2-core machine slow each other several times over.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from xssr.models import build_unet
from xssr.report.io import write_json
from xssr.train.loop import autocast_context, native_bf16, resolve_precision


def images_per_second(precision: str, steps: int = 6, batch: int = 8, size: int = 128) -> float:
    torch.manual_seed(0)
    model = build_unet(1)
    optimiser = torch.optim.AdamW(model.parameters())
    images, masks = torch.rand(batch, 1, size, size), (torch.rand(batch, 1, size, size) > 0.5).float()
    device = torch.device("cpu")
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        with autocast_context(device, precision):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images).float(), masks)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return steps * batch / (time.perf_counter() - start)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/speed/precision.json")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    record = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "native_bf16": native_bf16(cpu), "auto_picks": resolve_precision(cpu, "auto"),
        "unet_train_images_per_second": {p: round(images_per_second(p), 1) for p in ("bf16", "fp32")},
        "measured": time.strftime("%Y-%m-%d"),
    }
    write_json(args.out, record)
    print(record)


if __name__ == "__main__":
    main()
