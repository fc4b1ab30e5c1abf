"""Checks on the real shared datasets; run with `python -m pytest -m realdata`."""

import json

import pytest
from click.testing import CliRunner

from xssr import api
from xssr.pipeline import Inputs
from xssr.cli import _build_config, main
from xssr.data import default_data_root

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module", autouse=True)
def needs_shared_data():
    root = default_data_root()
    if root is None or not (root / "cxr_lung_qu" / "manifest.csv").exists():
        pytest.skip("the shared real data are not here (set XSSR_DATA_ROOT)")


def _preset(name, **options):
    base = dict(config_path=None, preset=name, source=None, pool=None, test=None, data_root=None, methods=None,
                budget=None, image_size=None, seed=None, device="cpu", settings=())
    base.update(options)
    return _build_config(**base)


def test_cxr_preset_has_the_protocol_sizes():
    summary = api.validate(_preset("cxr"))
    assert summary.counts == {"source": 1338, "pool": 453, "test": 466}
    assert summary.channel_kinds == {"gray"}


def test_cxr_pool_sample_is_stable():
    first = Inputs(_preset("cxr"))
    first.check(["pool"])
    second = Inputs(_preset("cxr"))
    second.check(["pool"])
    assert [r.key for r in first.records["pool"]] == [r.key for r in second.records["pool"]]


def test_fundus_pipeline_runs_on_real_images(tmp_path):
    out = tmp_path / "fundus"
    result = CliRunner().invoke(main, [
        "run", "--preset", "fundus", "--methods", "xssr,random", "--image-size", "64", "--device", "cpu",
        "--set", "pretrain.epochs=2", "--set", "train.steps=100", "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["xssr"]["n_train"] == 5 and metrics["xssr"]["dice"]["overall"]["n"] == 51
    assert set(metrics["xssr"]["dice"]["per_site"]) == {"drishti_gs"}
