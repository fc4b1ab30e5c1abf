"""The annotation round trip through the CLI: select -> export to Label Studio -> (the tool's export,
simulated from the real masks) -> import -> train -> nnU-Net export."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xssr.cli import main
from xssr.data import make_synthetic_dataset
from xssr.report.io import read_csv

TINY = ["--image-size", "32", "--device", "cpu", "--set", "train.steps=3", "--set", "train.channels=4,8",
        "--set", "train.num_res_units=0", "--no-progress", "--methods", "random", "--budget", "3"]


@pytest.fixture
def study(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "data", n_source=3, n_pool=10, n_test=3, size=32)
    manifest = folder / "manifest.csv"
    # the pool as a team has it: images only, no masks yet
    rows = read_csv(manifest)
    unlabeled = tmp_path / "data" / "pool.csv"
    unlabeled.write_text("image,mask,site,case_id,split\n" + "".join(
        f"{r['image']},,{r['site']},{r['case_id']},{r['split']}\n" for r in rows if r["split"] == "train"
        and r["site"] != "synthetic_source"))
    return {"folder": folder, "pool": str(unlabeled), "masks": {r["image"]: folder / r["mask"] for r in rows}}


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def _simulated_label_studio_export(tasks_path, masks_by_image, out):
    """What Label Studio's JSON export holds once annotators drew the true masks with the brush."""
    from xssr.exchange.label_studio import encode_brush_rle

    tasks = json.loads(tasks_path.read_text())
    exported = []
    for i, task in enumerate(tasks):
        image_name = task["data"]["image"].split("/")[-1]
        mask = np.asarray(Image.open(masks_by_image[f"images/{image_name}"])) > 0
        exported.append({"id": i + 1, "data": task["data"], "annotations": [{"id": 10 + i, "was_cancelled": False,
                         "result": [{"from_name": "tag", "to_name": "image", "type": "brushlabels",
                                     "original_width": mask.shape[1], "original_height": mask.shape[0],
                                     "value": {"format": "rle", "rle": encode_brush_rle(mask),
                                               "brushlabels": ["foreground"]}}]}]})
    out.write_text(json.dumps(exported))
    return out


def test_select_export_import_train_and_nnunet(study, tmp_path):
    run = tmp_path / "run"
    result = _invoke("select", "--pool", study["pool"], *TINY, "--out", run)
    assert result.exit_code == 0, result.output
    result = _invoke("export", run, "--method", "random", "--to", "label-studio", "--out", tmp_path / "tasks.json",
                     "--image-url-prefix", "/data/local-files/?d=")
    assert result.exit_code == 0, result.output
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 3 and tasks[0]["data"]["image"].startswith("/data/local-files/?d=")
    assert "BrushLabels" in (tmp_path / "tasks.labeling.xml").read_text()

    exported = _simulated_label_studio_export(tmp_path / "tasks.json", study["masks"], tmp_path / "export.json")
    result = _invoke("import", run, "--method", "random", "--from", "label-studio", exported, "--out", tmp_path / "r1")
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "r1" / "manifest.csv")
    annotated = [r for r in rows if r["mask"]]
    assert len(rows) == 10 and len(annotated) == 3
    for row in annotated:  # identical to the true masks
        truth = np.asarray(Image.open(study["masks"][f"images/{row['image'].split('/')[-1]}"])) > 0
        np.testing.assert_array_equal(np.asarray(Image.open(row["mask"])) > 0, truth)

    result = _invoke("train", "--pool", f"{tmp_path / 'r1' / 'manifest.csv'}#paths=any", *TINY, "--out", run)
    assert result.exit_code == 0, result.output
    assert "select/random: reused" in result.output  # the round's pool is the same pool: nothing re-selected
    assert (run / "train" / "random" / "unet.pt").exists()

    result = _invoke("export", run, "--method", "random", "--to", "nnunet", "--round", tmp_path / "r1",
                     "--out", tmp_path / "nnUNet_raw", "--dataset-id", "502", "--name", "Synth")
    assert result.exit_code == 0, result.output
    dataset = tmp_path / "nnUNet_raw" / "Dataset502_Synth"
    assert len(list((dataset / "labelsTr").glob("*.png"))) == 3

    # a model's predictions become pre-annotations of the next export
    result = _invoke("export", run, "--method", "random", "--to", "label-studio", "--out", tmp_path / "pre.json",
                     "--model", run / "train" / "random" / "unet.pt")
    assert result.exit_code == 0, result.output
    assert all("predictions" in task for task in json.loads((tmp_path / "pre.json").read_text()))


def test_import_errors_name_the_problem_and_write_nothing(study, tmp_path):
    run = tmp_path / "run"
    assert _invoke("select", "--pool", study["pool"], *TINY, "--out", run).exit_code == 0
    done = tmp_path / "done"
    done.mkdir()
    selected = read_csv(run / "select" / "random" / "selection.csv")
    for row in selected[:2]:  # one selected image left unannotated
        Image.open(study["masks"][f"images/{row['image'].split('/')[-1]}"]).save(done / row["image"].split("/")[-1])
    result = _invoke("import", run, "--method", "random", "--from", "folder", done, "--out", tmp_path / "r1")
    assert result.exit_code == 2 and "no mask was found" in result.output and "Traceback" not in result.output
    assert selected[2]["image"].split("/")[-1] in result.output and not (tmp_path / "r1").exists()
    (tmp_path / "broken.json").write_text("{not json")
    result = _invoke("import", run, "--method", "random", "--from", "label-studio", tmp_path / "broken.json",
                     "--out", tmp_path / "r1")
    assert result.exit_code == 2 and "broken.json" in result.output and not (tmp_path / "r1").exists()
    result = _invoke("import", tmp_path / "nowhere", "--from", "folder", done, "--out", tmp_path / "r1")
    assert result.exit_code == 2 and "not an xssr run folder" in result.output
    result = _invoke("import", run, "--method", "xssr", "--from", "folder", done, "--out", tmp_path / "r1")
    assert result.exit_code == 2 and "no selection by 'xssr'" in result.output and "random" in result.output


def test_cvat_round_trip(study, tmp_path):
    from xssr.exchange.cvat import export_cvat_masks

    run = tmp_path / "run"
    assert _invoke("select", "--pool", study["pool"], *TINY, "--out", run).exit_code == 0
    result = _invoke("export", run, "--method", "random", "--to", "cvat", "--out", tmp_path / "task.txt")
    assert result.exit_code == 0, result.output
    images = (tmp_path / "task.txt").read_text().split()
    assert len(images) == 3
    # what CVAT exports once the true masks are drawn: a Segmentation mask 1.1 archive
    items = [(image.split("/")[-1], np.asarray(Image.open(study["masks"][f"images/{image.split('/')[-1]}"])) > 0)
             for image in images]
    export_cvat_masks(items, tmp_path / "cvat_export.zip", label="foreground")
    result = _invoke("import", run, "--method", "random", "--from", "cvat", tmp_path / "cvat_export.zip",
                     "--out", tmp_path / "r1")
    assert result.exit_code == 0, result.output
    rows = [r for r in read_csv(tmp_path / "r1" / "manifest.csv") if r["mask"]]
    assert len(rows) == 3
    for row in rows:
        truth = np.asarray(Image.open(study["masks"][f"images/{row['image'].split('/')[-1]}"])) > 0
        np.testing.assert_array_equal(np.asarray(Image.open(row["mask"])) > 0, truth)


def test_a_cvat_frame_left_unannotated_is_empty_only_with_allow_empty(study, tmp_path):
    import zipfile

    from xssr.exchange.cvat import export_cvat_masks

    run = tmp_path / "run"
    assert _invoke("select", "--pool", study["pool"], *TINY, "--out", run).exit_code == 0
    assert _invoke("export", run, "--method", "random", "--to", "cvat", "--out", tmp_path / "task.txt").exit_code == 0
    names = [image.split("/")[-1] for image in (tmp_path / "task.txt").read_text().split()]
    items = [(name, np.asarray(Image.open(study["masks"][f"images/{name}"])) > 0) for name in names]
    full = export_cvat_masks(items, tmp_path / "full.zip")
    # CVAT's export when nobody drew on the last frame: listed in ImageSets, no PNG; the task also
    # held a frame outside the selection that nobody annotated
    skipped = names[-1].rsplit(".", 1)[0]
    with zipfile.ZipFile(full) as source, zipfile.ZipFile(tmp_path / "cvat.zip", "w") as target:
        for entry in source.namelist():
            data = source.read(entry)
            if entry.endswith("default.txt"):
                data += b"not_selected\n"
            if not entry.endswith(f"/{skipped}.png"):
                target.writestr(entry, data)
    refused = _invoke("import", run, "--method", "random", "--from", "cvat", tmp_path / "cvat.zip", "--out", tmp_path / "r")
    assert refused.exit_code == 2 and f"({skipped}): nothing was drawn on" in refused.output, refused.output
    assert not (tmp_path / "r").exists()
    result = _invoke("import", run, "--method", "random", "--from", "cvat", tmp_path / "cvat.zip", "--out", tmp_path / "r",
                     "--allow-empty")
    assert result.exit_code == 0, result.output
    masks = {Path(r["image"]).name: r["mask"] for r in read_csv(tmp_path / "r" / "manifest.csv") if r["mask"]}
    assert len(masks) == 3 and not np.asarray(Image.open(masks[names[-1]])).any()


def test_a_second_round_never_repicks_and_continues_the_first(study, tmp_path):
    run = tmp_path / "run"
    args = [a if a != "random" else "coreset" for a in TINY]
    quick_mae = ["--set", "pretrain.epochs=1", "--set", "pretrain.widths=4,8,8,16", "--set", "pretrain.patch_size=8",
                 "--source", f"{study['folder'] / 'manifest.csv'}#site=synthetic_source"]
    assert _invoke("select", "--pool", study["pool"], *args, *quick_mae, "--out", run).exit_code == 0
    done = tmp_path / "done"
    done.mkdir()
    first = read_csv(run / "select" / "coreset" / "selection.csv")
    for row in first:
        name = row["image"].split("/")[-1]
        Image.open(study["masks"][f"images/{name}"]).save(done / name)
    assert _invoke("import", run, "--method", "coreset", "--from", "folder", done, "--out", tmp_path / "r1").exit_code == 0
    labeled = f"{tmp_path / 'r1' / 'manifest.csv'}#paths=any"
    result = _invoke("select", "--pool", study["pool"], *args, *quick_mae, "--labeled", labeled,
                     "--out", tmp_path / "run2")
    assert result.exit_code == 0, result.output
    second = read_csv(tmp_path / "run2" / "select" / "coreset" / "selection.csv")
    assert not {r["key"] for r in second} & {r["key"] for r in first}
    # the same as the last 3 picks of one 6-image CoreSet run (same embeddings and seed)
    six = [a if a != "3" else "6" for a in args]
    assert _invoke("select", "--pool", study["pool"], *six, *quick_mae, "--out", tmp_path / "run6").exit_code == 0
    longer = read_csv(tmp_path / "run6" / "select" / "coreset" / "selection.csv")
    assert [r["key"] for r in longer] == [r["key"] for r in first + second]
    # asking for more than is left is refused before any work
    result = _invoke("select", "--pool", study["pool"], *[a if a != "3" else "8" for a in args], *quick_mae,
                     "--labeled", labeled, "--out", tmp_path / "run3")
    assert result.exit_code == 2 and "not labeled yet" in result.output and not (tmp_path / "run3").exists()


def _volume_pool(folder, n, depth=4):
    """n small NIfTI volumes, each with a different box mask per slice (a swapped slice would show)."""
    import nibabel as nib

    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(n):
        mask = np.zeros((16, 12, depth), np.uint8)  # not square: a transposed slice would show too
        for z in range(depth):
            mask[3 + i:9 + i, 1 + 2 * z:5 + 2 * z, z] = 1
        truth[f"case{i}"] = mask
        nib.save(nib.Nifti1Image((rng.normal(size=mask.shape) * 100 + 400.0 * mask).astype(np.float32), np.eye(4)),
                 folder / "images" / f"case{i}.nii.gz")
    return truth


@pytest.mark.parametrize("tool", ["label-studio", "cvat"])
def test_volume_slices_go_to_the_2d_tools_as_pngs_and_come_back_as_mask_volumes(tmp_path, tool):
    from xssr.data import load_records, read_mask
    from xssr.exchange.cvat import export_cvat_masks
    from xssr.exchange.label_studio import encode_brush_rle

    truth = _volume_pool(tmp_path / "volumes", 2)
    run = tmp_path / "run"
    args = ["--image-size", "16", "--device", "cpu", "--set", "train.channels=4,8", "--no-progress",
            "--methods", "random", "--budget", "3"]
    assert _invoke("select", "--pool", tmp_path / "volumes", *args, "--out", run).exit_code == 0
    picked = {f"case{r['image'].split('case')[-1].split('.')[0]}_s{r['slice_index']}": r["key"]
              for r in read_csv(run / "select" / "random" / "selection.csv")}
    out = tmp_path / ("tasks.json" if tool == "label-studio" else "cvat.txt")
    result = _invoke("export", run, "--method", "random", "--to", tool, "--out", out)
    assert result.exit_code == 0, result.output
    pngs = sorted((out.with_suffix(".images")).glob("*.png"))
    assert sorted(p.stem for p in pngs) == sorted(picked)
    for png in pngs:  # each the slice as xssr reads it, windowed to 8 bits: the box is the bright part
        case, index = png.stem.rsplit("_s", 1)
        shown = np.asarray(Image.open(png))
        assert shown.shape == (16, 12) and shown.dtype == np.uint8
        box = truth[case][:, :, int(index)] > 0
        assert shown[box].mean() > shown[~box].mean() + 100

    # The annotators draw the true masks on the PNGs; the tool exports them.
    drawn = {png.stem: truth[png.stem.rsplit("_s", 1)[0]][:, :, int(png.stem.rsplit("_s", 1)[1])] > 0 for png in pngs}
    if tool == "label-studio":
        tasks = json.loads(out.read_text())
        assert sorted(Path(t["data"]["image"]).stem for t in tasks) == sorted(picked)
        exported = [{"id": i + 1, "data": t["data"], "annotations": [{"id": 10 + i, "was_cancelled": False, "result": [
            {"from_name": "tag", "to_name": "image", "type": "brushlabels",
             "original_width": 12, "original_height": 16,
             "value": {"format": "rle", "rle": encode_brush_rle(drawn[Path(t["data"]["image"]).stem]),
                       "brushlabels": ["foreground"]}}]}]} for i, t in enumerate(tasks)]
        export = tmp_path / "export.json"
        export.write_text(json.dumps(exported))
    else:
        assert [Path(line).stem for line in out.read_text().split()] == list(picked)  # rank order
        export = export_cvat_masks([(f"{stem}.png", mask) for stem, mask in drawn.items()], tmp_path / "export.zip")
    result = _invoke("import", run, "--method", "random", "--from", tool, export, "--out", tmp_path / "round1")
    assert result.exit_code == 0, result.output
    records = load_records(f"{tmp_path / 'round1' / 'manifest.csv'}#paths=any")
    annotated = {f"{r.image.name.split('.')[0]}_s{r.slice_index}": r for r in records if r.mask is not None}
    assert sorted(annotated) == sorted(picked)
    for r in annotated.values():
        case = r.image.name.split(".")[0]
        np.testing.assert_array_equal(read_mask(r.mask, r.slice_index) > 0, truth[case][:, :, r.slice_index] > 0)


def test_a_volume_round_goes_out_to_nnunet_and_comes_back_from_a_slicer_style_mask_volume(tmp_path):
    import nibabel as nib

    from xssr.data import load_records, read_mask

    pool = tmp_path / "volumes"
    (pool / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(3):
        mask = np.zeros((16, 16, 4), np.uint8)
        for z in range(4):  # a different mask on every slice, so a swapped slice would show
            mask[3 + i:9 + i, 2 + 2 * z:8 + 2 * z, z] = 1
        truth[f"case{i}"] = mask
        nib.save(nib.Nifti1Image(rng.normal(size=(16, 16, 4)).astype(np.float32) + 2 * mask, np.eye(4)),
                 pool / "images" / f"case{i}.nii.gz")
    run = tmp_path / "run"
    args = ["--image-size", "16", "--device", "cpu", "--set", "train.steps=3", "--set", "train.channels=4,8",
            "--set", "train.num_res_units=0", "--no-progress", "--methods", "random", "--budget", "5"]
    assert _invoke("select", "--pool", pool, *args, "--out", run).exit_code == 0
    picked = [(Path(r["image"]).name.split(".")[0], int(r["slice_index"]))
              for r in read_csv(run / "select" / "random" / "selection.csv")]

    # 3D Slicer saves one label volume per image volume: the selected slices drawn, the rest empty.
    drawn = tmp_path / "slicer"
    drawn.mkdir()
    for case in {c for c, _ in picked}:
        volume = np.zeros_like(truth[case])
        for c, index in picked:
            if c == case:
                volume[:, :, index] = truth[case][:, :, index]
        nib.save(nib.Nifti1Image(volume, np.eye(4)), drawn / f"{case}.nii.gz")
    result = _invoke("import", run, "--method", "random", "--from", "folder", drawn, "--out", tmp_path / "round1")
    assert result.exit_code == 0, result.output

    manifest = tmp_path / "round1" / "manifest.csv"
    records = load_records(f"{manifest}#paths=any")
    assert len(records) == 12  # every slice of the pool, one row each
    annotated = [r for r in records if r.mask is not None]
    assert sorted((r.image.name.split(".")[0], r.slice_index) for r in annotated) == sorted(picked)
    for r in annotated:
        np.testing.assert_array_equal(read_mask(r.mask, r.slice_index) > 0,
                                      truth[r.image.name.split(".")[0]][:, :, r.slice_index] > 0)
    # ... and trains on exactly those slices, reusing the selection
    result = _invoke("train", "--pool", f"{manifest}#paths=any", *args, "--out", run)
    assert result.exit_code == 0, result.output
    assert "select/random: reused" in result.output


def test_a_2d_mask_for_several_selected_slices_of_one_volume_is_refused(tmp_path):
    import nibabel as nib

    pool = tmp_path / "volumes"
    (pool / "images").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(16, 16, 4)).astype(np.float32), np.eye(4)),
             pool / "images" / "case0.nii.gz")
    run = tmp_path / "run"
    args = ["--image-size", "16", "--device", "cpu", "--set", "train.channels=4,8", "--no-progress",
            "--methods", "random", "--budget", "2"]
    assert _invoke("select", "--pool", pool, *args, "--out", run).exit_code == 0
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(drawn / "case0.png")
    result = _invoke("import", run, "--method", "random", "--from", "folder", drawn, "--out", tmp_path / "round1")
    assert result.exit_code == 2 and "2 slices of this volume were selected" in result.output
    assert not (tmp_path / "round1").exists()


def test_two_images_the_tool_would_call_by_one_name_are_refused_before_writing(tmp_path):
    from xssr.data import ImageRecord
    from xssr.exchange.rounds import write_display_images

    same = [ImageRecord(image=tmp_path / side / "case0.nii.gz", mask=None, slice_index=2) for side in ("a", "b")]
    with pytest.raises(ValueError, match=r"would both be called case0_s2 in the labelling tool"):
        write_display_images(same, tmp_path / "out.images")
    # 2-D images too: CVAT and Label Studio match masks by the name without extension
    same = [ImageRecord(image=tmp_path / "a" / "case0.png", mask=None),
            ImageRecord(image=tmp_path / "b" / "case0.dcm", mask=None)]
    with pytest.raises(ValueError, match=r"would both be called case0 in the labelling tool"):
        write_display_images(same, tmp_path / "out.images")
    assert not (tmp_path / "out.images").exists()
