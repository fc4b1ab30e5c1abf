"""benchmarks/site_novelty.py on a hand-made cache folder: per-site medians and a clear error."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "site_novelty.py"


def _load():
    spec = importlib.util.spec_from_file_location("site_novelty", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed_folder(tmp_path, pool, sites):
    embed = tmp_path / "abc_s0" / "embed"
    embed.mkdir(parents=True)
    np.save(embed / "source.npy", np.zeros((3, 2), np.float32))
    np.save(embed / "pool.npy", np.asarray(pool, np.float32))
    rows = ["index,site"] + [f"{i},{s}" for i, s in enumerate(sites)]
    (embed / "pool_index.csv").write_text("\n".join(rows) + "\n")
    return embed.parent


def test_median_distance_to_source_per_site(tmp_path):
    # Source at the origin: each image's novelty is its norm.
    folder = _seed_folder(tmp_path, [[1, 0], [3, 0], [0, 2], [0, 5], [0, 10]], ["a", "a", "b", "b", "b"])
    assert _load().site_novelty(folder) == pytest.approx({"a": 2.0, "b": 5.0})


def test_index_that_does_not_match_the_embeddings_is_named(tmp_path):
    folder = _seed_folder(tmp_path, [[1, 0], [3, 0]], ["a"])
    with pytest.raises(SystemExit, match="pool_index.csv: 1 rows for 2 embeddings"):
        _load().site_novelty(folder)


def test_prints_one_row_per_seed(tmp_path, monkeypatch, capsys):
    _seed_folder(tmp_path, [[1, 0], [0, 4]], ["a", "b"])
    monkeypatch.setattr("sys.argv", ["site_novelty.py", str(tmp_path)])
    _load().main()
    assert capsys.readouterr().out.splitlines() == ["| seed | a | b |", "|---|---|---|", "| s0 | 1.000 | 4.000 |"]


def test_cache_without_embeddings_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "abc_s0" / "pretrain").mkdir(parents=True)  # MAE trained, nothing embedded yet
    monkeypatch.setattr("sys.argv", ["site_novelty.py", str(tmp_path)])
    with pytest.raises(SystemExit, match="no seed folder with cached embeddings; run the suite first"):
        _load().main()
