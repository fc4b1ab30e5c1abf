"""Fixtures shared by the test modules."""

import pytest

from xssr.data import make_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic_specs(tmp_path_factory):
    """Data specs of a small synthetic two-domain set: 8 source, 20 pool and 6 test images at 32 px."""
    folder = make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n_source=8, n_pool=20, n_test=6, size=32)
    manifest = folder / "manifest.csv"
    return {
        "source": f"{manifest}#site=synthetic_source",
        "pool": f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c",
        "test": f"{manifest}#split=test",
    }
