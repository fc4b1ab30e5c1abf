"""One record per 2-D image the pipeline sees: where its pixels and its mask come from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """A 2-D image (a file, or one slice of a volume file) with its optional mask.

    Attributes
    ----------
    image : Path
        Absolute, resolved path of the image file.
    mask : Path or None
        Absolute path of the mask file; ``None`` when the image has no mask.
        For a volume the mask is a volume with the same number of slices.
    site, case_id, split : str
        Free-text labels from the manifest ("" when unknown).
    slice_index : int or None
        Index along the slice axis for slices of 3-D volumes (NIfTI, multi-frame
        DICOM); ``None`` for plain 2-D files.
    """

    image: Path
    mask: Path | None = None
    site: str = ""
    case_id: str = ""
    split: str = ""
    slice_index: int | None = None

    @property
    def key(self) -> str:
        """Unique identifier: ``"path"`` or ``"path#slice=<i>"``."""
        if self.slice_index is None:
            return str(self.image)
        return f"{self.image}#slice={self.slice_index}"

    @property
    def label(self) -> str:
        """Human-readable name for messages: ``"path"`` or ``"path [slice 12]"``."""
        if self.slice_index is None:
            return str(self.image)
        return f"{self.image} [slice {self.slice_index}]"

    @property
    def mask_label(self) -> str:
        """Like :attr:`label`, for the mask file (``""`` when there is no mask)."""
        if self.mask is None:
            return ""
        if self.slice_index is None:
            return str(self.mask)
        return f"{self.mask} [slice {self.slice_index}]"


def record_order(record: ImageRecord) -> tuple[str, int]:
    """Sort key that keeps a volume's slices together and in numeric order.

    Sorting by :attr:`ImageRecord.key` as a string would put slice 10 before slice 2;
    this key orders by file, then by slice number (2-D files first, as -1).
    """
    return (str(record.image), -1 if record.slice_index is None else record.slice_index)
