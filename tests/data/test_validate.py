"""check_inputs: every bad-input path is named with its reason, all in one error."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from xssr.data.records import ImageRecord
from xssr.data.validate import InputError, binary_mask_problem, check_inputs

RNG = np.random.default_rng(2)


def case(tmp_path, name, image=None, mask="binary", shape=(32, 32)) -> ImageRecord:
    """A PNG image with random pixels and (by default) a 0/255 PNG mask."""
    image_path = tmp_path / "images" / f"{name}.png"
    image_path.parent.mkdir(exist_ok=True)
    if image is None:
        image = RNG.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(image).save(image_path)
    mask_path = None
    if mask is not None:
        if isinstance(mask, str):
            mask = np.zeros(shape, np.uint8)
            mask[8:20, 8:20] = 255
        mask_path = tmp_path / "masks" / f"{name}.png"
        mask_path.parent.mkdir(exist_ok=True)
        Image.fromarray(mask).save(mask_path)
    return ImageRecord(image=image_path, mask=mask_path, case_id=name)


def problems_of(groups, require_masks=frozenset(), **kwargs) -> tuple[InputError, str]:
    with pytest.raises(InputError) as info:
        check_inputs(groups, require_masks, **kwargs)
    return info.value, str(info.value)


def test_clean_inputs_give_a_summary(tmp_path):
    source = [case(tmp_path, f"s{i}") for i in range(3)]
    pool = [case(tmp_path, f"p{i}", mask=None) for i in range(2)]
    rgb = case(tmp_path, "t0", image=RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    done = []
    summary = check_inputs({"source": source, "pool": pool, "test": [rgb]}, {"source", "test"},
                           progress=done.append)
    assert summary.counts == {"source": 3, "pool": 2, "test": 1}
    assert summary.n_masks == 4
    assert summary.channel_kinds == {"gray", "rgb"}
    assert summary.shapes == {(32, 32)}
    assert summary.content_hashes[source[0].key] == hashlib.sha1(source[0].image.read_bytes()).hexdigest()
    assert summary.mask_hashes[rgb.key] == hashlib.sha1(rgb.mask.read_bytes()).hexdigest()
    assert sum(done) == 6


def test_message_format(tmp_path):
    err = InputError([("a.png", "file not found"), ("pool", "no images")])
    lines = str(err).splitlines()
    assert lines[0] == "2 problem(s) found in the inputs; nothing was run:"
    assert lines[1].strip() == "a.png: file not found" and lines[2].strip() == "pool: no images"
    assert isinstance(err, ValueError)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"this is not a png")
    err, text = problems_of({"pool": [ImageRecord(image=bad)]})
    assert err.problems[0][0] == str(bad)
    assert f"{bad}: cannot decode as an image" in text


def test_missing_file_and_unsupported_suffix(tmp_path):
    gone = tmp_path / "gone.png"
    gif = tmp_path / "anim.gif"
    gif.write_bytes(b"GIF89a")
    err, text = problems_of({"pool": [ImageRecord(image=gone), ImageRecord(image=gif)]})
    assert f"{gone}: file not found" in text
    assert f"{gif}: unsupported file type '.gif'" in text


def test_nan_in_float_tiff(tmp_path):
    arr = RNG.normal(size=(32, 32)).astype(np.float32)
    arr[0, :3] = np.nan
    arr[1, 0] = np.inf
    path = tmp_path / "f.tif"
    Image.fromarray(arr).save(path)
    err, text = problems_of({"pool": [ImageRecord(image=path)]})
    assert f"{path}: image has 3 NaN and 1 infinite value(s)" in text


def test_nan_in_one_nifti_slice_names_the_slice(tmp_path):
    vol = RNG.normal(size=(16, 16, 3)).astype(np.float32)
    vol[2, 2, 1] = np.nan
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    records = [ImageRecord(image=path, slice_index=k) for k in range(3)]
    err, text = problems_of({"pool": records})
    reason = "image has 1 NaN and 0 infinite value(s); expected finite numbers"
    assert err.problems == [(f"{path} [slice 1]", reason)]


def test_corrupt_volume_is_reported_once(tmp_path):
    path = tmp_path / "v.nii.gz"
    path.write_bytes(b"garbage")
    err, _ = problems_of({"pool": [ImageRecord(image=path, slice_index=k) for k in range(4)]})
    assert len(err.problems) == 1 and err.problems[0][0] == str(path)


def test_mask_size_mismatch(tmp_path):
    record = case(tmp_path, "m", mask=np.zeros((30, 31), np.uint8))
    err, text = problems_of({"pool": [record]})
    assert f"{record.mask}: mask has shape (30, 31), but its image {record.image} has shape (32, 32)" in text


def test_non_binary_mask(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[0, :7] = np.arange(1, 8)
    record = case(tmp_path, "nb", mask=mask)
    err, text = problems_of({"pool": [record]})
    assert f"{record.mask}: mask is not binary" in text
    assert "found 8 distinct values: 0, 1, 2, 3, 4, ..." in text


@pytest.mark.parametrize(
    "values, ok",
    [((0,), True), ((0, 1), True), ((0, 255), True), ((255,), True), ((1, 255), False),
     ((0, 1, 2), False), ((-1, 0), False)],
)
def test_binary_rule(values, ok):
    mask = np.array(values * 4, dtype=np.int16).reshape(len(values), 4)
    assert (binary_mask_problem(mask) is None) == ok
    assert binary_mask_problem(np.zeros((3, 3), bool)) is None


def test_unreadable_mask(tmp_path):
    record = case(tmp_path, "um")
    record.mask.write_bytes(b"broken")
    err, text = problems_of({"pool": [record]})
    assert f"{record.mask}: cannot decode as an image" in text and f"(mask of {record.image})" in text


def test_missing_mask_where_required(tmp_path):
    record = case(tmp_path, "nm", mask=None)
    err, text = problems_of({"pool": [case(tmp_path, "ok")], "test": [record]}, {"test"})
    assert f"{record.image}: no mask, but masks are required for 'test'" in text


def test_empty_pool_and_required_group(tmp_path):
    err, text = problems_of({"source": [], "pool": []}, {"source", "test"},
                            specs={"pool": "@cxr#site=x"})
    assert "pool: no images (spec @cxr#site=x)" in text
    assert "source: no images" in text and "test: no images" in text
    assert len(err.problems) == 3


def test_duplicate_record_within_group(tmp_path):
    record = case(tmp_path, "d")
    err, text = problems_of({"pool": [record, record]})
    assert f"{record.image}: listed twice in 'pool'" in text
    assert len(err.problems) == 1


def test_pool_test_leakage(tmp_path):
    record = case(tmp_path, "leak")
    err, text = problems_of({"pool": [record], "test": [record]})
    assert f"{record.image}: listed twice in 'pool' and 'test' (train/test leakage" in text


def test_annotated_images_may_also_be_pool_images_but_nothing_else_may_share(tmp_path):
    record = case(tmp_path, "annotated")
    summary = check_inputs({"labeled": [record], "pool": [record]}, {"labeled"})
    assert summary.counts == {"labeled": 1, "pool": 1}
    err, text = problems_of({"labeled": [record], "test": [record]})
    assert f"{record.image}: listed twice in 'labeled' and 'test' (train/test leakage" in text


def test_identical_pixels(tmp_path):
    pixels = RNG.integers(0, 256, (32, 32), dtype=np.uint8)
    a = case(tmp_path, "a", image=pixels)
    b = case(tmp_path, "b", image=pixels)
    c = case(tmp_path, "c", image=pixels)
    err, text = problems_of({"pool": [a, b], "test": [c]})
    assert f"{b.image}: same pixels as {a.image}" in text
    assert f"{c.image}: same pixels as {a.image} in 'pool' and 'test' (train/test leakage" in text


def test_constant_images_are_not_duplicates(tmp_path):
    blank = np.zeros((32, 32), np.uint8)
    records = [case(tmp_path, f"z{i}", image=blank) for i in range(3)]
    assert check_inputs({"pool": records}).counts == {"pool": 3}


def test_all_problems_reported_together(tmp_path):
    good = case(tmp_path, "good")
    corrupt = tmp_path / "x.png"
    corrupt.write_bytes(b"garbage")
    missing = tmp_path / "missing.png"
    wrong_size = case(tmp_path, "ws", mask=np.zeros((16, 16), np.uint8))
    no_mask = case(tmp_path, "nomask", mask=None)
    groups = {
        "source": [good, ImageRecord(image=corrupt, mask=corrupt)],
        "pool": [ImageRecord(image=missing), wrong_size],
        "test": [no_mask, good],
    }
    err, text = problems_of(groups, {"source", "test"})
    labels = [label for label, _ in err.problems]
    assert text.startswith(f"{len(err.problems)} problem(s) found in the inputs; nothing was run:")
    assert str(corrupt) in labels  # image and mask (same broken file) both reported
    assert labels.count(str(corrupt)) == 2
    assert str(missing) in labels
    assert str(wrong_size.mask) in labels
    assert str(no_mask.image) in labels
    assert f"{good.image}: listed twice in 'source' and 'test' (train/test leakage" in text
    assert len(err.problems) == 6
