"""Decode image and mask files into numpy arrays.

Every reader works on *stacks*: a file decodes to an array with the slice axis first,
``(n_slices, H, W)`` or ``(n_slices, H, W, C)``, with ``n_slices == 1`` for 2-D files.
A 2-D image is one entry of that stack. Libraries: Pillow for ordinary raster formats,
pydicom for DICOM, nibabel for NIfTI. Any exception a library raises on a bad file is
turned into an :class:`ImageReadError` that names the file and says what went wrong.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PILLOW_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm"})
NIFTI_SUFFIXES = frozenset({".nii", ".nii.gz"})
#: Suffixes whose files may hold several slices (3-D volumes).
VOLUME_SUFFIXES = DICOM_SUFFIXES | NIFTI_SUFFIXES
#: Every suffix the readers understand (matched case-insensitively).
SUPPORTED_SUFFIXES = PILLOW_SUFFIXES | VOLUME_SUFFIXES


class ImageReadError(ValueError):
    """A file could not be read as an image or mask.

    Attributes
    ----------
    path : Path
        The file that failed.
    reason : str
        What was expected and what was found, e.g. ``"file not found"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(str(path), reason)
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def file_suffix(path: str | os.PathLike) -> str:
    """Lower-case suffix of ``path``, treating ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def file_stem(path: str | os.PathLike) -> str:
    """File name without its suffix (``"ct_01.nii.gz"`` -> ``"ct_01"``)."""
    name = Path(path).name
    suffix = file_suffix(path)
    return name[: len(name) - len(suffix)] if suffix else name


def is_supported(path: str | os.PathLike) -> bool:
    """Whether the readers understand the file's suffix."""
    return file_suffix(path) in SUPPORTED_SUFFIXES


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _check_file(path: Path) -> str:
    """Return the file's suffix after checking it is supported and exists."""
    suffix = file_suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        shown = suffix or "(none)"
        raise ImageReadError(
            path,
            f"unsupported file type '{shown}'; expected one of "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}",
        )
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return suffix


# --------------------------------------------------------------------------- Pillow


def _pillow_array(img) -> np.ndarray:
    """Pixels of an opened Pillow image as (H, W) or (H, W, 3), native dtype."""
    mode = img.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(img)
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel(0))
    if mode == "RGB":
        return np.asarray(img)
    # Palette images and RGBA/RGBa/RGBX (4th band dropped) are read as RGB, but when all
    # three bands are equal the picture is grey: one grey RGBA file among grey PNGs must
    # not switch the whole run to 3-channel models. CMYK/YCbCr/LAB/HSV are converted too.
    rgb = np.asarray(img.convert("RGB"))
    if mode in ("P", "PA", "RGBA", "RGBa", "RGBX") and _bands_equal(rgb):
        return rgb[..., 0]
    return rgb


def _bands_equal(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def _pillow_stack(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            arr = _pillow_array(img)
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise ImageReadError(path, f"cannot decode as an image ({_describe(err)})") from err
    return arr[None]


# --------------------------------------------------------------------------- DICOM


def _dicom_rescale(ds) -> tuple[float, float]:
    """Rescale slope and intercept; enhanced multi-frame files keep them in a sequence."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and intercept is None and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PixelValueTransformationSequence" in shared:
            pvt = shared.PixelValueTransformationSequence[0]
            slope, intercept = pvt.get("RescaleSlope"), pvt.get("RescaleIntercept")
    return float(1.0 if slope is None else slope), float(0.0 if intercept is None else intercept)


def _dicom_frames(ds) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _dicom_read(path: Path, *, stop_before_pixels: bool = False):
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except Exception as err:
        raise ImageReadError(path, f"not a readable DICOM file ({_describe(err)})") from err


def _dicom_stack(path: Path) -> np.ndarray:
    ds = _dicom_read(path)
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(path, "DICOM file has no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageReadError(
            path, f"cannot decode DICOM pixel data (transfer syntax {syntax}; {_describe(err)})"
        ) from err
    if _dicom_frames(ds) == 1:
        arr = arr[None]
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "MONOCHROME1":
        # MONOCHROME1 stores "bright = low values"; flip within the stored bit
        # range (not the data's own min/max) so every file flips the same way.
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
        if int(ds.get("PixelRepresentation", 0)) == 0:
            arr = float(2**bits - 1) - arr.astype(np.float32)
        else:
            arr = -1.0 - arr.astype(np.float32)
    slope, intercept = _dicom_rescale(ds)
    if slope != 1.0 or intercept != 0.0:
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return arr


# --------------------------------------------------------------------------- NIfTI


def _nifti_load(path: Path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as err:
        raise ImageReadError(path, f"not a readable NIfTI file ({_describe(err)})") from err
    shape = tuple(int(s) for s in img.shape)
    # Tools often write a trailing singleton "time" axis; it carries nothing.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise ImageReadError(
            path, f"expected a 2-D image or 3-D volume, got a {len(shape)}-D array of shape {shape}"
        )
    return img, shape


def _nifti_stack(path: Path) -> np.ndarray:
    img, shape = _nifti_load(path)
    try:
        arr = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as err:
        raise ImageReadError(path, f"cannot read NIfTI voxel data ({_describe(err)})") from err
    if arr.ndim == 2:
        return arr[None]
    # Slices run along the last axis; put them first so a stack is (n_slices, H, W).
    return np.moveaxis(arr, -1, 0)


def _nifti_slice(path: Path, slice_index: int | None) -> np.ndarray:
    """One slice without decoding the whole volume (cheap for uncompressed .nii)."""
    img, shape = _nifti_load(path)
    n_slices = shape[2] if len(shape) == 3 else 1
    index = _check_index(path, slice_index, n_slices)
    extra = (0,) * (len(img.shape) - len(shape))
    where = (slice(None), slice(None)) + ((index,) if len(shape) == 3 else ()) + extra
    try:
        return np.asanyarray(img.dataobj[where])
    except Exception as err:
        raise ImageReadError(path, f"cannot read NIfTI voxel data ({_describe(err)})") from err


# --------------------------------------------------------------------------- public


def read_volume(path: str | os.PathLike) -> np.ndarray:
    """Decode every slice of a file, raw values (DICOM rescale/MONOCHROME1 applied).

    Returns
    -------
    np.ndarray
        ``(n_slices, H, W)`` or ``(n_slices, H, W, C)`` in the file's own dtype
        (float32 where a DICOM rescale or inversion was applied). ``n_slices`` is 1
        for 2-D files.
    """
    path = Path(path)
    suffix = _check_file(path)
    if suffix in PILLOW_SUFFIXES:
        return _pillow_stack(path)
    if suffix in DICOM_SUFFIXES:
        return _dicom_stack(path)
    return _nifti_stack(path)


def count_slices(path: str | os.PathLike) -> int:
    """Number of 2-D slices in a file (1 for 2-D formats), read from the header.

    NIfTI: the last axis of a 3-D volume; DICOM: ``NumberOfFrames``; raster formats
    (including multi-page TIFF, of which only the first page is used): 1.
    """
    path = Path(path)
    suffix = _check_file(path)
    if suffix in PILLOW_SUFFIXES:
        return 1
    if suffix in DICOM_SUFFIXES:
        return _dicom_frames(_dicom_read(path, stop_before_pixels=True))
    _, shape = _nifti_load(path)
    return shape[2] if len(shape) == 3 else 1


def _check_index(path: Path, slice_index: int | None, n_slices: int) -> int:
    if slice_index is None:
        if n_slices == 1:
            return 0
        raise ImageReadError(
            path, f"is a volume with {n_slices} slices, but no slice index was given"
        )
    if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)):
        raise ImageReadError(path, f"slice index must be an integer, got {slice_index!r}")
    if not 0 <= slice_index < n_slices:
        raise ImageReadError(
            path,
            f"slice index {slice_index} is out of range: the file has {n_slices} "
            f"slice(s) (valid 0..{n_slices - 1})",
        )
    return int(slice_index)


def take_slice(stack: np.ndarray, path: str | os.PathLike, slice_index: int | None) -> np.ndarray:
    """Entry ``slice_index`` of a stack from :func:`read_volume` (``None`` for 2-D files)."""
    return stack[_check_index(Path(path), slice_index, stack.shape[0])]


def to_image(arr: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A decoded 2-D slice as float32 ``(H, W)`` or ``(H, W, 3)``."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
        try:
            return np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ImageReadError(path, f"unsupported pixel type {arr.dtype}") from err
    raise ImageReadError(
        path, f"expected a 2-D grayscale (H, W) or RGB (H, W, 3) image, got shape {arr.shape}"
    )


def to_mask(arr: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A decoded 2-D slice as a mask ``(H, W)``, raw values; colour masks take the channel max."""
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., :3].max(axis=-1)
    if arr.ndim != 2:
        raise ImageReadError(path, f"expected a 2-D mask (H, W), got shape {arr.shape}")
    return arr


def _read_slice(path: Path, slice_index: int | None) -> np.ndarray:
    if file_suffix(path) in NIFTI_SUFFIXES and path.is_file():
        return _nifti_slice(path, slice_index)
    return take_slice(read_volume(path), path, slice_index)


def read_image(path: str | os.PathLike, slice_index: int | None = None) -> np.ndarray:
    """Read one 2-D image.

    Parameters
    ----------
    path : path-like
        .png .jpg .jpeg .tif .tiff .bmp .dcm .nii .nii.gz (case-insensitive).
    slice_index : int or None
        Slice of a 3-D volume (NIfTI: along the last axis; DICOM: frame). ``None``
        (or 0) for 2-D files.

    Returns
    -------
    np.ndarray
        float32, ``(H, W)`` for grayscale or ``(H, W, 3)`` for colour (alpha dropped).
        Values are not rescaled: 16-bit files keep their 0..65535 range.

    Raises
    ------
    ImageReadError
        Unsupported suffix, missing or corrupt file, slice out of range, wrong shape.
    """
    path = Path(path)
    return to_image(_read_slice(path, slice_index), path)


def read_mask(path: str | os.PathLike, slice_index: int | None = None) -> np.ndarray:
    """Read one 2-D mask, ``(H, W)`` raw values in the file's dtype (no thresholding).

    Colour masks are reduced with the maximum over channels. Same formats and errors
    as :func:`read_image`.
    """
    path = Path(path)
    return to_mask(_read_slice(path, slice_index), path)


class SliceReader:
    """Reads slices of records while keeping the last decoded file of each kind.

    Records sorted by file visit a volume's slices one after another, so each
    volume is decoded once while at most one image and one mask volume are held.
    Read errors are remembered too, so a broken volume is opened only once.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Path, np.ndarray | ImageReadError]] = {}

    def stack(self, path: Path, kind: str = "image") -> np.ndarray:
        """The whole decoded file as from :func:`read_volume` (raises ImageReadError)."""
        cached = self._cache.get(kind)
        if cached is None or cached[0] != path:
            try:
                value: np.ndarray | ImageReadError = read_volume(path)
            except ImageReadError as err:
                value = err
            self._cache[kind] = (path, value)
            cached = self._cache[kind]
        if isinstance(cached[1], ImageReadError):
            raise cached[1]
        return cached[1]

    def image(self, path: Path, slice_index: int | None = None) -> np.ndarray:
        """Like :func:`read_image`, float32 ``(H, W)`` or ``(H, W, 3)``."""
        return to_image(take_slice(self.stack(path, "image"), path, slice_index), path)

    def mask(self, path: Path, slice_index: int | None = None) -> np.ndarray:
        """Like :func:`read_mask`, ``(H, W)`` raw values."""
        return to_mask(take_slice(self.stack(path, "mask"), path, slice_index), path)
