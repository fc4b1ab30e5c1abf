"""Edges of the export/import round found in review: file names a URL or a spreadsheet would
change, images a browser cannot show, a wrong model file, masks a tool exports without a size."""

import json

import numpy as np
import pytest
from PIL import Image

from xssr.data import ImageRecord, load_records
from xssr.exchange.binary import check_label
from xssr.exchange.masks_in import check_masks, masks_from_folder, write_round
from xssr.exchange.rounds import write_display_images


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_a_round_manifest_gives_back_text_cells_the_formula_guard_protected(tmp_path):
    image = _png(tmp_path / "pool" / "a.png", np.zeros((4, 5), np.uint8))
    record = ImageRecord(image=image, mask=None, site="-siteA", case_id="=a")
    manifest = write_round(tmp_path / "round", [record], [record], {record.key: np.ones((4, 5), np.uint8)})
    assert "'-siteA" in manifest.read_text()  # guarded for a spreadsheet ...
    (back,) = load_records(f"{manifest}#paths=any")
    assert (back.site, back.case_id) == ("-siteA", "=a")  # ... and read back as written


def test_mask_folders_ignore_a_file_managers_dot_files(tmp_path):
    image = _png(tmp_path / "pool" / "case1.png", np.zeros((4, 5), np.uint8))
    record = ImageRecord(image=image, mask=None)
    _png(tmp_path / "drawn" / "case1.png", np.full((4, 5), 255, np.uint8))
    (tmp_path / "drawn" / "._case1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    found = masks_from_folder(tmp_path / "drawn", [record])
    assert list(found) == [record.key]


def test_a_mask_exported_without_its_size_is_empty_only_when_allowed(tmp_path):
    from xssr.data import InputError

    image = _png(tmp_path / "pool" / "a.png", np.zeros((4, 5), np.uint8))
    record = ImageRecord(image=image, mask=None)
    with pytest.raises(InputError, match="nothing was drawn on .*--allow-empty"):
        check_masks([record], {record.key: (None, "export.json (a)")})
    checked = check_masks([record], {record.key: (None, "export.json (a)")}, allow_empty=True)
    assert checked[record.key].shape == (4, 5) and not checked[record.key].any()


@pytest.mark.parametrize("label", ["background", "Background", "", " lung", "optic:disc", "#lung", "a\nb", 3])
def test_every_exporter_refuses_a_label_one_of_the_tools_cannot_hold(label):
    with pytest.raises(ValueError, match="label"):
        check_label(label)


def test_nnunet_export_refuses_a_background_label_before_writing(tmp_path):
    from xssr.exchange.nnunet import export_nnunet

    image = _png(tmp_path / "a.png", np.zeros((4, 5), np.uint8))
    mask = _png(tmp_path / "a_mask.png", np.full((4, 5), 255, np.uint8))
    with pytest.raises(ValueError, match="background's name"):
        export_nnunet([ImageRecord(image=image, mask=mask)], tmp_path / "nn", dataset_id=5, name="x", label="background")
    assert not (tmp_path / "nn").exists()


def test_images_a_browser_cannot_show_are_exported_as_8_bit_pngs(tmp_path):
    shown = _png(tmp_path / "pool" / "plain.png", np.arange(20, dtype=np.uint8).reshape(4, 5))
    deep = _png(tmp_path / "pool" / "deep.png", (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5))
    tiff = tmp_path / "pool" / "scan.tif"
    Image.fromarray(np.arange(20, dtype=np.uint8).reshape(4, 5)).save(tiff)
    records = [ImageRecord(image=p, mask=None) for p in (shown, deep, tiff)]
    files = write_display_images(records, tmp_path / "out.images")
    assert set(files) == {records[1].key, records[2].key}  # the 8-bit PNG is shown as it is
    for record in records[1:]:
        png = Image.open(files[record.key])
        assert png.mode == "L" and png.size == (5, 4) and files[record.key].stem == record.image.stem


def test_label_studio_urls_quote_the_characters_a_url_would_change(tmp_path, monkeypatch):
    from xssr.exchange import rounds

    image = _png(tmp_path / "docs root" / "a+b #1.png", np.zeros((4, 5), np.uint8))
    record = ImageRecord(image=image, mask=None)
    monkeypatch.setattr(rounds, "run_selection", lambda run, method: (None, [record], [record]))
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(tmp_path / "docs root"))
    out = rounds.export_label_studio("run", "random", tmp_path / "tasks.json", image_url_prefix="/data/local-files/?d=")
    (task,) = json.loads(out.read_text())
    assert task["data"]["image"] == "/data/local-files/?d=a%2Bb%20%231.png"


def test_a_model_file_that_is_not_an_xssr_unet_is_a_named_error(tmp_path):
    import torch

    from xssr.config import RunConfig
    from xssr.exchange.rounds import predicted_masks

    wrong = tmp_path / "mae.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, wrong)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    for path in (wrong, garbage):
        with pytest.raises(ValueError, match=f"{path.name}: not the state dict of an xssr U-Net"):
            predicted_masks([], path, RunConfig())


def test_a_selection_file_without_its_key_column_is_a_named_error(tmp_path):
    from xssr.config import RunConfig
    from xssr.exchange.rounds import run_selection

    _png(tmp_path / "pool" / "a.png", np.zeros((4, 5), np.uint8))
    config = RunConfig()
    config.data.pool = str(tmp_path / "pool")
    (tmp_path / "run" / "select" / "xssr").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text(json.dumps(config.to_dict()))
    (tmp_path / "run" / "select" / "xssr" / "selection.csv").write_text("rank,image\n1,a.png\n")
    with pytest.raises(ValueError, match=r"selection\.csv: no 'key' column"):
        run_selection(tmp_path / "run", "xssr")
