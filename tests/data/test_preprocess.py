"""prepare_image / prepare_mask / load_arrays / iter_arrays."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from xssr.data import readers
from xssr.data.preprocess import (
    iter_arrays,
    load_arrays,
    normalize_image,
    prepare_image,
    prepare_mask,
)
from xssr.data.records import ImageRecord

RNG = np.random.default_rng(3)


def test_gray_to_one_and_three_channels():
    arr = RNG.uniform(0, 255, (32, 48)).astype(np.float32)
    one = prepare_image(arr, 16, 1, "minmax")
    three = prepare_image(arr, 16, 3, "minmax")
    assert one.shape == (1, 16, 16) and one.dtype == np.float32
    assert three.shape == (3, 16, 16)
    np.testing.assert_array_equal(three[0], three[2])
    np.testing.assert_allclose(three[1], one[0])


def test_rgb_to_luminance_weights():
    arr = np.zeros((30, 30, 3), np.float32)
    arr[:10, :, 0] = 255  # pure red
    arr[10:20, :, 1] = 255  # pure green; rows 20.. stay black
    out = prepare_image(arr, 30, 1, "minmax")[0]
    assert out[5, 5] == pytest.approx(0.299 / 0.587, abs=1e-5)
    assert out[15, 5] == pytest.approx(1.0) and out[25, 5] == 0.0
    assert prepare_image(arr, 30, 3, "minmax").shape == (3, 30, 30)


def test_whole_image_is_resized_not_cropped():
    arr = np.zeros((32, 64), np.float32)
    arr[:, 48:] = 1.0  # right quarter bright: a centre crop (columns 16..47) would lose it
    out = prepare_image(arr, 32, 1, "minmax")[0]
    assert out[:, :23].max() == 0.0 and out[:, 25:].min() == 1.0


def test_minmax_and_constant():
    arr = RNG.uniform(-50, 300, (32, 32)).astype(np.float32)
    out = normalize_image(arr, "minmax")
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    assert not normalize_image(np.full((8, 8), 7.0), "minmax").any()


def test_percentile_clips_outliers():
    arr = np.tile(np.arange(100, dtype=np.float32), (100, 1))
    arr[0, 0] = 1e6
    out = normalize_image(arr, "percentile")
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    assert np.median(out) == pytest.approx(0.5, abs=0.02)  # minmax would put it near 5e-5
    assert not normalize_image(np.full((8, 8), 3.0), "percentile").any()


def test_zscore_and_constant():
    arr = RNG.normal(10, 4, (64, 64)).astype(np.float32)
    out = prepare_image(arr, 64, 1, "zscore")
    assert abs(out.mean()) < 1e-5 and out.std() == pytest.approx(1.0, abs=1e-4)
    assert not normalize_image(np.full((8, 8), 3.0), "zscore").any()


@pytest.mark.parametrize(
    "kwargs, word",
    [({"normalize": "unit"}, "'normalize'"), ({"channels": 2}, "'channels'"), ({"size": 0}, "'size'")],
)
def test_bad_parameters_are_named(kwargs, word):
    params = {"size": 8, "channels": 1, "normalize": "minmax", **kwargs}
    with pytest.raises(ValueError, match=word):
        prepare_image(np.zeros((8, 8), np.float32), **params)


def test_mask_binarised_and_binary_after_resize():
    mask = np.zeros((32, 32), np.uint8)
    mask[4:20, 6:30] = 255
    mask[25, 25] = 3  # any positive value is foreground
    for size in (16, 64, 33):
        out = prepare_mask(mask, size)
        assert out.shape == (1, size, size) and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 1}
        assert out.mean() == pytest.approx((mask > 0).mean(), abs=0.04)
    np.testing.assert_array_equal(prepare_mask(mask, 32)[0], mask > 0)


def _png_records(tmp_path, n, rgb_at=None):
    records = []
    for i in range(n):
        shape = (32, 32, 3) if i == rgb_at else (32, 32)
        img = tmp_path / f"i{i}.png"
        msk = tmp_path / f"m{i}.png"
        Image.fromarray(np.full(shape, 10 * i + 5, np.uint8)).save(img)
        mask = np.zeros((32, 32), np.uint8)
        mask[: i + 1] = 255
        Image.fromarray(mask).save(msk)
        records.append(ImageRecord(image=img, mask=msk))
    return records


def test_load_arrays_keeps_the_given_order(tmp_path):
    records = _png_records(tmp_path, 4)[::-1]
    images, masks = load_arrays(records, 16, 3, "zscore", with_masks=True)
    assert images.shape == (4, 3, 16, 16) and masks.shape == (4, 1, 16, 16)
    # Mask i covers its first i + 1 of 32 rows; reversed order gives decreasing coverage.
    assert list(masks.reshape(4, -1).sum(1)) == sorted(masks.reshape(4, -1).sum(1), reverse=True)
    images, none = load_arrays(records, 16, 1, "minmax")
    assert none is None and images.shape == (4, 1, 16, 16)


def test_load_arrays_requires_masks_when_asked(tmp_path):
    record = ImageRecord(image=tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"with_masks=True.*a\.png"):
        load_arrays([record], 8, 1, "minmax", with_masks=True)


def test_volume_read_once_and_iter_arrays_matches(tmp_path, monkeypatch):
    vol = RNG.normal(size=(20, 20, 5)).astype(np.float32)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    records = [ImageRecord(image=path, slice_index=k) for k in (3, 0, 4, 1, 2)]
    calls = []
    real = readers.read_volume
    monkeypatch.setattr(readers, "read_volume", lambda p: calls.append(p) or real(p))
    done = []
    images, _ = load_arrays(records, 8, 1, "minmax", progress=done.append)
    assert len(calls) == 1 and sum(done) == 5
    np.testing.assert_allclose(images[0], prepare_image(vol[:, :, 3], 8, 1, "minmax"))
    batches = list(iter_arrays(records, 8, 1, "minmax", batch_size=2))
    assert [b.shape for b in batches] == [(2, 1, 8, 8), (2, 1, 8, 8), (1, 1, 8, 8)]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    assert len(calls) == 2  # one decode for load_arrays, one for the whole iteration
