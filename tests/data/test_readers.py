"""Readers: every supported format, slicing of volumes, and readable errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from xssr.data import readers
from xssr.data.readers import (
    ImageReadError,
    SliceReader,
    count_slices,
    file_stem,
    read_image,
    read_mask,
    read_volume,
)

RNG = np.random.default_rng(0)


def gray8(shape=(32, 32)) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def write_dicom(path, frames, photometric="MONOCHROME2", slope=None, intercept=None):
    """Minimal valid uncompressed DICOM; ``frames`` is (H, W) or (n_frames, H, W) uint16."""
    frames = np.asarray(frames, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = frames.shape[-2:]
    if frames.ndim == 3:
        ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path, arr):
    nib.save(nib.Nifti1Image(np.asarray(arr), np.eye(4)), str(path))
    return path


# --------------------------------------------------------------------------- raster formats


def test_png_gray_is_float32_hw(tmp_path):
    arr = gray8()
    Image.fromarray(arr).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.float32 and out.shape == (32, 32)
    np.testing.assert_array_equal(out, arr)


def test_png_rgb_and_rgba_drop_alpha(tmp_path):
    rgb = gray8((32, 32, 3))
    alpha = np.full((32, 32, 1), 7, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(tmp_path / "a.png")
    for name in ("c.png", "a.png"):
        out = read_image(tmp_path / name)
        assert out.shape == (32, 32, 3)
        np.testing.assert_array_equal(out, rgb)


def test_png_16bit_keeps_range(tmp_path):
    arr = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.max() == arr.max() > 255
    np.testing.assert_array_equal(out, arr)


def test_palette_png_gray_and_colour(tmp_path):
    gray = Image.fromarray(gray8()).convert("P")  # grey palette
    gray.save(tmp_path / "pg.png")
    colour = Image.fromarray(gray8((32, 32, 3))).convert("P", palette=Image.Palette.ADAPTIVE)
    colour.save(tmp_path / "pc.png")
    assert read_image(tmp_path / "pg.png").shape == (32, 32)
    assert read_image(tmp_path / "pc.png").shape == (32, 32, 3)


def test_jpeg_bmp_and_upper_case_suffix(tmp_path):
    arr = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    Image.fromarray(arr).save(tmp_path / "j.JPG", quality=95)
    Image.fromarray(np.stack([arr] * 3, axis=2)).save(tmp_path / "b.bmp")
    jpeg = read_image(tmp_path / "j.JPG")
    assert jpeg.shape == (32, 32) and np.abs(jpeg - arr).max() < 12  # lossy
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp")[..., 1], arr)


def test_tiff_uint16_and_float32_with_nan(tmp_path):
    arr16 = np.full((32, 32), 40000, np.uint16)
    Image.fromarray(arr16).save(tmp_path / "u.tif")
    assert read_image(tmp_path / "u.tif").max() == 40000
    arrf = RNG.normal(size=(32, 32)).astype(np.float32)
    arrf[3, 4] = np.nan
    Image.fromarray(arrf).save(tmp_path / "f.tiff")
    out = read_image(tmp_path / "f.tiff")
    assert np.isnan(out[3, 4])
    np.testing.assert_array_equal(np.nan_to_num(out), np.nan_to_num(arrf))


def test_read_mask_reduces_colour_and_keeps_raw_values(tmp_path):
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:10, :10, 0] = 255  # red region
    mask[20:, 20:, 2] = 128  # blue region
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.shape == (32, 32)
    assert set(np.unique(out)) == {0, 128, 255}


# --------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2(tmp_path):
    arr = (gray8().astype(np.uint16) * 200)
    write_dicom(tmp_path / "x.dcm", arr)
    out = read_image(tmp_path / "x.dcm")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, arr)
    assert count_slices(tmp_path / "x.dcm") == 1


def test_dicom_monochrome1_is_inverted(tmp_path):
    arr = gray8().astype(np.uint16)
    write_dicom(tmp_path / "inv.dcm", arr, photometric="MONOCHROME1")
    out = read_image(tmp_path / "inv.dcm")
    np.testing.assert_array_equal(out, 65535.0 - arr)


def test_dicom_rescale_slope_intercept(tmp_path):
    arr = gray8().astype(np.uint16)
    write_dicom(tmp_path / "ct.dcm", arr, slope=2, intercept=-1024)
    np.testing.assert_allclose(read_image(tmp_path / "ct.dcm"), arr * 2.0 - 1024)


def test_dicom_multiframe_is_a_volume(tmp_path):
    frames = np.stack([np.full((32, 32), v, np.uint16) for v in (10, 20, 30)])
    path = write_dicom(tmp_path / "mf.dcm", frames)
    assert count_slices(path) == 3
    assert read_volume(path).shape == (3, 32, 32)
    assert read_image(path, 1)[0, 0] == 20
    with pytest.raises(ImageReadError, match="out of range"):
        read_image(path, 3)
    with pytest.raises(ImageReadError, match="no slice index"):
        read_image(path)


# --------------------------------------------------------------------------- NIfTI


def test_nifti_2d_and_singleton_3d_are_single_images(tmp_path):
    arr = gray8().astype(np.float32)
    write_nifti(tmp_path / "a.nii", arr)
    write_nifti(tmp_path / "b.nii", arr[:, :, None])
    for name in ("a.nii", "b.nii"):
        assert count_slices(tmp_path / name) == 1
        np.testing.assert_array_equal(read_image(tmp_path / name), arr)


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz", "VOL.NII.GZ"])
def test_nifti_3d_sliced_along_last_axis(tmp_path, name):
    vol = RNG.normal(size=(32, 30, 5)).astype(np.float32)
    path = write_nifti(tmp_path / name, vol)
    assert count_slices(path) == 5
    assert file_stem(path) == name[:3]
    for k in (0, 4):
        np.testing.assert_array_equal(read_image(path, k), vol[:, :, k])
    np.testing.assert_array_equal(read_volume(path)[2], vol[:, :, 2])
    with pytest.raises(ImageReadError, match="slice index 5 is out of range"):
        read_image(path, 5)


def test_nifti_4d_is_an_error(tmp_path):
    path = write_nifti(tmp_path / "t.nii.gz", np.zeros((8, 8, 3, 2), np.float32))
    with pytest.raises(ImageReadError, match="4-D"):
        read_image(path, 0)


# --------------------------------------------------------------------------- errors and caching


def test_error_type_and_message(tmp_path):
    err = ImageReadError(tmp_path / "x.png", "file not found")
    assert isinstance(err, ValueError)
    assert err.path == tmp_path / "x.png" and err.reason == "file not found"
    assert str(err) == f"{tmp_path / 'x.png'}: file not found"


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("x.gif", b"GIF89a", "unsupported file type '.gif'"),
        ("missing.png", None, "file not found"),
        ("bad.png", b"\x89PNG garbage bytes", "cannot decode as an image"),
        ("bad.dcm", b"not dicom at all", "not a readable DICOM file"),
        ("bad.nii.gz", b"\x1f\x8b garbage", "not a readable NIfTI file"),
    ],
)
def test_bad_files_raise_readable_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    for func in (read_image, read_mask, read_volume):
        with pytest.raises(ImageReadError) as info:
            func(path)
        assert info.value.path == path
        assert reason in str(info.value) and str(path) in str(info.value)


def test_slice_reader_decodes_a_volume_once(tmp_path, monkeypatch):
    vol = RNG.normal(size=(16, 16, 6)).astype(np.float32)
    path = write_nifti(tmp_path / "v.nii.gz", vol)
    calls = []
    real = readers.read_volume
    monkeypatch.setattr(readers, "read_volume", lambda p: calls.append(p) or real(p))
    reader = SliceReader()
    for k in range(6):
        np.testing.assert_array_equal(reader.image(path, k), vol[:, :, k])
    assert len(calls) == 1
