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

TINY = ["--image-size", "32", "--device", "cpu", "--set", "train.epochs=1", "--set", "train.channels=4,8",
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

    def twice_the_lr(images, masks, config, **kwargs):
        calls.append(len(images))
        import dataclasses

        return train_unet(images, masks, dataclasses.replace(config, lr=2 * config.lr), **kwargs)

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
