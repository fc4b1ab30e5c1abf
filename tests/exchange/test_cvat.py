"""CVAT "Segmentation mask 1.1": the archive xssr writes has the entries, labelmap and colours the
format prescribes, reads back exactly, hand-built exports (several labels, a folder, index masks)
read as CVAT would, and every malformed input is named by file and entry."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from xssr.exchange.cvat import (
    cvat_task_manifest,
    export_cvat_masks,
    read_cvat_masks,
    voc_color,
)

LUNG, HEART = (250, 50, 83), (61, 61, 245)


def png_bytes(array, mode=None):
    buffer = io.BytesIO()
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def colour_image(label_of_pixel, palette):
    """An RGB class mask: pixel value k of label_of_pixel gets palette[k]."""
    return np.asarray(palette, dtype=np.uint8)[label_of_pixel]


def write_zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


TWO_LABELS = "# label:color_rgb:parts:actions\nbackground:0,0,0::\nlung:250,50,83::\nheart:61,61,245::\n"


@pytest.fixture
def two_label_export(tmp_path):
    """A hand-built export as CVAT writes it for a task with labels lung and heart: scan1 has both,
    scan2 only heart, scan3 is listed but was not annotated (no PNG)."""
    first = np.zeros((6, 8), dtype=int)
    first[1:3, 1:4] = 1
    first[4:6, 5:8] = 2
    second = np.zeros((5, 3), dtype=int)
    second[0, :] = 2
    palette = [(0, 0, 0), LUNG, HEART]
    files = {
        "labelmap.txt": TWO_LABELS,
        "ImageSets/Segmentation/default.txt": "scan1\nscan2\nscan3\n",
        "SegmentationClass/scan1.png": png_bytes(colour_image(first, palette)),
        "SegmentationClass/scan2.png": png_bytes(colour_image(second, palette)),
        "SegmentationObject/scan1.png": png_bytes(colour_image((first > 0) * np.where(first == 2, 2, 1),
                                                               [voc_color(i) for i in range(3)])),
        "SegmentationObject/scan2.png": png_bytes(colour_image((second > 0).astype(int),
                                                               [voc_color(i) for i in range(2)])),
    }
    return write_zip(tmp_path / "two.zip", files), first, second


def masks_of_several_sizes():
    rng = np.random.default_rng(7)
    return [
        ("case1.png", rng.random((5, 7)) > 0.5),  # bool
        ("case2.jpg", (rng.random((12, 4)) > 0.3).astype(np.int64)),  # {0, 1}
        ("case3.png", np.where(rng.random((9, 9)) > 0.6, 255, 0).astype(np.uint8)),  # {0, 255}
        ("empty.png", np.zeros((3, 11), dtype=np.uint8)),
    ]


# ---------------------------------------------------------------- export


def test_export_then_read_gives_back_the_exact_masks(tmp_path):
    items = masks_of_several_sizes()
    out = export_cvat_masks(items, tmp_path / "pre.zip")
    assert out == tmp_path / "pre.zip"
    masks = read_cvat_masks(out)
    assert sorted(masks) == ["case1", "case2", "case3", "empty"]
    for name, mask in items:
        got = masks[name.rsplit(".", 1)[0]]
        assert got.dtype == np.uint8 and got.shape == mask.shape
        np.testing.assert_array_equal(got, (np.asarray(mask) > 0).astype(np.uint8))
    assert not masks["empty"].any()


def test_the_archive_has_the_entries_and_labelmap_of_the_format(tmp_path):
    items = masks_of_several_sizes()
    out = export_cvat_masks(items, tmp_path / "pre.zip", label="lung", color=(10, 20, 30))
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        labelmap = archive.read("labelmap.txt").decode()
        subset = archive.read("ImageSets/Segmentation/default.txt").decode()
    stems = ["case1", "case2", "case3", "empty"]
    assert sorted(names) == sorted(["labelmap.txt", "ImageSets/Segmentation/default.txt"]
                                   + [f"SegmentationClass/{s}.png" for s in stems]
                                   + [f"SegmentationObject/{s}.png" for s in stems])
    assert labelmap == "# label:color_rgb:parts:actions\nbackground:0,0,0::\nlung:10,20,30::\n"
    assert subset == "case1\ncase2\ncase3\nempty\n"  # in the order given (rank order), no extensions


def test_exported_pngs_hold_only_the_label_colour_and_black(tmp_path):
    items = masks_of_several_sizes()
    out = export_cvat_masks(items, tmp_path / "pre.zip", color=(12, 200, 7))
    with zipfile.ZipFile(out) as archive:
        for name, mask in items:
            stem = name.rsplit(".", 1)[0]
            painted = np.asarray(mask) > 0
            for folder, colour in (("SegmentationClass", (12, 200, 7)), ("SegmentationObject", (128, 0, 0))):
                image = Image.open(io.BytesIO(archive.read(f"{folder}/{stem}.png")))
                assert image.format == "PNG" and image.mode == "RGB"
                pixels = np.asarray(image)
                assert pixels.shape == (*painted.shape, 3)
                np.testing.assert_array_equal(pixels[painted], np.tile(colour, (painted.sum(), 1)))
                np.testing.assert_array_equal(pixels[~painted], np.zeros(((~painted).sum(), 3)))


def test_the_first_instance_colour_is_the_voc_colormap_entry_one():
    # Pascal VOC colormap, the start of the table every VOC tool uses.
    assert [voc_color(i) for i in range(6)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0),
                                                 (0, 0, 128), (128, 0, 128)]
    assert voc_color(255) == (224, 224, 192)


def test_export_is_reproducible_and_atomic(tmp_path):
    items = masks_of_several_sizes()
    first = export_cvat_masks(items, tmp_path / "a.zip").read_bytes()
    assert export_cvat_masks(items, tmp_path / "b.zip").read_bytes() == first
    # A bad mask last in the list: nothing is written, the old archive stays, no temporary file is left.
    bad = items + [("late.png", np.full((4, 4), 0.3))]
    with pytest.raises(ValueError, match=r"a\.zip: late\.png: mask must be binary"):
        export_cvat_masks(bad, tmp_path / "a.zip")
    assert (tmp_path / "a.zip").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip"]


def test_zero_255_and_bool_masks_are_accepted_and_a_probability_map_is_refused(tmp_path):
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1:3, 2:4] = 255
    for given in (mask, mask > 0, (mask > 0).astype(np.float32)):
        out = export_cvat_masks([("x.png", given)], tmp_path / "x.zip")
        np.testing.assert_array_equal(read_cvat_masks(out)["x"], (mask > 0).astype(np.uint8))
    probability = np.where(mask > 0, 0.3, 0.0)
    with pytest.raises(ValueError, match=r"p\.zip: prob\.png: mask must be binary .*found values 0, 0\.3"):
        export_cvat_masks([("prob.png", probability)], tmp_path / "p.zip")
    with pytest.raises(ValueError, match=r"p\.zip: rgb\.png: mask must be 2-D"):
        export_cvat_masks([("rgb.png", np.zeros((4, 5, 3)))], tmp_path / "p.zip")
    assert not (tmp_path / "p.zip").exists()


@pytest.mark.parametrize(("items", "kwargs", "message"), [
    ([("a.png", np.ones((2, 2))), ("a.jpg", np.ones((2, 2)))], {}, r"a\.png and a\.jpg both become CVAT item 'a'"),
    ([(" a.png", np.ones((2, 2)))], {}, r"white space"),
    ([("../a.png", np.ones((2, 2)))], {}, r"relative path"),
    ([("dir\\a.png", np.ones((2, 2)))], {}, r"relative path"),
    ([("scans/.png", np.ones((2, 2)))], {}, r"hidden file"),
    ([("a.png", np.ones((2, 2)))], {"label": "background"}, r"is the background's name"),
    ([("a.png", np.ones((2, 2)))], {"label": "lung:left"}, r"cannot be written to CVAT's labelmap\.txt"),
    ([("a.png", np.ones((2, 2)))], {"color": (0, 0, 0)}, r"background's"),
    ([("a.png", np.ones((2, 2)))], {"color": (1, 2, 300)}, r"three integers 0-255"),
    ([], {}, r"no items"),
])
def test_export_refuses_what_cvat_would_misread(tmp_path, items, kwargs, message):
    with pytest.raises(ValueError, match=r"bad\.zip: .*" + message):
        export_cvat_masks(items, tmp_path / "bad.zip", **kwargs)
    assert not (tmp_path / "bad.zip").exists()


def test_item_ids_keep_the_folders_of_the_task(tmp_path):
    out = export_cvat_masks([("scans/c1.png", np.eye(3, dtype=bool))], tmp_path / "f.zip")
    with zipfile.ZipFile(out) as archive:
        assert "SegmentationClass/scans/c1.png" in archive.namelist()
        assert archive.read("ImageSets/Segmentation/default.txt") == b"scans/c1\n"
    np.testing.assert_array_equal(read_cvat_masks(out)["scans/c1"], np.eye(3, dtype=np.uint8))


# ---------------------------------------------------------------- reading CVAT's export


def test_two_labels_are_read_by_name_and_an_unnamed_choice_is_refused(two_label_export):
    path, first, second = two_label_export
    lung = read_cvat_masks(path, label="lung")
    heart = read_cvat_masks(path, label="heart")
    assert sorted(lung) == sorted(heart) == ["scan1", "scan2", "scan3"]
    assert lung["scan3"] is None and heart["scan3"] is None  # listed, no PNG: empty, of unknown size
    np.testing.assert_array_equal(lung["scan1"], (first == 1).astype(np.uint8))
    np.testing.assert_array_equal(heart["scan1"], (first == 2).astype(np.uint8))
    np.testing.assert_array_equal(lung["scan2"], np.zeros((5, 3), dtype=np.uint8))
    np.testing.assert_array_equal(heart["scan2"], (second == 2).astype(np.uint8))
    with pytest.raises(ValueError, match=r"two\.zip: labelmap\.txt: lists several labels \(lung, heart\)"):
        read_cvat_masks(path)


def test_an_unzipped_folder_reads_like_the_zip(two_label_export, tmp_path):
    path, _, _ = two_label_export
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "unzipped")
    from_zip, from_folder = read_cvat_masks(path, label="heart"), read_cvat_masks(tmp_path / "unzipped", label="heart")
    assert sorted(from_zip) == sorted(from_folder)
    for key in from_zip:
        np.testing.assert_array_equal(from_folder[key], from_zip[key])


def test_an_export_inside_one_top_level_folder_is_read(two_label_export, tmp_path):
    path, first, _ = two_label_export
    with zipfile.ZipFile(path) as archive:
        files = {f"task_7/{name}": archive.read(name) for name in archive.namelist()}
    nested = write_zip(tmp_path / "nested.zip", files)
    np.testing.assert_array_equal(read_cvat_masks(nested, label="lung")["scan1"], (first == 1).astype(np.uint8))


def test_one_label_is_chosen_without_being_named_and_the_background_is_found_by_colour(tmp_path):
    mask = np.array([[0, 1], [1, 1]])
    files = {
        # CVAT sorts labels; the black one is the background whatever its name.
        "labelmap.txt": "# label : color (RGB) : 'body' parts : actions\nlesion:5,6,7::\nvoid:0,0,0::\n",
        "SegmentationClass/c.png": png_bytes(colour_image(mask, [(0, 0, 0), (5, 6, 7)])),
    }
    masks = read_cvat_masks(write_zip(tmp_path / "one.zip", files))
    np.testing.assert_array_equal(masks["c"], mask.astype(np.uint8))


def test_labels_without_colours_get_the_voc_colormap_and_index_and_palette_masks_are_read(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    palette_image = Image.fromarray(labels, mode="P")
    palette_image.putpalette([c for i in range(3) for c in voc_color(i)])
    buffer = io.BytesIO()
    palette_image.save(buffer, format="PNG")
    files = {
        "labelmap.txt": "background:::\nliver:::\ntumour:::\n",  # colours by index: (128,0,0), (0,128,0)
        "SegmentationClass/rgb.png": png_bytes(colour_image(labels, [voc_color(i) for i in range(3)])),
        "SegmentationClass/index.png": png_bytes(labels),  # one channel: label indices
        "SegmentationClass/palette.png": buffer.getvalue(),
    }
    path = write_zip(tmp_path / "voc.zip", files)
    for name in ("rgb", "index", "palette"):
        assert Image.open(io.BytesIO(files[f"SegmentationClass/{name}.png"])).mode == {
            "rgb": "RGB", "index": "L", "palette": "P"}[name]
    tumour = read_cvat_masks(path, label="tumour")
    for name in ("rgb", "index", "palette"):
        np.testing.assert_array_equal(tumour[name], (labels == 2).astype(np.uint8), err_msg=name)


# ---------------------------------------------------------------- errors name the file and the entry


def test_a_path_that_is_neither_zip_nor_folder_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt: not a zip archive or a folder"):
        read_cvat_masks(text)
    with pytest.raises(ValueError, match=r"missing\.zip: no such file or folder"):
        read_cvat_masks(tmp_path / "missing.zip")


def test_an_export_without_labelmap_is_refused(tmp_path):
    path = write_zip(tmp_path / "export.zip", {"SegmentationClass/a.png": png_bytes(np.zeros((2, 2, 3), np.uint8))})
    with pytest.raises(ValueError, match=r"export\.zip: no labelmap\.txt"):
        read_cvat_masks(path)


@pytest.mark.parametrize(("labelmap", "message"), [
    ("# header\nbackground:0,0,0::\nlung:250,50,83:\n", r"line 3: expected 4 ':'-separated fields .* got 3"),
    ("background:0,0,0::\nlung:250,50::\n", r"line 2: colour '250,50' of label 'lung' is not r,g,b"),
    ("background:0,0,0::\nlung:250,50,300::\n", r"line 2: colour .* is not r,g,b with three integers 0-255"),
    ("background:0,0,0::\n\nlung:1,2,3::\nlung:4,5,6::\n", r"line 4: label 'lung' is already defined on line 3"),
    ("background:0,0,0::\nlung:1,2,3::\nheart:1,2,3::\n",
     r"line 3: label 'heart' has colour \(1, 2, 3\), as label 'lung'"),
    (":1,2,3::\n", r"line 1: the label name is empty"),
    ("# only a comment\n", r"lists no labels"),
])
def test_a_malformed_labelmap_names_the_line(tmp_path, labelmap, message):
    path = write_zip(tmp_path / "export.zip", {"labelmap.txt": labelmap})
    with pytest.raises(ValueError, match=r"export\.zip: labelmap\.txt: " + message):
        read_cvat_masks(path)


def test_a_label_not_in_the_labelmap_is_refused(two_label_export):
    path, _, _ = two_label_export
    with pytest.raises(ValueError, match=r"two\.zip: labelmap\.txt: label 'liver' is not in labelmap\.txt "
                                         r"\(its labels: background, lung, heart\)"):
        read_cvat_masks(path, label="liver")


def test_a_colour_not_in_the_labelmap_names_the_entry_and_the_colour(tmp_path):
    pixels = np.zeros((3, 3, 3), dtype=np.uint8)
    pixels[1, 1] = (12, 200, 7)
    path = write_zip(tmp_path / "export.zip", {"labelmap.txt": TWO_LABELS,
                                               "SegmentationClass/img3.png": png_bytes(pixels)})
    with pytest.raises(ValueError) as caught:
        read_cvat_masks(path, label="lung")
    assert str(caught.value) == f"{path}: SegmentationClass/img3.png: colour (12, 200, 7) is not in labelmap.txt"


@pytest.mark.parametrize(("array", "mode", "message"), [
    (np.zeros((3, 3, 4), dtype=np.uint8), None, r"image mode RGBA is not RGB"),
    (np.zeros((3, 3), dtype=np.uint16), None, r"image mode I;16 is not RGB"),
    (np.zeros((3, 3, 3), dtype=np.uint8), "LA", r"image mode LA is not RGB"),
])
def test_a_mask_that_is_not_rgb_is_refused(tmp_path, array, mode, message):
    data = png_bytes(array, mode)
    path = write_zip(tmp_path / "export.zip", {"labelmap.txt": TWO_LABELS, "SegmentationClass/bad.png": data})
    with pytest.raises(ValueError, match=r"export\.zip: SegmentationClass/bad\.png: " + message):
        read_cvat_masks(path, label="lung")


def test_an_index_mask_with_an_unknown_index_and_a_damaged_png_are_refused(tmp_path):
    grey = np.array([[0, 255]], dtype=np.uint8)  # a 0/255 greyscale mask is not label indices
    path = write_zip(tmp_path / "export.zip", {"labelmap.txt": TWO_LABELS,
                                               "SegmentationClass/grey.png": png_bytes(grey)})
    with pytest.raises(ValueError, match=r"export\.zip: SegmentationClass/grey\.png: value 255 is not the index"):
        read_cvat_masks(path, label="lung")
    path = write_zip(tmp_path / "broken.zip", {"labelmap.txt": TWO_LABELS,
                                               "SegmentationClass/cut.png": b"\x89PNG\r\n"})
    with pytest.raises(ValueError, match=r"broken\.zip: SegmentationClass/cut\.png: not a readable image"):
        read_cvat_masks(path, label="lung")


def test_errors_in_a_folder_name_the_folder_and_the_file(tmp_path):
    folder = tmp_path / "unzipped"
    (folder / "SegmentationClass").mkdir(parents=True)
    (folder / "labelmap.txt").write_text(TWO_LABELS)
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[0, 0] = (1, 1, 1)
    (folder / "SegmentationClass" / "a.png").write_bytes(png_bytes(pixels))
    with pytest.raises(ValueError, match=r"unzipped: SegmentationClass/a\.png: colour \(1, 1, 1\) is not in labelmap"):
        read_cvat_masks(folder, label="heart")


# ---------------------------------------------------------------- task manifest


def test_task_manifest_lists_the_paths_in_rank_order(tmp_path):
    paths = [tmp_path / "b" / "case9.png", "/data/a/case1.png", tmp_path / "case10.png"]
    out = cvat_task_manifest(paths, tmp_path / "round1" / "task_files.txt")
    assert out == tmp_path / "round1" / "task_files.txt"
    assert out.read_text() == f"{paths[0]}\n/data/a/case1.png\n{paths[2]}\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["task_files.txt"]


def test_task_manifest_refuses_names_cvat_could_not_tell_apart(tmp_path):
    with pytest.raises(ValueError, match=r"files\.txt: /x/site1/c1\.png and /x/site2/c1\.png have the same file name"):
        cvat_task_manifest(["/x/site1/c1.png", "/x/site2/c1.png"], tmp_path / "files.txt")
    with pytest.raises(ValueError, match=r"files\.txt: path 0 .* line break"):
        cvat_task_manifest(["a\nb.png"], tmp_path / "files.txt")
    with pytest.raises(ValueError, match=r"files\.txt: no image paths"):
        cvat_task_manifest([], tmp_path / "files.txt")
    assert not (tmp_path / "files.txt").exists()
