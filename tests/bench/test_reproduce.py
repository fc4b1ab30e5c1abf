"""A committed benchmark result must come out again when its run is repeated from scratch."""

import json
from pathlib import Path

import pytest

from xssr.bench import load_suite, run_suite
from xssr.bench.runner import result_path
from xssr.data import default_data_root

REPO = Path(__file__).parents[2]
COMMITTED = REPO / "benchmarks" / "results"


@pytest.mark.realdata
@pytest.mark.parametrize("suite_name, dataset, method, seed", [
    ("fundus", "fundus-drions2drishti", "random", 0),
    ("schedule", "cxr-val", "random", 0),
    # The whole chain: MAE from scratch (100 epochs, about 2.5 min here), embeddings, auto-alpha, U-Net.
    ("fundus", "fundus-drions2drishti", "xssr", 1),
])
def test_a_cached_run_reproduces_its_selection_and_dice(tmp_path, suite_name, dataset, method, seed):
    if default_data_root() is None:
        pytest.skip("the shared real data are not here (set XSSR_DATA_ROOT)")
    suite = load_suite(REPO / "benchmarks" / "suites" / f"{suite_name}.toml")
    candidates = [s for s in suite.runs() if s.dataset == dataset and s.method == method and s.seed == seed
                  and result_path(COMMITTED, s).exists()]
    if not candidates:
        pytest.skip(f"no committed {method} seed-{seed} run of {suite_name}/{dataset} yet")
    spec = min(candidates, key=lambda s: s.budget)
    stored = json.loads(result_path(COMMITTED, spec).read_text())
    assert stored["key"] == spec.key, "the committed run no longer matches its suite file"
    counts = run_suite(suite, tmp_path / "results", tmp_path / "work", only=lambda s: s.key == spec.key)
    assert counts["ran"] == 1
    again = json.loads(result_path(tmp_path / "results", spec).read_text())
    assert [c["case_id"] for c in again["selected"]] == [c["case_id"] for c in stored["selected"]]
    if method == "xssr":  # a retrained MAE gives the same alpha curve, so the embeddings match too
        assert again["selection"]["alpha"] == stored["selection"]["alpha"]
        assert again["selection"]["coverage"] == pytest.approx(stored["selection"]["coverage"], rel=1e-4)
    # Same seed, same code, same CPU kind: Dice should agree closely (bf16 kernels may differ slightly).
    assert again["dice"]["overall"]["mean"] == pytest.approx(stored["dice"]["overall"]["mean"], abs=0.01)
