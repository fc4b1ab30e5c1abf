"""The embedder protocol: what the pipeline needs from any model that turns images into vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from xssr.data import ImageRecord

#: Yields a group's prepared images, (B, C, S, S) float32, in record order.
Batches = Callable[[], Iterator[np.ndarray]]


class Embedder(Protocol):
    """Turns the source and pool images into ``(n_samples, n_features)`` float32 embeddings.

    An embedder that ``learns`` is fitted first, in the pipeline's ``pretrain`` stage, on the
    source (and optionally pool) images; its state is saved as ``checkpoint`` and cached by
    fingerprint. One that does not (embeddings made elsewhere) only reads.
    """

    name: str
    learns: bool
    checkpoint: str  # file name of the fitted state in the pretrain stage
    #: Optional, default False: each row depends on its own image alone (not on the others in
    #: the group or batch), so under torchrun the pipeline gives every process a contiguous share
    #: of the records and puts the rows end to end. Otherwise rank 0 embeds alone.
    per_image: bool

    def settings(self) -> dict[str, Any]:
        """What identifies its output besides the images: enters the stage fingerprints."""

    def check(self, records: dict[str, Sequence[ImageRecord]]) -> None:
        """Raise InputError listing every problem with what it will read, before any stage runs."""

    def fit(self, images: np.ndarray, *, seed: int, device, progress=None) -> tuple[Any, dict[str, Any]]:
        """Learn from (N, C, S, S) float32 images; returns (model, facts for the stage manifest)."""

    def save(self, model: Any, path: Path) -> None:
        """Write the fitted ``model`` to ``path`` (atomically)."""

    def embed(self, group: str, records: Sequence[ImageRecord], batches: Batches, *, checkpoint: Path | None,
              channels: int, device) -> np.ndarray:
        """Embeddings of one group (``"source"`` or ``"pool"``), one row per record, in record order;
        None when the embedder has nothing for that group (no source file, say)."""
