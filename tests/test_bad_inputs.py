"""The bad-input corpus: every kind of bad file or setting a user can hand xssr, tried through
the command line. Each must end with exit code 2, a message naming the file (or setting) and
the reason, no traceback, and nothing written in --out. The last tests check that inputs which
only look odd (unicode names, formula-like names, grey RGBA, 16-bit) simply work."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xssr.cli import main
from xssr.report.io import read_csv

SIZE = 32


def _image(seed: int) -> np.ndarray:
    # Distinct pixels per file: identical images would be reported as duplicates.
    return np.random.default_rng(seed).integers(0, 256, size=(SIZE, SIZE), dtype=np.uint8)


def _mask(seed: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4 + seed % 8: 20 + seed % 8, 6:24] = 255
    return mask


def make_folder(root: Path, n: int, first_seed: int, masks: bool = True) -> Path:
    """``root/images/*.png`` (and ``root/masks/*.png``): the folder layout xssr reads."""
    (root / "images").mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(_image(first_seed + i)).save(root / "images" / f"img{i}.png")
        if masks:
            Image.fromarray(_mask(i)).save(root / "masks" / f"img{i}.png")
    return root


@pytest.fixture
def study(tmp_path):
    """Source, pool and test folders that pass every check; a case breaks one thing."""
    return {
        "source": make_folder(tmp_path / "source", 4, 0),
        "pool": make_folder(tmp_path / "pool", 6, 100, masks=False),
        "test": make_folder(tmp_path / "test", 3, 200),
        "out": tmp_path / "out",
        "root": tmp_path,
    }


def run_cli(args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    # A user's mistake ends in SystemExit(2) from the CLI, never in an escaped exception.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def run_study(s, *extra, methods="random", command="run"):
    args = [command, "--source", s["source"], "--pool", s["pool"], "--methods", methods,
            "--image-size", SIZE, "--device", "cpu", "--out", s["out"], *extra]
    if command == "run":
        args[1:1] = ["--test", s["test"]]
    return run_cli(args)


def assert_refused(s, code, output, *needles):
    assert code == 2, output
    for needle in needles:
        assert str(needle) in output, f"{needle!r} not in:\n{output}"
    assert not s["out"].exists(), "nothing may be written in --out"


def write_nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


# --------------------------------------------------------------------------- broken files
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_jpeg(path: Path) -> None:
    path.unlink()
    jpeg = path.with_suffix(".jpg")
    Image.fromarray(_image(999)).save(jpeg, quality=90)
    _truncate(jpeg)


BROKEN_FILES = {
    "zero-byte png": ("img0.png", lambda p: p.write_bytes(b""), "file is empty (0 bytes)"),
    "truncated png": ("img0.png", _truncate, "cannot decode"),
    "truncated jpeg": ("img0.jpg", _truncated_jpeg, "cannot decode"),
    "text named .png": ("img0.png", lambda p: p.write_text("patient list, not pixels"), "cannot decode"),
}


@pytest.mark.parametrize("kind", BROKEN_FILES)
def test_broken_image_file(study, kind):
    name, breaks, reason = BROKEN_FILES[kind]
    breaks(study["pool"] / "images" / "img0.png")
    code, output = run_study(study)
    assert_refused(study, code, output, study["pool"] / "images" / name, reason)


def test_mask_size_mismatch(study):
    mask = study["test"] / "masks" / "img1.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mask)
    code, output = run_study(study)
    assert_refused(study, code, output, mask, "mask has shape (16, 16)")


def test_non_binary_mask(study):
    mask = study["test"] / "masks" / "img2.png"
    Image.fromarray(_image(5)).save(mask)
    code, output = run_study(study)
    assert_refused(study, code, output, mask, "not binary")


@pytest.mark.parametrize("value, reason", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_nan_and_inf_nifti(study, value, reason):
    array = np.random.default_rng(1).normal(size=(SIZE, SIZE)).astype(np.float32)
    array[3, 3] = value
    path = write_nifti(study["pool"] / "images" / "scan.nii.gz", array)
    code, output = run_study(study)
    assert_refused(study, code, output, path, reason)


def test_four_dimensional_nifti(study):
    path = write_nifti(study["pool"] / "images" / "series.nii.gz", np.zeros((SIZE, SIZE, 3, 2), np.float32))
    code, output = run_study(study)
    assert_refused(study, code, output, path, "4-D")


def test_dicom_without_pixel_data(study):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = study["pool"] / "images" / "report.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName = "Test^Structured^Report"
    ds.save_as(str(path), enforce_file_format=True)
    code, output = run_study(study)
    assert_refused(study, code, output, path, "no pixel data")


# --------------------------------------------------------------------------- pool and budget
def test_empty_pool(study):
    for png in (study["pool"] / "images").iterdir():
        png.unlink()
    code, output = run_study(study)
    assert_refused(study, code, output, "pool", "no images")


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_budget_zero_or_negative(study, budget):
    code, output = run_study(study, "--budget", budget)
    assert_refused(study, code, output, "select.budget", budget)


@pytest.mark.parametrize("command", ["run", "select"])
def test_budget_above_the_pool_is_caught_before_any_stage(study, command):
    # With xssr the MAE would train first; the budget must be refused before that.
    code, output = run_study(study, "--budget", "7", methods="xssr,random", command=command)
    assert_refused(study, code, output, "select.budget", "asks for 7 images", "has only 6")


def test_budget_above_the_pool_in_validate(study):
    code, output = run_cli(["validate", "--source", study["source"], "--pool", study["pool"], "--budget", "9",
                            "--stage", "select"])
    assert code == 2 and "select.budget" in output and "has only 6" in output


# --------------------------------------------------------------------------- manifests
def write_manifest(folder: Path, rows: list[str], header: str = "image,mask,site") -> Path:
    path = folder / "pool.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_duplicate_manifest_rows_name_their_lines(study):
    manifest = write_manifest(study["pool"], ["images/img0.png,,a", "images/img1.png,,a", "images/img0.png,,a"])
    study["pool"] = manifest
    code, output = run_study(study)
    assert_refused(study, code, output, manifest, "listed more than once", "lines 2, 4")


@pytest.mark.parametrize("where", ["dotdot", "absolute"])
def test_manifest_paths_outside_its_folder_are_refused(study, where):
    outside = study["root"] / "elsewhere.png"
    Image.fromarray(_image(50)).save(outside)
    cell = "../elsewhere.png" if where == "dotdot" else str(outside)
    manifest = write_manifest(study["pool"], ["images/img0.png,,a", f"{cell},,a"])
    study["pool"] = manifest
    code, output = run_study(study)
    assert_refused(study, code, output, manifest, "outside its folder", cell, "#paths=any")


def test_paths_any_allows_them(study):
    outside = study["root"] / "elsewhere.png"
    Image.fromarray(_image(50)).save(outside)
    manifest = write_manifest(study["pool"], ["images/img0.png,,a", "../elsewhere.png,,a"])
    code, output = run_cli(["validate", "--pool", f"{manifest}#paths=any", "--methods", "random",
                            "--stage", "select"])
    assert code == 0, output
    assert "pool 2" in output


def test_manifest_without_image_column(study):
    manifest = write_manifest(study["pool"], ["images/img0.png,a"], header="file,site")
    study["pool"] = manifest
    code, output = run_study(study)
    assert_refused(study, code, output, manifest, "must have an 'image' column", "file, site")


def test_pool_image_that_is_also_a_test_image(study):
    leaked = study["pool"] / "images" / "img3.png"
    (study["test"] / "images" / "copy.png").write_bytes(leaked.read_bytes())
    Image.fromarray(_mask(0)).save(study["test"] / "masks" / "copy.png")
    code, output = run_study(study)
    assert_refused(study, code, output, "copy.png", "leakage")


def test_missing_test_set_suggests_select(study):
    code, output = run_cli(["validate", "--source", study["source"], "--pool", study["pool"]])
    assert code == 2 and "data.test" in output and "--stage select" in output


def test_mask_named_before_it_is_drawn_does_not_block_selection(study):
    manifest = write_manifest(study["pool"], [f"images/img{i}.png,masks/img{i}.png,a" for i in range(6)])
    code, output = run_study({**study, "pool": manifest}, "--budget", "2", command="select")
    assert code == 0, output
    # ...but training on the picks names the missing mask.
    code, output = run_study({**study, "pool": manifest}, "--budget", "2", command="train")
    assert code == 2 and "has no mask yet" in output and "does not exist" in output


# --------------------------------------------------------------------------- embeddings
def _text_npy(path: Path) -> None:
    path.write_text("0.1,0.2\n0.3,0.4\n")


def _pickled(path: Path) -> None:
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _with_nan(path: Path) -> None:
    array = np.ones((10, 4), np.float32)
    array[7, 2] = np.nan
    np.save(path, array)


BAD_EMBEDDINGS = {
    "nan": (_with_nan, "1 row(s) have NaN or infinite values (rows 7"),
    "one-dimensional": (lambda p: np.save(p, np.zeros(10)), "expected a 2-D"),
    "three-dimensional": (lambda p: np.save(p, np.zeros((4, 2, 2))), "expected a 2-D (n_samples, n_features) array, got shape (4, 2, 2)"),
    "strings": (lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), "expected numbers"),
    "text named .npy": (_text_npy, "not a NumPy .npy file"),
    "pickled objects": (_pickled, "holds Python objects"),
    "zero bytes": (lambda p: p.write_bytes(b""), "file is empty"),
    "missing": (lambda p: None, "file not found"),
}


@pytest.mark.parametrize("kind", BAD_EMBEDDINGS)
def test_bad_embeddings_file(tmp_path, kind):
    writes, reason = BAD_EMBEDDINGS[kind]
    path = tmp_path / "pool.npy"
    writes(path)
    out = tmp_path / "out"
    code, output = run_cli(["select", "--pool-embeddings", path, "--budget", "2", "--out", out])
    assert code == 2, output
    assert f"{path} (--pool-embeddings): {reason}" in output
    assert "allow_pickle" not in output  # never numpy's advice to unpickle an untrusted file
    assert not out.exists()


def test_embedding_widths_and_budget_are_checked_together(tmp_path):
    np.save(tmp_path / "pool.npy", np.random.default_rng(0).normal(size=(5, 8)))
    np.save(tmp_path / "source.npy", np.random.default_rng(1).normal(size=(9, 6)))
    out = tmp_path / "out"
    code, output = run_cli(["select", "--pool-embeddings", tmp_path / "pool.npy", "--source-embeddings",
                            tmp_path / "source.npy", "--budget", "6", "--out", out])
    assert code == 2
    assert "source.npy (--source-embeddings): has 6 features per row" in output
    assert "select.budget: asks for 6 images" in output
    assert not out.exists()


def test_xssr_without_source_embeddings_names_the_flag(tmp_path):
    np.save(tmp_path / "pool.npy", np.random.default_rng(0).normal(size=(12, 4)))
    code, output = run_cli(["select", "--pool-embeddings", tmp_path / "pool.npy", "--budget", "3",
                            "--out", tmp_path / "out"])
    assert code == 2 and "--source-embeddings" in output and "--alpha 0" in output
    assert "parameter" not in output  # flags, not Python parameter names
    code, output = run_cli(["select", "--pool-embeddings", tmp_path / "pool.npy", "--budget", "3", "--alpha", "0",
                            "--out", tmp_path / "out"])
    assert code == 0, output


# --------------------------------------------------------------------------- --out
def test_out_is_a_file(study):
    study["out"].write_text("my notes")
    code, output = run_study(study)
    assert code == 2 and str(study["out"]) in output and "is a file" in output
    assert study["out"].read_text() == "my notes"


def test_out_under_a_file(study):
    (study["root"] / "notes.txt").write_text("my notes")
    study["out"] = study["root"] / "notes.txt" / "run"
    code, output = run_study(study)
    assert code == 2 and "which is a file" in output and "notes.txt" in output


def test_out_not_writable(study):
    # Permission bits do not stop root; sysfs refuses new files to everyone.
    if not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and _can_create_in("/sys"):
        pytest.skip("needs a folder no one can create files in")
    study["out"] = Path("/sys") / "xssr-test-run"
    code, output = run_study(study)
    assert code == 2 and "xssr-test-run (--out): cannot write in /sys" in output


def _can_create_in(folder: str) -> bool:
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def test_file_system_errors_during_a_run_are_named_without_traceback(study, monkeypatch):
    # The disk filling up or a folder turning read-only mid-run is not a bug of xssr: it must
    # end like any other input problem, naming the file it could not write.
    import errno

    import xssr.report.io as io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.tempfile, "mkstemp", full)
    monkeypatch.setattr(io, "check_writable_folder", lambda folder, what="--out": Path(folder))
    monkeypatch.setattr("xssr.api.check_writable_folder", lambda folder, what="--out": Path(folder))
    code, output = run_study(study, "--budget", "2", command="select")
    assert code == 2 and "config.json: No space left on device" in output
    assert ".tmp" not in output


# --------------------------------------------------------------------------- inputs that work
def test_unicode_spaces_and_formula_like_names_simply_work(study):
    images = study["pool"] / "images"
    for i, name in enumerate(["Bild ä 1.png", "=cmd|' -C calc'!A0.png", "+1 lung.png", "@home.png"]):
        Image.fromarray(_image(300 + i)).save(images / name)
    manifest = study["pool"] / "pool.csv"
    names = sorted(p.name for p in images.iterdir())
    manifest.write_text("image,site,case_id\n" + "".join(f'"images/{n}",=HYPERLINK(1),-{i}\n'
                                                          for i, n in enumerate(names)))
    code, output = run_study({**study, "pool": manifest}, "--budget", str(len(names)), command="select")
    assert code == 0, output
    selection = study["out"] / "select" / "random" / "selection.csv"
    assert f"to annotate (random): {selection}" in output
    text = selection.read_text(encoding="utf-8")
    for line in text.splitlines()[1:]:
        for cell in line.split(","):
            assert not cell.startswith(("=", "+", "-", "@")), f"formula-like cell reaches the CSV: {line}"
    rows = read_csv(selection)  # the guard is undone on reading
    assert sorted(Path(r["image"]).name for r in rows) == names
    assert {r["site"] for r in rows} == {"=HYPERLINK(1)"}
    assert sorted(r["case_id"] for r in rows) == sorted(f"-{i}" for i in range(len(names)))


def test_grey_rgba_does_not_switch_the_run_to_colour(study):
    grey = _image(400)
    Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), mode="RGBA").save(
        study["pool"] / "images" / "rgba.png")
    code, output = run_cli(["validate", "--pool", study["pool"], "--methods", "random", "--stage", "select"])
    assert code == 0, output
    assert "colour: gray" in output


def test_sixteen_bit_images_are_read(study):
    deep = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 61).astype(np.uint16)
    Image.fromarray(deep).save(study["pool"] / "images" / "deep.png")
    code, output = run_cli(["validate", "--pool", study["pool"], "--methods", "random", "--stage", "select"])
    assert code == 0, output
    assert "pool 7" in output and "colour: gray" in output


def test_stage_lines_are_printed_without_a_terminal(study):
    (study["pool"] / "masks").mkdir()
    for i in range(6):
        Image.fromarray(_mask(i)).save(study["pool"] / "masks" / f"img{i}.png")
    code, output = run_study(study, "--budget", "2", "--set", "train.epochs=1", "--set", "train.steps=0", "--set", "train.min_steps=1",
                             "--set", "train.channels=4,8", "--set", "train.num_res_units=0")
    assert code == 0, output
    for line in ("select/random: running", "train/random: running", "evaluate/random: done in"):
        assert line in output
    code, output = run_study(study, "--budget", "2", "--set", "train.epochs=1", "--set", "train.steps=0", "--set", "train.min_steps=1",
                             "--set", "train.channels=4,8", "--set", "train.num_res_units=0")
    assert code == 0 and "train/random: reused" in output and "running" not in output
    assert output.count("select/random: reused") == 1  # once per stage, not once per pull


def test_manifest_row_with_more_cells_than_columns(study):
    manifest = write_manifest(study["pool"], ["images/img0.png,,a", "images/img1.png,,a,surplus"])
    study["pool"] = manifest
    code, output = run_study(study)
    assert_refused(study, code, output, manifest, "more cells than the header has columns on line(s) 3")
