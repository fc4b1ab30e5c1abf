"""The peer comparison: the naive XSSR matches xssr's, and each contender is measured and compared."""

import json

import numpy as np
import pytest

from xssr.bench.cost import clustered_embeddings
from xssr.bench.peers import load_contender, naive_xssr, score_picks
from xssr.selection import select, typiclust_select


@pytest.mark.parametrize("seed, budget", [(0, 15), (1, 30), (2, 1), (3, 40)])
def test_naive_xssr_picks_what_xssr_picks(seed, budget):
    pool, source = clustered_embeddings(300, 200, 16, seed)
    indices, coverage, alpha = naive_xssr(pool, source, budget)
    expected = select(pool, source, method="xssr", budget=budget)
    np.testing.assert_array_equal(indices, expected.indices)  # the same images in the same order
    assert alpha == expected.alpha and coverage == pytest.approx(expected.coverage, rel=1e-9)


def test_naive_xssr_density_uses_small_blocks_the_same_way():
    pool, source = clustered_embeddings(120, 50, 8, 4)
    whole = naive_xssr(pool, source, 10)
    blocks = naive_xssr(pool, source, 10, block_bytes=8 * 120 * 7)  # 7 rows at a time
    np.testing.assert_array_equal(whole[0], blocks[0])


def test_agreement_is_scored_against_the_right_xssr_row():
    pool = np.array([[0.0], [1.0], [2.0], [10.0]])
    key = {"n_pool": 4, "n_source": 4, "dim": 1, "picks": 2, "seed": 0}
    rows = [{"contender": "xssr:probcover", **key, "indices": [0, 3], "delta": 1.0},
            {"contender": "skactiveml:probcover", **key, "indices": [1, 3], "delta": 1.0},
            {"contender": "naive:xssr", **key, "indices": [1, 2]}]  # its xssr row is missing
    score_picks(rows, pool)
    xssr, peer, naive = rows
    assert xssr["ball_coverage"] == 0.75 and peer["ball_coverage"] == 1.0  # 2 is 2 away from 0, 1 from 1
    assert xssr["coverage"] == pytest.approx((0 + 1 + 2 + 0) / 4) and peer["coverage"] == pytest.approx(0.5)
    assert peer["compared_with"] == "xssr:probcover" and peer["overlap"] == 0.5 and peer["same_order"] is False
    assert "overlap" not in xssr and "overlap" not in naive and "ball_coverage" not in naive


def test_bench_peers_measures_resumes_and_writes_its_docs_block(tmp_path):
    from click.testing import CliRunner

    from xssr.cli import main

    docs = tmp_path / "bench.md"
    docs.write_text("# Benchmarks\n\nprose\n")
    out = tmp_path / "peers.json"
    args = ["bench", "peers", "--pool-sizes", "300", "--dim", "16", "--picks", "15",
            "--contenders", "naive:xssr,xssr:xssr", "--out", str(out), "--docs", str(docs)]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    rows = {r["contender"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["xssr:xssr", "naive:xssr"]  # the xssr row first, whatever order was asked
    for row in rows.values():
        assert row["seconds"] > 0 and row["peak_rss_mb"] >= row["data_rss_mb"] > 0 and len(row["indices"]) == 15
        assert row["torch_loaded"] is False  # hidden from the measured process
    assert rows["naive:xssr"]["overlap"] == 1.0 and rows["naive:xssr"]["same_order"] is True
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nprose\n") and "<!-- BEGIN generated: peers -->" in text
    assert "`xssr bench peers --docs" in text and "| 300 | 16 | 15 | naive:xssr |" in text
    assert "| xssr:xssr | 1.000 | yes |" in text
    assert CliRunner().invoke(main, args).exit_code == 0  # every point cached: nothing runs again
    assert json.loads(out.read_text()) == list(rows.values()) and text.count("BEGIN generated: peers") == 1


@pytest.mark.parametrize("option, value, message", [
    ("--contenders", "xssr:magic", "xssr:magic"),
    ("--pool-sizes", "10,x", "--pool-sizes"),
    ("--picks", "400", "must hold the 400 picks"),
])
def test_bench_peers_rejects_bad_options_before_measuring(tmp_path, option, value, message):
    from click.testing import CliRunner

    from xssr.cli import main

    args = ["bench", "peers", "--pool-sizes", "300", "--out", str(tmp_path / "p.json"), option, value]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2 and message in outcome.output
    assert not (tmp_path / "p.json").exists()


def test_skactiveml_contenders_run_like_for_like():
    pytest.importorskip("skactiveml")
    pool, source = clustered_embeddings(400, 400, 16, 0)
    ours, extra = load_contender("xssr:probcover")(pool, source, 20, 0)
    theirs, their_extra = load_contender("skactiveml:probcover")(pool, source, 20, 0, extra["delta"])
    rows = [{"contender": c, "n_pool": 400, "n_source": 400, "dim": 16, "picks": 20, "seed": 0,
             "indices": [int(i) for i in picks], **e}
            for c, picks, e in (("xssr:probcover", ours, extra), ("skactiveml:probcover", theirs, their_extra))]
    score_picks(rows, pool)
    assert their_extra["delta"] == extra["delta"] and len(set(theirs.tolist())) == 20
    # Both run the greedy on the same ball graph: they cover about as much of the pool.
    assert rows[1]["ball_coverage"] == pytest.approx(rows[0]["ball_coverage"], abs=0.05)
    ours, _ = load_contender("xssr:typiclust")(pool, source, 20, 0)
    theirs, _ = load_contender("skactiveml:typiclust")(pool, source, 20, 0)
    # Same clusters, same typicality: they differ at most where xssr leaves clusters under 5 images.
    sizes = np.bincount(typiclust_select(pool, 20, 0).labels, minlength=20)
    assert len(set(ours.tolist()) & set(theirs.tolist())) >= 20 - int(np.sum(sizes < 5))
