"""Checkpoints are data, not code: state dicts written atomically, read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path


def save_state(path: Path, state: dict) -> None:
    """A state dict, written atomically (checkpoints are data, not code)."""
    import torch

    from xssr.report.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
