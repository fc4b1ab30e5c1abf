"""Data specs, manifests, folder layouts, filtering, sampling and volume expansion."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from xssr.data import sources
from xssr.data.sources import DataSpec, default_data_root, load_records, parse_spec, resolve_path

RNG = np.random.default_rng(1)


def png(path, value=None, shape=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = RNG.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
    Image.fromarray(arr).save(path)
    return path


def write_manifest(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_multiframe_dicom(path, n_frames):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel = 8, 8, n_frames, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.zeros((n_frames, 8, 8), "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def dataset(tmp_path):
    """20 images over two sites and two splits, masks for all but one, split given as split_hint."""
    root = tmp_path / "ds"
    rows = []
    for i in range(20):
        site, split = ("a" if i < 12 else "b"), ("train" if i % 4 else "test")
        png(root / "images" / f"{i:02d}.png")
        png(root / "masks" / f"{i:02d}.png", value=255)
        rows.append([f"images/{i:02d}.png", "" if i == 3 else f"masks/{i:02d}.png", site, f"c{i}", split])
    write_manifest(root / "manifest.csv", ["image", "mask", "site", "case_id", "split_hint"], rows)
    return root


# --------------------------------------------------------------------------- parse_spec


def test_parse_spec_full_and_canonical_string():
    spec = parse_spec("/data/cxr#split=train&site=b, a&n=453&seed=3&slices=foreground")
    assert spec == DataSpec("/data/cxr", sites=("a", "b"), splits=("train",), n=453, seed=3,
                            slices="foreground")
    assert str(spec) == "/data/cxr#site=a,b&split=train&n=453&seed=3&slices=foreground"
    assert parse_spec(str(spec)) == spec
    assert str(parse_spec("/data/cxr")) == "/data/cxr"
    assert parse_spec("@cxr_lung_qu#site=x").path == "@cxr_lung_qu"


@pytest.mark.parametrize(
    "text, words",
    [
        ("/d#sites=a", ["'sites'", "site, split, n, seed, rest, slices"]),
        ("/d#n=0", ["'n'", "positive integer", "'0'"]),
        ("/d#n=abc", ["'n'", "'abc'"]),
        ("/d#seed=-1", ["'seed'", "'-1'"]),
        ("/d#slices=some", ["'slices'", "all, foreground", "'some'"]),
        ("/d#site=a&site=b", ["'site'", "twice"]),
        ("/d#site", ["key=value", "'site'"]),
        ("/d#site=", ["'site'", "at least one"]),
        ("#site=a", ["no path"]),
    ],
)
def test_parse_spec_errors_name_the_key(text, words):
    with pytest.raises(ValueError) as info:
        parse_spec(text)
    for word in words:
        assert word in str(info.value)


# --------------------------------------------------------------------------- manifests


def test_manifest_with_split_hint_and_relative_paths(dataset):
    records = load_records(str(dataset / "manifest.csv"))
    assert len(records) == 20
    first = records[0]
    assert first.image == (dataset / "images" / "00.png").resolve()
    assert first.mask == (dataset / "masks" / "00.png").resolve()
    assert (first.site, first.case_id, first.split) == ("a", "c0", "test")
    assert records[3].mask is None  # empty mask cell
    # A folder holding manifest.csv reads the same records.
    assert load_records(str(dataset)) == records


def test_manifest_missing_optional_columns(tmp_path):
    png(tmp_path / "x.png")
    write_manifest(tmp_path / "m.csv", ["image"], [["x.png"]])
    (record,) = load_records(str(tmp_path / "m.csv"))
    assert record.mask is None and record.site == "" and record.split == "" and record.case_id == "x"


def test_manifest_without_image_column(tmp_path):
    path = write_manifest(tmp_path / "m.csv", ["img", "mask"], [["x.png", ""]])
    with pytest.raises(ValueError) as info:
        load_records(str(path))
    assert str(path) in str(info.value) and "'image'" in str(info.value) and "img, mask" in str(info.value)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere.*does not exist"):
        load_records(str(tmp_path / "nowhere"))


def test_missing_files_are_kept_for_validation(tmp_path):
    write_manifest(tmp_path / "m.csv", ["image", "mask"], [["gone.png", "gone_mask.png"]])
    (record,) = load_records(str(tmp_path / "m.csv"))
    assert record.image == (tmp_path / "gone.png").resolve()


# --------------------------------------------------------------------------- folders


def test_folder_with_images_and_masks(tmp_path):
    root = tmp_path / "site1"
    png(root / "images" / "a.png")
    png(root / "images" / "b.png")
    png(root / "images" / "c.png")
    png(root / "masks" / "a.png")
    png(root / "masks" / "b.tif")  # same stem, other suffix
    (root / "images" / "notes.txt").write_text("not an image")
    records = load_records(str(root))
    assert [r.case_id for r in records] == ["a", "b", "c"]
    assert [r.mask.name if r.mask else None for r in records] == ["a.png", "b.tif", None]
    assert {r.site for r in records} == {"site1"} and {r.split for r in records} == {""}


def test_flat_folder(tmp_path):
    png(tmp_path / "flat" / "one.png")
    png(tmp_path / "flat" / "two.jpg")
    records = load_records(str(tmp_path / "flat"))
    assert [r.image.name for r in records] == ["one.png", "two.jpg"]
    assert all(r.mask is None and r.site == "flat" for r in records)


# --------------------------------------------------------------------------- filter and sample


def test_filter_by_site_and_split(dataset):
    records = load_records(f"{dataset}#site=b&split=train")
    assert len(records) == 6 and {(r.site, r.split) for r in records} == {("b", "train")}
    both = load_records(f"{dataset}#site=a,b&split=test")
    assert len(both) == 5


def test_sample_is_stable_sorted_and_seeded(dataset):
    a = load_records(f"{dataset}#n=5&seed=7")
    assert a == load_records(f"{dataset}#n=5&seed=7")
    assert a == sorted(a, key=lambda r: str(r.image))
    assert len(a) == 5 and len(set(a)) == 5
    assert a != load_records(f"{dataset}#n=5&seed=8")


def test_sample_does_not_depend_on_manifest_row_order(dataset, tmp_path):
    with open(dataset / "manifest.csv") as handle:
        header, *rows = list(csv.reader(handle))
    rows = [[str(dataset / cell) if cell.startswith(("images", "masks")) else cell for cell in row]
            for row in rows]
    shuffled = write_manifest(tmp_path / "shuffled.csv", header, rows[::-1])
    assert load_records(f"{shuffled}#n=6&seed=2") == load_records(f"{dataset}#n=6&seed=2")


def test_sample_larger_than_available(dataset):
    with pytest.raises(ValueError, match="n=7 records, but only 6 match"):
        load_records(f"{dataset}#site=b&split=train&n=7")


# --------------------------------------------------------------------------- data root


def test_at_paths_use_the_data_root(dataset, monkeypatch):
    spec = "@ds#site=a"
    assert len(load_records(spec, data_root=dataset.parent)) == 12
    monkeypatch.setenv("XSSR_DATA_ROOT", str(dataset.parent))
    assert default_data_root() == dataset.parent.resolve()
    assert len(load_records(spec)) == 12


def test_at_path_without_data_root_says_what_to_set():
    with pytest.raises(ValueError, match="XSSR_DATA_ROOT"):
        resolve_path("@cxr_lung_qu", None)


def test_default_data_root_from_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("XSSR_DATA_ROOT", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert default_data_root() == (tmp_path / "shared" / "data").resolve()


def test_default_data_root_none_when_nothing_exists(tmp_path, monkeypatch):
    monkeypatch.delenv("XSSR_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "_repo_root", lambda start: None)
    assert default_data_root() is None


# --------------------------------------------------------------------------- volumes


def test_nifti_volumes_expand_and_filter_foreground(tmp_path):
    root = tmp_path / "mr"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    nib.save(nib.Nifti1Image(RNG.normal(size=(16, 16, 4)).astype(np.float32), np.eye(4)),
             str(root / "images" / "case1.nii.gz"))
    mask = np.zeros((16, 16, 4), np.uint8)
    mask[4:8, 4:8, 1] = 1
    mask[2:3, 2:3, 3] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(root / "masks" / "case1.nii.gz"))
    records = load_records(str(root))
    assert [r.slice_index for r in records] == [0, 1, 2, 3]
    assert [r.case_id for r in records] == [f"case1_s{i}" for i in range(4)]
    assert records[2].key.endswith("case1.nii.gz#slice=2")
    assert records[2].label.endswith("case1.nii.gz [slice 2]")
    foreground = load_records(f"{root}#slices=foreground")
    assert [r.slice_index for r in foreground] == [1, 3]


def test_slices_sort_numerically(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 12), np.float32), np.eye(4)), str(tmp_path / "v.nii"))
    assert [r.slice_index for r in load_records(str(tmp_path))] == list(range(12))


def test_foreground_needs_masks(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "v.nii"))
    with pytest.raises(ValueError, match="slices=foreground needs masks"):
        load_records(f"{tmp_path}#slices=foreground")


def test_multiframe_dicom_expands_and_corrupt_volume_stays_single(tmp_path):
    write_multiframe_dicom(tmp_path / "mf.dcm", 3)
    (tmp_path / "broken.nii.gz").write_bytes(b"garbage")
    records = load_records(str(tmp_path))
    assert [(r.image.name, r.slice_index) for r in records] == [
        ("broken.nii.gz", None), ("mf.dcm", 0), ("mf.dcm", 1), ("mf.dcm", 2)]


def test_rest_is_disjoint_from_the_sample_and_stable(tmp_path):
    from xssr.data import load_records

    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image
    import numpy as np

    for i in range(30):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(folder / f"im{i:02d}.png")
    pool = {r.key for r in load_records(f"{folder}#n=10&seed=3")}
    held = [r.key for r in load_records(f"{folder}#n=10&seed=3&rest=5")]
    everything_else = {r.key for r in load_records(f"{folder}#n=10&seed=3&rest=all")}
    assert len(held) == 5 and not pool & set(held)
    assert everything_else == {r.key for r in load_records(str(folder))} - pool
    assert held == [r.key for r in load_records(f"{folder}#n=10&seed=3&rest=5")]
    with pytest.raises(ValueError, match="rest"):
        load_records(f"{folder}#rest=5")
    with pytest.raises(ValueError, match="rest=25"):
        load_records(f"{folder}#n=10&rest=25")


def test_manifest_rows_may_name_single_slices_of_a_volume(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    path = write_manifest(tmp_path / "m.csv", ["image", "slice_index"], [["v.nii.gz", "2"], ["v.nii.gz", "0"]])
    records = load_records(str(path))
    assert [(r.slice_index, r.case_id) for r in records] == [(0, "v_s0"), (2, "v_s2")]
    assert [r.slice_index for r in load_records(str(write_manifest(tmp_path / "all.csv", ["image"],
                                                                   [["v.nii.gz"]])))] == [0, 1, 2]
    twice = write_manifest(tmp_path / "t.csv", ["image", "slice_index"], [["v.nii.gz", "1"], ["v.nii.gz", "1"]])
    with pytest.raises(ValueError, match=r"listed more than once: .*v.nii.gz \[slice 1\] on lines 2, 3"):
        load_records(str(twice))
    bad = write_manifest(tmp_path / "b.csv", ["image", "slice_index"], [["v.nii.gz", "-1"], ["v.nii.gz", "x"]])
    with pytest.raises(ValueError, match="slice_index must be a whole number >= 0 .* line\\(s\\) 2, 3"):
        load_records(str(bad))
