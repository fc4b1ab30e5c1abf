"""`xssr embed-images`: any image set embedded with a finished run's model, in a folder of its own."""

import numpy as np
import pytest
from click.testing import CliRunner

from xssr.cli import main
from xssr.data import make_synthetic_dataset
from xssr.data.names import read_named_rows

TINY = ["--image-size", "32", "--set", "pretrain.epochs=1", "--set", "pretrain.widths=4,8,8,16",
        "--set", "pretrain.patch_size=8", "--set", "select.k=3", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_synthetic_dataset(data, n_source=8, n_pool=16, n_test=6, size=32)
    targets = "synthetic_target_a,synthetic_target_b,synthetic_target_c"
    specs = {"source": f"{data}#site=synthetic_source", "pool": f"{data}#split=train&site={targets}",
             "test": f"{data}#split=test"}
    run = tmp_path_factory.mktemp("run") / "run"
    result = CliRunner().invoke(main, ["select", "--source", specs["source"], "--pool", specs["pool"],
                                       "--methods", "coreset", "--budget", "4", *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    return {"run": run, "data": data, **specs}


def _invoke(*args):
    return CliRunner().invoke(main, ["embed-images", *map(str, args)])


def test_new_images_get_the_runs_embedding_and_an_index_precomputed_reads(embedded_run, tmp_path):
    run = embedded_run["run"]
    out = tmp_path / "more"
    result = _invoke(run, embedded_run["pool"], "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    # The same model on the same images: exactly the run's own pool rows, in the same order.
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"), np.load(run / "embed" / "pool.npy"))
    assert [r["key"] for r in read_named_rows(out / "index.csv")] == \
        [r["key"] for r in read_named_rows(run / "embed" / "pool_index.csv")]

    # ... and usable as precomputed embeddings: CoreSet picks what it picked in the run.
    again = tmp_path / "again"
    result = CliRunner().invoke(main, [
        "select", "--pool", embedded_run["pool"], "--methods", "coreset", "--budget", "4", *TINY,
        "--set", "embed.model=precomputed", "--set", f"embed.pool_file={out / 'embeddings.npy'}",
        "--set", f"embed.pool_index={out / 'index.csv'}", "--out", str(again)])
    assert result.exit_code == 0, result.output
    picks = [[r["key"] for r in read_named_rows(folder / "select" / "coreset" / "selection.csv")]
             for folder in (run, again)]
    assert picks[0] == picks[1]


def test_test_images_are_embedded_without_touching_the_run(embedded_run, tmp_path):
    run = embedded_run["run"]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    result = _invoke(run, embedded_run["test"], "--out", tmp_path / "test_emb")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "test_emb" / "embeddings.npy").shape[0] == 6
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_bad_inputs_are_named_and_nothing_is_written(embedded_run, tmp_path):
    run, out = embedded_run["run"], tmp_path / "out"
    result = _invoke(tmp_path, embedded_run["pool"], "--out", out)
    assert result.exit_code == 2 and "not an xssr run folder (no config.json)" in result.output

    for inside in (run, run / "embed", run / "pretrain", run / "more"):
        result = _invoke(run, embedded_run["pool"], "--out", inside)
        assert result.exit_code == 2 and "is inside the run folder" in result.output

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scan.png").write_bytes(b"not a png")
    result = _invoke(run, str(broken), "--out", out)
    assert result.exit_code == 2 and "scan.png" in result.output and "Traceback" not in result.output

    result = _invoke(run, f"{embedded_run['data']}#site=no_such_site", "--out", out)
    assert result.exit_code == 2 and "no_such_site" in result.output
    assert not out.exists()


def test_a_run_without_a_fitted_model_is_refused(embedded_run, tmp_path):
    bare = tmp_path / "bare"
    result = CliRunner().invoke(main, ["select", "--pool", embedded_run["pool"], "--methods", "random",
                                       "--budget", "2", *TINY, "--out", str(bare)])
    assert result.exit_code == 0, result.output
    result = _invoke(bare, embedded_run["pool"], "--out", tmp_path / "o")
    assert result.exit_code == 2 and "no finished embeddings" in result.output


def test_names_a_spreadsheet_would_read_as_formulas_still_line_up(embedded_run, tmp_path):
    import shutil

    odd = tmp_path / "odd"
    odd.mkdir()
    for i, image in enumerate(sorted((embedded_run["data"] / "images").glob("*.png"))[:5]):
        shutil.copy(image, odd / f"{'-=+@'[i % 4]}scan{i}.png")  # written with the formula guard: "'-scan0.png"
    out = tmp_path / "emb"
    assert _invoke(embedded_run["run"], str(odd), "--out", out).exit_code == 0
    assert "'-scan0.png" in (out / "index.csv").read_text()
    result = CliRunner().invoke(main, [
        "select", "--pool", str(odd), "--methods", "coreset", "--budget", "2", *TINY,
        "--set", "embed.model=precomputed", "--set", f"embed.pool_file={out / 'embeddings.npy'}",
        "--set", f"embed.pool_index={out / 'index.csv'}", "--out", str(tmp_path / "sel")])
    assert result.exit_code == 0, result.output


def test_a_users_index_may_name_images_through_a_symlink(embedded_run, tmp_path):
    from xssr.data import load_records
    from xssr.embedding.precomputed import PrecomputedEmbedder

    link = tmp_path / "link"
    link.symlink_to(embedded_run["data"])
    records = load_records(embedded_run["pool"])
    index = tmp_path / "index.csv"
    index.write_text("image\n" + "".join(f"{link / r.image.relative_to(embedded_run['data'])}\n"
                                         for r in reversed(records)))
    array = np.arange(len(records), dtype=np.float32)[:, None]
    reordered = PrecomputedEmbedder._reorder(array, index, records, "embed.pool_index")
    assert reordered[:, 0].tolist() == list(range(len(records)))[::-1]
