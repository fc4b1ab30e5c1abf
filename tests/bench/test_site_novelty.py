"""benchmarks/site_novelty.py on a hand-made store: per-site medians and a clear error."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "site_novelty.py"
SUITE = """name = "tiny"
seeds = [0]
[protocol]
"train.recipe" = "supervised"
[[datasets]]
name = "d"
source = "src"
pool = "the-pool"
test = "the-test"
[[experiments]]
table = "T1"
methods = ["random"]
"""


def _load():
    spec = importlib.util.spec_from_file_location("site_novelty", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _embed_stage(work, pool, sites, seed=0, pool_spec="the-pool"):
    embed = work / "store" / "embed" / f"fp{seed}{pool_spec}"
    embed.mkdir(parents=True)
    np.save(embed / "source.npy", np.zeros((3, 2), np.float32))
    np.save(embed / "pool.npy", np.asarray(pool, np.float32))
    rows = ["index,site"] + [f"{i},{s}" for i, s in enumerate(sites)]
    (embed / "pool_index.csv").write_text("\n".join(rows) + "\n")
    (embed / "manifest.json").write_text(json.dumps({"outputs": {"seed": seed, "pool_spec": pool_spec}}))
    return embed


def test_median_distance_to_source_per_site(tmp_path):
    # Source at the origin: each image's novelty is its norm.
    folder = _embed_stage(tmp_path, [[1, 0], [3, 0], [0, 2], [0, 5], [0, 10]], ["a", "a", "b", "b", "b"])
    assert _load().site_novelty(folder) == pytest.approx({"a": 2.0, "b": 5.0})


def test_index_that_does_not_match_the_embeddings_is_named(tmp_path):
    folder = _embed_stage(tmp_path, [[1, 0], [3, 0]], ["a"])
    with pytest.raises(SystemExit, match="pool_index.csv: 1 rows for 2 embeddings"):
        _load().site_novelty(folder)


def test_prints_one_row_per_seed_of_the_suite_only(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.toml").write_text(SUITE)
    _embed_stage(tmp_path, [[1, 0], [0, 4]], ["a", "b"])
    _embed_stage(tmp_path, [[9, 0]], ["c"], pool_spec="another-suite's-pool")
    monkeypatch.setattr("sys.argv", ["site_novelty.py", str(tmp_path / "tiny.toml"), "--work", str(tmp_path)])
    _load().main()
    assert capsys.readouterr().out.splitlines() == ["| seed | a | b |", "|---|---|---|", "| s0 | 1.000 | 4.000 |"]


def test_store_without_the_suites_embeddings_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text(SUITE)
    (tmp_path / "store" / "pretrain" / "abc").mkdir(parents=True)  # MAE trained, nothing embedded yet
    monkeypatch.setattr("sys.argv", ["site_novelty.py", str(tmp_path / "tiny.toml"), "--work", str(tmp_path)])
    with pytest.raises(SystemExit, match="no cached embeddings of suite 'tiny'; run the suite first"):
        _load().main()
