import csv
import json

import pytest

from xssr.report.io import atomic_path, check_writable_folder, read_csv, remove_interrupted_writes, write_csv, write_json
from xssr.pipeline.stage import Stage


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_csv_round_trip(tmp_path):
    path = write_csv(tmp_path / "x.csv", [{"rank": 1, "score": 0.123456789, "site": None}])
    assert read_csv(path) == [{"rank": "1", "score": "0.123457", "site": ""}]


def test_stage_completion_depends_on_inputs(tmp_path):
    stage = Stage(tmp_path / "s", {"epochs": 1})
    assert not stage.is_complete()
    started = stage.start()
    stage.finish(started, {"file": "x"})
    assert stage.is_complete()
    assert Stage(tmp_path / "s", {"epochs": 1}).outputs() == {"file": "x"}
    assert not Stage(tmp_path / "s", {"epochs": 2}).is_complete()
    # starting again removes the completion marker until finish() runs
    stage.start()
    assert not stage.is_complete()


@pytest.mark.parametrize("text", ["=cmd|' -C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "'quoted", "plain", ""])
def test_formula_like_cells_are_guarded_and_read_back_unchanged(tmp_path, text):
    path = write_csv(tmp_path / "x.csv", [{"name": text, "score": -0.5}])
    with open(path, newline="", encoding="utf-8") as handle:
        cell, score = list(csv.reader(handle))[1]  # the raw cells, guard included
    # Spreadsheets run a cell starting with = + - @ (tab, CR) as a formula; guarded, it is text.
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert score == "-0.5"  # numbers are numbers, not text: left as they are
    assert read_csv(path) == [{"name": text, "score": "-0.5"}]


def test_write_errors_name_the_file_not_the_temporary(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OSError) as error:
        write_json(blocker / "run" / "config.json", {})
    assert error.value.filename == str(blocker / "run" / "config.json")


@pytest.mark.parametrize("layout, message", [("file", "is a file"), ("under-file", "which is a file")])
def test_check_writable_folder_refuses_files(tmp_path, layout, message):
    (tmp_path / "f").write_text("x")
    folder = tmp_path / "f" if layout == "file" else tmp_path / "f" / "deeper" / "run"
    with pytest.raises(ValueError, match=message):
        check_writable_folder(folder)


def test_check_writable_folder_leaves_nothing(tmp_path):
    assert check_writable_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the probe file is created


def test_remove_interrupted_writes_only_takes_the_named_and_old_enough(tmp_path):
    import os

    for name in (".progress.json.ab12.tmp", ".run.json.cd34.tmp", "keep.json", ".hidden"):
        (tmp_path / name).write_text("x")
    old = tmp_path / ".run.json.ef56.tmp"
    old.write_text("x")
    os.utime(old, (0, 0))
    remove_interrupted_writes(tmp_path, "run.json", older_than=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".progress.json.ab12.tmp",
                                                          ".run.json.cd34.tmp", "keep.json"]
    remove_interrupted_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "keep.json"]
