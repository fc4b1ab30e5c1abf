"""Recipes through the CLI and the pipeline: what each needs is checked before any work, the source
U-Net is trained once and shared, a user's source weights are read as data and used."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xssr.cli import main
from xssr.config import RunConfig, apply_overrides
from xssr.data import make_synthetic_dataset
from xssr.models import build_unet
from xssr.pipeline import Inputs, Pipeline

TINY = ["--image-size", "32", "--device", "cpu", "--set", "train.steps=4", "--set", "train.channels=4,8",
        "--set", "train.num_res_units=0", "--set", "train.precision=fp32", "--no-progress",
        "--methods", "random", "--budget", "3"]


@pytest.fixture
def data(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "data", n_source=4, n_pool=12, n_test=4, size=32)
    manifest = folder / "manifest.csv"
    args = ["--source", f"{manifest}#site=synthetic_source",
            "--pool", f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c",
            "--test", f"{manifest}#split=test"]
    return folder, args


def _run(args):
    return CliRunner().invoke(main, ["run", *args])


def test_a_missing_source_mask_is_named_before_any_work(data, tmp_path):
    folder, args = data
    (folder / "masks" / "source_0002.png").unlink()
    out = tmp_path / "out"
    for recipe in ("fine-tune", "joint", "mean-teacher", "fusion", "source-only"):
        result = _run([*args, *TINY, "--recipe", recipe, "--out", str(out)])
        assert result.exit_code == 2, (recipe, result.output)
        assert "source_0002.png" in result.output and "Traceback" not in result.output
        assert not out.exists()
    # recipes that need no source labels do not ask for them
    assert _run([*args, *TINY, "--recipe", "mean-teacher-scratch", "--out", str(out)]).exit_code == 0


def test_the_source_unet_is_trained_once_and_shared_by_recipes(data, tmp_path):
    _, args = data
    out = tmp_path / "out"
    assert _run([*args, *TINY, "--recipe", "fine-tune", "--out", str(out)]).exit_code == 0
    manifest = (out / "source-train" / "manifest.json").read_text()
    result = _run([*args, *TINY, "--recipe", "fusion", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "source-train" / "manifest.json").read_text() == manifest
    assert "source-train: reused" in result.output
    metrics = json.loads((out / "metrics.json").read_text())["random"]
    assert metrics["recipe"] == "fusion" and "trained here on 4 source images" in metrics["source_model"]
    assert "training recipe: fusion (source model: trained here on 4 source images" in result.output
    # The source U-Net alone is measured beside the recipe: the row annotations must beat.
    everything = json.loads((out / "metrics.json").read_text())
    alone = everything["source-only"]
    assert alone["n_train"] == 0 and alone["recipe"] == "source-only"
    assert (out / "evaluate" / "source-only" / "per_image.csv").is_file()
    share = everything["random"]["dice"]["overall"]["mean"] / alone["dice"]["overall"]["mean"]
    assert "% of source" in result.output and f"{100 * share:9.1f}%" in result.output
    assert "seconds per stage" in result.output and "source-train " in result.output
    # Fusion's target branch is a U-Net of its own: its seconds are the run's too.
    assert set(everything["random"]["stage_seconds"]) >= {"source-train", "select/random", "train/random",
                                                         "target-branch/random", "evaluate/random"}


def test_source_weights_are_used_as_given_and_need_no_source_masks(data, tmp_path):
    folder, args = data
    for mask in (folder / "masks").glob("source_*.png"):
        mask.unlink()
    torch.manual_seed(0)
    model = build_unet(1, (4, 8), 0)
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    out = tmp_path / "out"
    result = _run([*args, *TINY, "--recipe", "source-only", "--source-weights", str(tmp_path / "mine.pt"),
                   "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "your weights" in result.output and not (out / "source-train").exists()
    assert "source-only" not in json.loads((out / "metrics.json").read_text())  # the recipe is that row already
    # the evaluated model is exactly the file's
    saved = torch.load(out / "train" / "random" / "unet.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("content, reason", [
    (b"not a checkpoint", "not a PyTorch state dict"),
    ("wrong-shape", "does not fit the configured U-Net"),
    ("missing", "names no file"),
])
def test_bad_source_weights_are_named_before_any_work(data, tmp_path, content, reason):
    _, args = data
    path = tmp_path / "weights.pt"
    if content == "wrong-shape":
        torch.save(build_unet(1, (8, 16), 0).state_dict(), path)
    elif content != "missing":
        path.write_bytes(content)
    out = tmp_path / "out"
    result = _run([*args, *TINY, "--recipe", "fine-tune", "--source-weights", str(path), "--out", str(out)])
    assert result.exit_code == 2 and str(path) in result.output and reason in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_a_pickled_object_is_never_unpickled_as_weights(data, tmp_path):
    _, args = data
    path = tmp_path / "evil.pt"
    torch.save({"weights": object()}, path)  # needs full unpickling, which weights_only refuses
    result = _run([*args, *TINY, "--recipe", "fine-tune", "--source-weights", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "weights_only" in result.output


def test_prediction_settings_reuse_the_trained_model_in_a_store(data, tmp_path):
    _, args = data
    manifest = args[1].split("#")[0]
    base = apply_overrides(RunConfig(), {
        "data.source": args[1], "data.pool": args[3], "data.test": args[5], "data.image_size": 32, "device": "cpu",
        "train.steps": 4, "train.channels": "4,8", "train.num_res_units": 0, "train.precision": "fp32",
        "train.tta": False, "select.methods": "random", "select.budget": 3})
    assert manifest.endswith("manifest.csv")
    inputs = Inputs(base)
    inputs.check(["source", "pool", "test"], masks=["pool", "test"])
    store = tmp_path / "store"
    dice = {}
    for name, extra in (("plain", {}), ("tta", {"train.tta": True}), ("lcc", {"train.keep_components": 1})):
        config = apply_overrides(base, extra)
        pipeline = Pipeline(config, tmp_path / name, inputs.for_config(config), store=store)
        metrics, _ = pipeline.run()
        dice[name] = metrics["random"]["dice"]["overall"]["mean"]
    assert len(list((store / "train").glob("*/unet.pt"))) == 1  # one model, read three ways
    assert len({round(v, 9) for v in dice.values()}) >= 2


def test_recipe_settings_are_checked():
    for setting, value, message in (("train.recipe", "magic", "train.recipe must be one of"),
                                    ("train.augment", "heavy", "train.augment must be one of"),
                                    ("train.loss", "focal", "train.loss must be one of"),
                                    ("train.tta", "maybe", "expected true or false"),
                                    ("train.pseudo_threshold", 0.3, "train.pseudo_threshold must be 0"),
                                    ("train.joint_target_fraction", 1.5, "must be in [0, 1]")):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            apply_overrides(RunConfig(), {setting: value})
    assert apply_overrides(RunConfig(), {"train.tta": "true"}).train.tta is True
    assert np.isclose(apply_overrides(RunConfig(), {"train.pseudo_threshold": "0.9"}).train.pseudo_threshold, 0.9)


def test_fusion_reuses_the_supervised_model_of_the_same_picks(data, tmp_path):
    _, args = data
    base = apply_overrides(RunConfig(), {
        "data.source": args[1], "data.pool": args[3], "data.test": args[5], "data.image_size": 32, "device": "cpu",
        "train.steps": 4, "train.channels": "4,8", "train.num_res_units": 0, "train.precision": "fp32",
        "select.methods": "random", "select.budget": 3})
    inputs = Inputs(base)
    inputs.check(["source", "pool", "test"], masks=["source", "pool", "test"])
    store = tmp_path / "store"
    for recipe in ("supervised", "fusion"):
        config = apply_overrides(base, {"train.recipe": recipe})
        Pipeline(config, tmp_path / recipe, inputs.for_config(config), store=store).run()
    # the supervised U-Net, the fusion (holding it), and nothing trained twice
    assert len(list((store / "train").glob("*/unet.pt"))) == 2
    fused = next(p for p in (store / "train").glob("*/manifest.json") if '"fusion"' in p.read_text())
    manifest = json.loads(fused.read_text())
    assert manifest["outputs"]["target_model_seconds"] > 0 and manifest["outputs"]["steps"] == 0
    # without a store the branch is trained once beside the run
    config = apply_overrides(base, {"train.recipe": "fusion"})
    Pipeline(config, tmp_path / "alone", inputs.for_config(config)).run()
    assert (tmp_path / "alone" / "target-branch" / "train" / "random" / "unet.pt").exists()


# ---------------------------------------------------------------- the source U-Net as an embedder
def test_source_unet_embeddings_are_its_pooled_bottleneck_and_share_the_source_stage(data, tmp_path):
    from xssr.embedding.source_unet import bottleneck
    from xssr.pipeline.inputs import Inputs as _Inputs
    from xssr.train import load_unet

    _, args = data
    out = tmp_path / "out"
    embed_args = [*args, *TINY, "--set", "embed.model=source-unet", "--methods", "xssr,random"]
    result = CliRunner().invoke(main, ["select", *embed_args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "source-train: running" in result.output
    pool = np.load(out / "embed" / "pool.npy")
    assert pool.shape == (12, 8)  # train.channels = 4,8: the bottleneck has 8 features
    # the same numbers by hand: the U-Net's deepest block, averaged over space
    config = apply_overrides(RunConfig(), {"data.pool": args[3], "data.image_size": 32, "train.channels": "4,8",
                                           "train.num_res_units": 0, "train.precision": "fp32"})
    inputs = _Inputs(config)
    inputs.check(["pool"])
    images, _ = inputs.arrays("pool", with_masks=False)
    model = load_unet(torch.load(out / "source-train" / "unet.pt", weights_only=True), 1, config.train)
    features = []
    bottleneck(model).register_forward_hook(lambda m, i, o: features.append(o.mean(dim=(2, 3))))
    with torch.no_grad():
        model(torch.from_numpy(images))
    np.testing.assert_allclose(pool, features[0].numpy(), rtol=1e-4, atol=1e-5)
    # a recipe that starts from the source reuses the very same source U-Net
    result = CliRunner().invoke(main, ["run", *embed_args, "--recipe", "fine-tune", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "source-train: reused" in result.output and "source-train: running" not in result.output


def test_source_unet_embedder_asks_for_source_masks_or_weights(data, tmp_path):
    folder, args = data
    (folder / "masks" / "source_0001.png").unlink()
    embed_args = [*args, *TINY, "--set", "embed.model=source-unet", "--methods", "xssr"]
    result = CliRunner().invoke(main, ["select", *embed_args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "source_0001.png" in result.output and not (tmp_path / "a").exists()
    torch.save(build_unet(1, (4, 8), 0).state_dict(), tmp_path / "mine.pt")
    result = CliRunner().invoke(main, ["select", *embed_args, "--source-weights", str(tmp_path / "mine.pt"),
                                       "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    torch.save(build_unet(1, (8, 16), 0).state_dict(), tmp_path / "wrong.pt")
    result = CliRunner().invoke(main, ["select", *embed_args, "--source-weights", str(tmp_path / "wrong.pt"),
                                       "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "does not fit the configured U-Net" in result.output


def test_uncertainty_selection_reads_the_source_unets_uncertainty(data, tmp_path):
    from xssr.train import load_unet, predict_probabilities

    _, args = data
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["select", *args, *TINY, "--methods", "uncertainty", "--set",
                                       "embed.model=source-unet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("source-train: running") == 1  # one source U-Net for embedding and scores
    scores = np.load(out / "uncertainty" / "uncertainty.npy")
    # the same numbers by hand: mean binary entropy of the flip-averaged prediction
    config = apply_overrides(RunConfig(), {"data.pool": args[3], "data.image_size": 32, "train.channels": "4,8",
                                           "train.num_res_units": 0, "train.precision": "fp32"})
    inputs = Inputs(config)
    inputs.check(["pool"])
    images, _ = inputs.arrays("pool", with_masks=False)
    model = load_unet(torch.load(out / "source-train" / "unet.pt", weights_only=True), 1, config.train)
    p = np.clip(predict_probabilities(model, images, device=torch.device("cpu"), precision="fp32", tta=True),
                1e-6, 1 - 1e-6)
    expected = (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).reshape(len(p), -1).mean(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4)
    from xssr.report.io import read_csv

    rows = read_csv(out / "select" / "uncertainty" / "selection.csv")
    assert int(rows[0]["index"]) == int(np.argmax(scores))  # the most uncertain image first


# ---------------------------------------------------------------- MedSASS
def test_pseudo_masks_and_losses():
    from xssr.train.pseudo_labels import otsu_threshold, pseudo_mask
    from xssr.train.segment import segmentation_loss

    image = np.zeros((1, 16, 16), np.float32)
    image[0, 4:12, 4:12] = 1.0
    image += np.random.default_rng(0).normal(0, 0.05, image.shape).astype(np.float32)
    assert 0.2 < otsu_threshold(image) < 0.8
    assert pseudo_mask(image, "otsu")[4:12, 4:12].all() and pseudo_mask(image, "otsu").sum() == 64
    for method in ("adaptive-mean", "adaptive-gaussian"):
        # a pixel above the mean of its neighbourhood: the object's rim is, the background just
        # outside it is not (flat areas follow the noise, which is why the paper found it weaker)
        mask = pseudo_mask(image, method)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert mask[4, 4:12].all() and not mask[3, 4:12].any(), method
    logits = torch.full((1, 1, 16, 16), -8.0)
    logits[..., 4:12, 4:12] = 8.0
    target = torch.from_numpy(pseudo_mask(image, "otsu")[None, None].astype(np.float32))
    for name in ("focal-tversky", "tversky", "focal"):
        loss = segmentation_loss(name)
        assert float(loss(logits, target)) < 0.01 < float(loss(-logits, target)), name


def test_medsass_embeds_and_initialises_the_unet(data, tmp_path):
    from xssr.models.unet import encoder_prefixes

    _, args = data
    out = tmp_path / "out"
    base = [*args, *TINY, "--set", "pretrain.epochs=2", "--set", "embed.model=medsass", "--methods", "xssr,random"]
    result = CliRunner().invoke(main, ["select", *base, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert np.load(out / "embed" / "pool.npy").shape == (12, 8)
    # it learns from the unlabeled target too, whatever the MAE's pretrain.train_on says
    manifest = json.loads((out / "pretrain" / "manifest.json").read_text())
    assert manifest["outputs"]["n_images"] == 4 + 12
    ssl = torch.load(out / "pretrain" / "medsass.pt", weights_only=True)
    # E+D: with a frozen learning rate the trained U-Net is the pretrained one, whole
    frozen = ["--set", "train.lr=0", "--set", "train.weight_decay=0"]
    for recipe in ("medsass", "medsass-encoder"):
        result = CliRunner().invoke(main, ["train", *base, *frozen, "--recipe", recipe, "--out", str(out)])
        assert result.exit_code == 0, result.output
        trained = torch.load(out / "train" / "random" / "unet.pt", weights_only=True)
        encoder = encoder_prefixes(build_unet(1, (4, 8), 0))
        for name, value in trained.items():
            same = torch.equal(value, ssl[name])
            assert same if (recipe == "medsass" or name.startswith(encoder)) else not same, (recipe, name)
    # the recipe found the embedder's pretraining: one MedSASS U-Net, trained once
    assert "pretrain: running" not in result.output


def test_a_runs_stage_seconds_count_the_models_its_recipe_trains_beside_it(tmp_path):
    from xssr.pipeline import StageResult

    config = apply_overrides(RunConfig(), {"train.recipe": "medsass", "select.methods": ["random", "xssr"]})
    pipeline = Pipeline(config, tmp_path, inputs=None)
    labels = ("ssl-pretrain", "pretrain", "embed", "select/random", "train/random", "target-branch/random",
              "select/xssr", "train/xssr")
    pipeline.results = {label: StageResult(tmp_path, label, {}, 1.0) for label in labels}
    assert set(pipeline._stage_seconds("random")) == {"ssl-pretrain", "select/random", "train/random",
                                                      "target-branch/random"}
    assert set(pipeline._stage_seconds("xssr")) == {"ssl-pretrain", "pretrain", "embed", "select/xssr", "train/xssr"}


def test_run_over_several_seeds_compares_with_random_by_paired_interval(data, tmp_path):
    _, args = data
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", *args, *TINY, "--methods", "coreset,random", "--set",
                                       "pretrain.epochs=1", "--set", "pretrain.widths=4,8,8,16", "--set",
                                       "pretrain.patch_size=8", "--seeds", "0,1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and sorted(summary["metrics"]) == ["0", "1", "2"]
    coreset_line = next(line for line in result.output.splitlines() if line.startswith("coreset"))
    assert "(n=3)" in coreset_line and "[" in coreset_line
    for seed in (0, 1, 2):
        assert json.loads((out / f"seed-{seed}" / "config.json").read_text())["seed"] == seed
    # one report over the seeds, with the paired intervals; each seed's folder has its own
    assert "(n=3)" in (out / "report.html").read_text() and (out / "seed-1" / "report.html").is_file()
    assert f"report: {out / 'report.html'}" in result.output
    result = CliRunner().invoke(main, ["run", *args, *TINY, "--seeds", "1,1", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "at least two different seeds" in result.output
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- target-informed pretraining
def test_nt_xent_rewards_matching_views():
    from xssr.embedding.mim_contrastive import nt_xent

    a = torch.eye(8)[:, :8] * 5
    assert float(nt_xent(a, a)) < 0.1  # log(1 + 14 e^-5): the positive is 5, the 14 others 0
    assert float(nt_xent(a, a.roll(1, dims=0))) > 3.0


def test_mim_contrastive_pretrains_on_source_and_pool(data, tmp_path):
    folder, args = data
    base = [*args, *TINY, "--set", "pretrain.epochs=2", "--set", "pretrain.widths=4,8,8,16", "--set",
            "pretrain.patch_size=8", "--set", "embed.model=mim-contrastive", "--methods", "xssr"]
    result = CliRunner().invoke(main, ["select", *base, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a" / "pretrain" / "manifest.json").read_text())
    assert manifest["outputs"]["n_images"] == 4 + 12  # source and pool
    assert np.load(tmp_path / "a" / "embed" / "pool.npy").shape == (12, 16)
    # the pool's pixels shape the model: change one pool image and the pretrained weights change
    first = tmp_path / "a" / "pretrain" / "mim_contrastive.pt"
    pool_image = sorted((folder / "images").glob("pool_*.png"))[0]
    from PIL import Image

    pixels = np.asarray(Image.open(pool_image))
    Image.fromarray((255 - pixels).astype(np.uint8)).save(pool_image)
    result = CliRunner().invoke(main, ["select", *base, "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    a = torch.load(first, weights_only=True)
    b = torch.load(tmp_path / "b" / "pretrain" / "mim_contrastive.pt", weights_only=True)
    assert any(not torch.equal(a[k], b[k]) for k in a)
