"""A tiny finished run whose file and site names try to break out of HTML (shared by the report tests)."""

import csv
import shutil

import pytest
from click.testing import CliRunner

from xssr.cli import main
from xssr.data import make_synthetic_dataset

#: Names the report must show as text: markup, an event handler, a spreadsheet formula.
EVIL_POOL = "<img src=x onerror=alert(1)>_{}.png"
EVIL_TEST = '=HYPERLINK("x")_{}.png'
EVIL_SITE = "<script>alert(1)</script>"

# Every stage runs for real, in a few seconds on two CPU cores (as tests/test_cli.py's TINY).
TINY = [
    "--image-size", "32",
    "--set", "pretrain.epochs=1", "--set", "pretrain.widths=4,8,8,16", "--set", "pretrain.patch_size=8",
    "--set", "train.epochs=1", "--set", "train.steps=0", "--set", "train.channels=4,8", "--set", "train.num_res_units=0",
    "--set", "select.k=3", "--device", "cpu", "--no-progress",
]


def _evil_dataset(folder):
    """The synthetic set with every pool and test image renamed, and one pool site renamed,
    listed in one manifest per group (a spec's site filter could not name such a site)."""
    make_synthetic_dataset(folder, n_source=8, n_pool=20, n_test=6, size=32)
    with open(folder / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    groups = {"source": [], "pool": [], "test": []}
    for row in rows:
        role, i = row["case_id"].rsplit("_", 1)
        if role in ("pool", "test"):
            name = (EVIL_POOL if role == "pool" else EVIL_TEST).format(int(i))
            shutil.move(folder / row["image"], folder / "images" / name)
            row["image"] = f"images/{name}"
            if role == "pool" and row["site"] == "synthetic_target_a":
                row["site"] = EVIL_SITE
        groups[role].append(row)
    for role, group in groups.items():
        with open(folder / f"{role}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(group[0]))
            writer.writeheader()
            writer.writerows(group)
    return {role: str(folder / f"{role}.csv") for role in groups}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished `xssr run` (xssr, random, full; 4 of 20 picked) on the renamed set; do not modify it."""
    data = _evil_dataset(tmp_path_factory.mktemp("evil_data"))
    out = tmp_path_factory.mktemp("evil_run") / "run"
    result = CliRunner().invoke(main, ["run", "--source", data["source"], "--pool", data["pool"], "--test",
                                       data["test"], "--methods", "xssr,random,full", "--budget", "0.2", *TINY,
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output
    return out
