import json

import pytest

from xssr.report.io import atomic_path, read_csv, write_csv, write_json
from xssr.report.stages import Stage


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
