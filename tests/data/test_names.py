"""Run CSVs name images relative to their data root, and every reader resolves them back."""

import json
from pathlib import Path

from xssr.data.names import (
    csv_root,
    data_root,
    read_named_rows,
    record_row,
    relative_key,
    resolve_name,
)
from xssr.data.records import ImageRecord
from xssr.report.io import write_csv


def _records(tmp_path):
    return [ImageRecord(tmp_path / "data" / "images" / "a" / "x.png", site="s"),
            ImageRecord(tmp_path / "data" / "images" / "b" / "y.nii.gz", slice_index=3)]


def test_root_is_the_deepest_common_folder_and_names_round_trip(tmp_path):
    records = _records(tmp_path)
    root = data_root(records)
    assert root == tmp_path / "data" / "images"
    rows = [record_row(i, r, root) for i, r in enumerate(records)]
    assert [r["image"] for r in rows] == ["a/x.png", "b/y.nii.gz"]
    assert rows[1]["key"] == "b/y.nii.gz#slice=3"
    assert [resolve_name(r["key"], root) for r in rows] == [r.key for r in records]
    assert data_root([]) is None and data_root(records[:1]) == tmp_path / "data" / "images" / "a"


def test_a_name_outside_the_root_stays_absolute(tmp_path):
    outside = ImageRecord(tmp_path / "elsewhere" / "z.png")
    key = relative_key(outside, tmp_path / "data")
    assert key == str(outside.image) and resolve_name(key, tmp_path / "data") == str(outside.image)


def test_reader_uses_the_stage_manifest_root_else_the_csv_folder(tmp_path):
    records = _records(tmp_path)
    root = data_root(records)
    stage = tmp_path / "run" / "select" / "xssr"
    write_csv(stage / "selection.csv", [record_row(i, r, root) for i, r in enumerate(records)])
    (stage / "manifest.json").write_text(json.dumps({"outputs": {"data_root": str(root)}}))
    assert csv_root(stage / "selection.csv") == root
    assert [r["key"] for r in read_named_rows(stage / "selection.csv")] == [r.key for r in records]

    # Without a stage manifest (a user's own index) names start at the CSV's folder, like a manifest's.
    own = tmp_path / "data" / "index.csv"
    write_csv(own, [{"image": "images/a/x.png"}])
    assert read_named_rows(own)[0]["image"] == str(records[0].image)


def test_old_absolute_rows_and_index_only_rows_are_read_unchanged(tmp_path):
    write_csv(tmp_path / "old.csv", [{"image": "/abs/x.png", "key": "/abs/x.png#slice=2"},
                                     {"image": "", "key": "7"}])
    rows = read_named_rows(tmp_path / "old.csv")
    assert rows[0] == {"image": "/abs/x.png", "key": "/abs/x.png#slice=2"}
    assert rows[1]["key"] == "7"


def test_a_garbled_manifest_beside_the_csv_falls_back_to_its_folder(tmp_path):
    write_csv(tmp_path / "pool_index.csv", [{"image": "x.png"}])
    (tmp_path / "manifest.json").write_text("[1, 2")
    assert csv_root(tmp_path / "pool_index.csv") == tmp_path.resolve()
    assert Path(read_named_rows(tmp_path / "pool_index.csv")[0]["image"]) == (tmp_path / "x.png").resolve()
