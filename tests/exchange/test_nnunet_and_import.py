"""nnU-Net v2 export and mask import: the files nnU-Net expects, and every bad mask named before
anything is written."""

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from xssr.data import InputError, load_records, make_synthetic_dataset
from xssr.data.records import ImageRecord
from xssr.exchange.masks_in import check_masks, masks_from_folder, write_round
from xssr.exchange.nnunet import case_identifiers, export_nnunet
from xssr.report.io import read_csv


@pytest.fixture
def pool(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "data", n_source=2, n_pool=8, n_test=2, size=32)
    return load_records(f"{folder / 'manifest.csv'}#split=train&site=synthetic_target_a,synthetic_target_b,"
                        "synthetic_target_c")


def test_nnunet_export_writes_the_v2_layout_with_labels_0_1(pool, tmp_path):
    chosen = pool[:3]
    folder = export_nnunet(chosen, tmp_path / "raw", dataset_id=501, name="Synth", label="blob")
    assert folder.name == "Dataset501_Synth"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "blob": 1} and meta["numTraining"] == 3
    assert meta["file_ending"] == ".png" and meta["channel_names"] == {"0": "image"}
    cases = case_identifiers(chosen)
    for case, record in zip(cases, chosen):
        image = np.asarray(Image.open(folder / "imagesTr" / f"{case}_0000.png"))
        label = np.asarray(Image.open(folder / "labelsTr" / f"{case}.png"))
        np.testing.assert_array_equal(image, np.asarray(Image.open(record.image)))
        np.testing.assert_array_equal(label, (np.asarray(Image.open(record.mask)) > 0).astype(np.uint8))
        assert set(np.unique(label)) <= {0, 1}
    rows = read_csv(folder / "xssr_cases.csv")
    assert [r["case"] for r in rows] == cases and rows[0]["image"] == str(chosen[0].image)
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="already exists"):
        export_nnunet(chosen, tmp_path / "raw", dataset_id=501, name="Synth")


def test_nnunet_export_of_volume_slices_is_nifti(tmp_path):
    image = np.random.default_rng(0).normal(size=(16, 16, 3)).astype(np.float32)
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[4:9, 4:9, 1] = 1
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "ct_mask.nii.gz")
    records = [ImageRecord(tmp_path / "ct.nii.gz", tmp_path / "ct_mask.nii.gz", case_id="ct", slice_index=i)
               for i in (1, 2)]
    folder = export_nnunet(records, tmp_path / "raw", dataset_id=7, name="CT")
    assert json.loads((folder / "dataset.json").read_text())["file_ending"] == ".nii.gz"
    written = nib.load(folder / "imagesTr" / "ct-s1_0000.nii.gz").get_fdata()
    np.testing.assert_allclose(written[..., 0], image[..., 1], rtol=1e-6)
    assert nib.load(folder / "labelsTr" / "ct-s1.nii.gz").get_fdata().sum() == 25


def test_nnunet_export_refuses_missing_masks_and_bad_names_writing_nothing(pool, tmp_path):
    broken = [pool[0], ImageRecord(pool[1].image, None, case_id="x")]
    with pytest.raises(InputError, match="has no mask to export"):
        export_nnunet(broken, tmp_path / "raw", dataset_id=1, name="A")
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())
    with pytest.raises(ValueError, match="letters, digits"):
        export_nnunet(pool[:1], tmp_path / "raw", dataset_id=1, name="a b")
    with pytest.raises(ValueError, match="1 to 999"):
        export_nnunet(pool[:1], tmp_path / "raw", dataset_id=1000, name="A")


def _annotate(folder, records, size=32, value=255):
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        mask = np.zeros((size, size), np.uint8)
        mask[5:12, 5:12] = value
        Image.fromarray(mask).save(folder / f"{record.image.stem}.png")


def test_folder_import_round_trip_writes_the_pool_manifest(pool, tmp_path):
    selected = pool[2:5]
    _annotate(tmp_path / "done", selected)
    masks = check_masks(selected, masks_from_folder(tmp_path / "done", selected))
    manifest = write_round(tmp_path / "round1", pool, selected, masks)
    rows = read_csv(manifest)
    assert [r["image"] for r in rows] == [str(r.image) for r in pool]
    annotated = {r["image"]: r["mask"] for r in rows if "round1" in r["mask"]}
    assert set(annotated) == {str(r.image) for r in selected}
    for record in selected:
        written = np.asarray(Image.open(annotated[str(record.image)]))
        assert set(np.unique(written)) == {0, 255} and (written > 0).sum() == 49
    # the manifest reads back as a pool whose selected images carry exactly these masks
    records = load_records(f"{manifest}#paths=any")
    assert [r.key for r in records] == [r.key for r in pool]
    with pytest.raises(ValueError, match="already holds imported masks"):
        write_round(tmp_path / "round1", pool, selected, masks)


@pytest.mark.parametrize("break_it, reason", [
    ("missing", "no mask was found"),
    ("extra", "is not the mask of any selected image"),
    ("size", "mask is 16x16"),
    ("grey", "not a binary mask"),
    ("empty", "is empty"),
])
def test_bad_masks_are_named_and_nothing_is_written(pool, tmp_path, break_it, reason):
    selected = pool[:3]
    _annotate(tmp_path / "done", selected)
    first = tmp_path / "done" / f"{selected[0].image.stem}.png"
    if break_it == "missing":
        first.unlink()
    elif break_it == "extra":
        _annotate(tmp_path / "done", [pool[6]])
    elif break_it == "size":
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(first)
    elif break_it == "grey":
        Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)).save(first)
    elif break_it == "empty":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(first)
    with pytest.raises(InputError) as error:
        check_masks(selected, masks_from_folder(tmp_path / "done", selected))
    assert reason in str(error.value)
    assert (selected[0].image.stem in str(error.value)) or break_it == "extra"
    if break_it == "empty":
        assert check_masks(selected, masks_from_folder(tmp_path / "done", selected), allow_empty=True)
