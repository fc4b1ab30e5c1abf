"""A new selection method or training recipe is one function plus one registry line: prove it with
toy ones that run through the whole pipeline (config check, CLI, stage cache, CSV, metrics)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from xssr.cli import main
from xssr.data import make_synthetic_dataset
from xssr.selection import ALGORITHMS, SelectionResult, register_algorithm
from xssr.selection.registry import Method, register, unregister
from xssr.train.recipes import register_recipe, unregister_recipe

TINY = ["--image-size", "32", "--device", "cpu", "--set", "train.steps=2", "--set", "train.channels=4,8",
        "--set", "train.num_res_units=0", "--no-progress"]


@pytest.fixture
def data(tmp_path):
    manifest = make_synthetic_dataset(tmp_path / "data", n_source=4, n_pool=12, n_test=4, size=32) / "manifest.csv"
    return ["--pool", f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c",
            "--test", f"{manifest}#split=test"]


@pytest.fixture
def last_first():
    # The toy algorithm: the last `budget` pool images, newest first.
    @register_algorithm("last-first")
    def _last_first(p):
        n = p["pool"].shape[0]
        return SelectionResult(method="last-first", indices=np.arange(n - 1, n - 1 - p["budget"], -1), coverage=0.0)

    register(Method("last-first", "last-first", uses_embeddings=False, summary="toy: the last images"))
    yield
    unregister("last-first")
    ALGORITHMS.pop("last-first")


def test_a_registered_selection_method_runs_end_to_end(data, tmp_path, last_first):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", *data, "--methods", "last-first,random", "--budget", "3", *TINY,
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = (out / "select" / "last-first" / "selection.csv").read_text().splitlines()
    assert [int(r.split(",")[1]) for r in rows[1:]] == [11, 10, 9]  # a pool of 12
    assert json.loads((out / "metrics.json").read_text())["last-first"]["n_train"] == 3


def test_an_unregistered_method_is_refused_with_the_list(data, tmp_path):
    result = CliRunner().invoke(main, ["select", *data, "--methods", "last-first", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "last-first" in result.output and "stratified-random" in result.output


def test_a_registered_training_recipe_is_used_and_fingerprinted(data, tmp_path):
    from xssr.train.segment import train_unet

    calls = []

    def twice_the_lr(data, config, **kwargs):
        calls.append(len(data.images))
        import dataclasses

        return train_unet(data.images, data.masks, dataclasses.replace(config, lr=2 * config.lr), **kwargs)

    register_recipe("twice-the-lr", twice_the_lr)
    try:
        out = tmp_path / "run"
        args = ["train", *data, "--methods", "random", "--budget", "3", *TINY, "--out", str(out)]
        assert CliRunner().invoke(main, args).exit_code == 0
        plain = (out / "train" / "random" / "manifest.json").read_text()
        result = CliRunner().invoke(main, [*args, "--set", "train.recipe=twice-the-lr"])
        assert result.exit_code == 0, result.output
        assert calls == [3]
        # Another recipe is another model: the stage ran again under a new fingerprint.
        assert (out / "train" / "random" / "manifest.json").read_text() != plain
    finally:
        unregister_recipe("twice-the-lr")
    result = CliRunner().invoke(main, [*args, "--set", "train.recipe=twice-the-lr"])
    assert result.exit_code == 2 and "train.recipe must be one of supervised" in result.output


# --------------------------------------------------------------------------- embedders
def _image_means(records):
    from PIL import Image

    return np.array([[np.asarray(Image.open(r.image), np.float32).mean(), float(i % 3)]
                     for i, r in enumerate(records)], np.float32)


def test_precomputed_embeddings_flow_through_select_train_and_evaluate(tmp_path):
    from xssr.data import load_records

    manifest = make_synthetic_dataset(tmp_path / "data", n_source=5, n_pool=12, n_test=4, size=32) / "manifest.csv"
    pool_spec = f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c"
    source_spec = f"{manifest}#site=synthetic_source"
    pool, source = load_records(pool_spec), load_records(source_spec)
    # The pool's rows come in reverse order, lined up by an index CSV; the source's in xssr's order.
    np.save(tmp_path / "pool.npy", _image_means(pool)[::-1])
    (tmp_path / "pool.csv").write_text("image\n" + "".join(f"{r.image}\n" for r in pool[::-1]))
    np.save(tmp_path / "source.npy", _image_means(source))
    out = tmp_path / "run"
    args = ["run", "--source", source_spec, "--pool", pool_spec, "--test", f"{manifest}#split=test",
            "--methods", "xssr,coreset", "--budget", "3", *TINY, "--out", str(out),
            "--set", "embed.model=precomputed", "--set", f"embed.pool_file={tmp_path / 'pool.npy'}",
            "--set", f"embed.pool_index={tmp_path / 'pool.csv'}", "--set", f"embed.source_file={tmp_path / 'source.npy'}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert not (out / "pretrain").exists()  # nothing to train
    np.testing.assert_array_equal(np.load(out / "embed" / "pool.npy"), _image_means(pool))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["xssr"]["n_train"] == 3 and metrics["coreset"]["n_train"] == 3

    # A file with a row too few is named with its setting; nothing new is trained.
    np.save(tmp_path / "pool.npy", _image_means(pool)[:-1])
    result = CliRunner().invoke(main, [a.replace(f"embed.pool_index={tmp_path / 'pool.csv'}", "embed.pool_index=")
                                       for a in args])
    assert result.exit_code == 2
    assert "pool.npy (embed.pool_file): has 11 rows, but the pool has 12 images" in result.output
    # Found by the input check, before any stage: the finished embeddings are untouched.
    assert (out / "embed" / "manifest.json").exists()


def test_an_unknown_embedder_is_refused_with_the_list(tmp_path):
    result = CliRunner().invoke(main, ["validate", "--pool", str(tmp_path), "--set", "embed.model=clip"])
    assert result.exit_code == 2 and "embed.model must be one of mae, precomputed" in result.output


class _MeanAndSpread:
    """Toy embedder: each image's mean and standard deviation, from the pipeline's own batches."""

    name, learns, checkpoint = "mean-and-spread", False, ""

    def settings(self):
        return {"model": self.name}

    def check(self, records):
        pass

    def embed(self, group, records, batches, *, checkpoint, channels, device):
        rows = [np.stack([b.mean(axis=(1, 2, 3)), b.std(axis=(1, 2, 3))], axis=1) for b in batches()]
        return np.concatenate(rows).astype(np.float32)


def test_a_registered_embedder_feeds_every_method(data, tmp_path):
    from xssr.embedding import EMBEDDERS

    EMBEDDERS["mean-and-spread"] = lambda config: _MeanAndSpread()
    try:
        manifest = data[1].split("#")[0]
        out = tmp_path / "run"
        result = CliRunner().invoke(main, ["select", *data[:2], "--source", f"{manifest}#site=synthetic_source",
                                           "--methods", "xssr,typiclust", "--budget", "3", *TINY,
                                           "--set", "embed.model=mean-and-spread", "--out", str(out)])
        assert result.exit_code == 0, result.output
        pool = np.load(out / "embed" / "pool.npy")
        assert pool.shape == (12, 2) and not (out / "pretrain").exists()
        assert len((out / "select" / "typiclust" / "selection.csv").read_text().splitlines()) == 4
        # Its output depends on how images are prepared: another normalisation embeds again.
        again = CliRunner().invoke(main, ["select", *data[:2], "--source", f"{manifest}#site=synthetic_source",
                                          "--methods", "xssr,typiclust", "--budget", "3", *TINY,
                                          "--set", "embed.model=mean-and-spread", "--set", "data.normalize=zscore",
                                          "--out", str(out)])
        assert again.exit_code == 0 and "embed: running" in again.output
        assert not np.allclose(np.load(out / "embed" / "pool.npy"), pool)
    finally:
        EMBEDDERS.pop("mean-and-spread")


def test_precomputed_without_a_source_file_is_refused_before_any_stage(tmp_path):
    manifest = make_synthetic_dataset(tmp_path / "data", n_source=3, n_pool=6, n_test=2, size=32) / "manifest.csv"
    np.save(tmp_path / "pool.npy", np.random.default_rng(0).normal(size=(6, 3)))
    out = tmp_path / "run"
    args = ["select", "--source", f"{manifest}#site=synthetic_source", "--pool",
            f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c",
            "--methods", "xssr", "--budget", "2", "--set", "embed.model=precomputed",
            "--set", f"embed.pool_file={tmp_path / 'pool.npy'}", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "embed.source_file: is not set" in result.output
    assert not out.exists()
    result = CliRunner().invoke(main, [*args, "--set", "select.alpha=0"])
    assert result.exit_code == 0, result.output


def _precomputed_study(tmp_path):
    manifest = make_synthetic_dataset(tmp_path / "data", n_source=3, n_pool=6, n_test=2, size=32) / "manifest.csv"
    np.save(tmp_path / "pool.npy", np.random.default_rng(0).normal(size=(6, 3)))
    return ["--pool", f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c",
            "--methods", "coreset", "--budget", "2", "--set", "embed.model=precomputed",
            "--set", f"embed.pool_file={tmp_path / 'pool.npy'}"]


@pytest.mark.parametrize("index, reason", [
    ("image\nimages/a.png,surplus\n", "extra cells or a slice_index that is not a whole number on line(s) 2"),
    ("image,slice_index\nimages/a.png,two\n", "extra cells or a slice_index that is not a whole number"),
    ("file\nimages/a.png\n", "needs an 'image' column"),
])
def test_a_malformed_index_csv_is_named_before_any_stage(tmp_path, index, reason):
    (tmp_path / "index.csv").write_text(index)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["select", *_precomputed_study(tmp_path), "--set",
                                       f"embed.pool_index={tmp_path / 'index.csv'}", "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"index.csv (embed.pool_index): {reason}" in result.output
    assert not out.exists()


def test_pretraining_an_embedder_that_learns_nothing_is_refused_first(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["pretrain", *_precomputed_study(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and "learns nothing" in result.output
    assert not out.exists()


def test_a_source_file_left_by_another_embedder_is_not_read(tmp_path):
    args = _precomputed_study(tmp_path)
    manifest = args[1].split("#")[0]
    out = tmp_path / "run"
    mae = ["select", "--source", f"{manifest}#site=synthetic_source", *args[:6], *TINY,
           "--set", "pretrain.epochs=1", "--set", "pretrain.widths=4,8,8,16", "--set", "pretrain.patch_size=8",
           "--out", str(out)]
    assert CliRunner().invoke(main, mae).exit_code == 0
    assert np.load(out / "embed" / "source.npy").shape[1] == 16  # the MAE's source embeddings stay on disk
    # Now the team's own 3-wide pool embeddings, no source file: coreset must not load the MAE's.
    result = CliRunner().invoke(main, ["select", *args, *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len((out / "select" / "coreset" / "selection.csv").read_text().splitlines()) == 3
