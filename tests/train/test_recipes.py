"""Each recipe really uses what it says it uses: the source weights, the source images, the
unlabeled pool. Every test here fails for a recipe that ignores its input."""

import dataclasses

import numpy as np
import pytest
import torch

from xssr.config import PAPER_TRAINING, TrainConfig
from xssr.models.fusion import FusionNet, binary_confidence, fuse_probabilities
from xssr.train import load_unet, predict_probabilities, train_unet
from xssr.train.augment import build_augment, build_perturbation
from xssr.train.recipes import get_recipe, recipe_names, register_recipe
from xssr.train.recipes.base import IndexStream, TrainingData, step_count
from xssr.train.recipes.mean_teacher import consistency_loss, rampup
from xssr.train.segment import keep_largest_components, segment_images

CPU = torch.device("cpu")
# The paper's training, so that each test switches on only the ingredient it is about.
TINY = TrainConfig(steps=6, batch_size=2, channels=(4, 8), num_res_units=0, precision="fp32", lr=3e-3, **PAPER_TRAINING)


def _squares(n, size=16, seed=0, brightness=1.0):
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (n, 1, size, size)).astype(np.float32)
    masks = np.zeros((n, 1, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(2, size - 8, 2)
        masks[i, 0, r:r + 6, c:c + 6] = 1
    return (images + brightness * masks).astype(np.float32), masks


@pytest.fixture(scope="module")
def source_state():
    images, masks = _squares(6, seed=1)
    model, _ = train_unet(images, masks, dataclasses.replace(TINY, steps=20), seed=5, device=CPU)
    return model.state_dict()


def _data(source_state=None, pool_seed=2, source_seed=1, n_pool=6):
    images, masks = _squares(3, seed=0)
    source_images, source_masks = _squares(6, seed=source_seed)
    pool, _ = _squares(n_pool, seed=pool_seed)
    # any U-Net's weights stand in for MedSASS's pretrained ones here
    return TrainingData(channels=1, images=images, masks=masks, source_state=source_state, ssl_state=source_state,
                        source_images=source_images, source_masks=source_masks, pool_images=pool)


def _predict(model, images):
    return predict_probabilities(model, images, device=CPU, precision="fp32")


def _fit(name, data, config=TINY, seed=0):
    return get_recipe(name).load()(data, config, seed=seed, device=CPU)


PROBE, _ = _squares(4, seed=9)


def test_every_registered_recipe_trains_on_tiny_data(source_state):
    for name in recipe_names():
        model, history = _fit(name, _data(source_state))  # the medsass ones start from ssl_state
        p = _predict(model, PROBE)
        assert p.shape == (4, 1, 16, 16) and np.isfinite(p).all(), name
        if name != "source-only":
            assert history.steps == TINY.steps, name


def test_source_only_is_the_source_model(source_state):
    source = load_unet(source_state, 1, TINY)
    model, history = _fit("source-only", _data(source_state))
    np.testing.assert_array_equal(_predict(model, PROBE), _predict(source, PROBE))
    assert history.steps == 0


def test_fine_tune_starts_from_the_source_weights(source_state):
    frozen = dataclasses.replace(TINY, lr=0.0)  # no step moves a weight: the start is what comes out
    source = _predict(load_unet(source_state, 1, TINY), PROBE)
    np.testing.assert_allclose(_predict(_fit("fine-tune", _data(source_state), frozen)[0], PROBE), source, atol=1e-6)
    assert not np.allclose(_predict(_fit("supervised", _data(source_state), frozen)[0], PROBE), source, atol=1e-3)
    # and it does train on the target images
    assert not np.allclose(_predict(_fit("fine-tune", _data(source_state))[0], PROBE), source, atol=1e-3)


def test_mean_teacher_starts_from_the_source_model_and_the_scratch_one_does_not(source_state):
    frozen = dataclasses.replace(TINY, lr=0.0)
    source = _predict(load_unet(source_state, 1, TINY), PROBE)
    np.testing.assert_allclose(_predict(_fit("mean-teacher", _data(source_state), frozen)[0], PROBE), source, atol=1e-5)
    assert not np.allclose(_predict(_fit("mean-teacher-scratch", _data(source_state), frozen)[0], PROBE), source,
                           atol=1e-3)


def test_mean_teacher_learns_from_the_unlabeled_pool(source_state):
    config = dataclasses.replace(TINY, consistency_rampup=0.0, ema_decay=0.5)
    a = _predict(_fit("mean-teacher", _data(source_state, pool_seed=2), config)[0], PROBE)
    b = _predict(_fit("mean-teacher", _data(source_state, pool_seed=3), config)[0], PROBE)
    assert not np.allclose(a, b, atol=1e-4)  # another pool, another model
    # without the consistency term the pool's content cannot matter
    silent = dataclasses.replace(config, consistency_weight=0.0)
    a = _predict(_fit("mean-teacher", _data(source_state, pool_seed=2), silent)[0], PROBE)
    b = _predict(_fit("mean-teacher", _data(source_state, pool_seed=3), silent)[0], PROBE)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_joint_trains_on_the_source_images_and_the_target_fraction_is_honoured():
    a = _predict(_fit("joint", _data(source_seed=1))[0], PROBE)
    b = _predict(_fit("joint", _data(source_seed=4))[0], PROBE)
    assert not np.allclose(a, b, atol=1e-4)
    # all-target batches never read a source image
    only_target = dataclasses.replace(TINY, joint_target_fraction=1.0)
    a = _predict(_fit("joint", _data(source_seed=1), only_target)[0], PROBE)
    b = _predict(_fit("joint", _data(source_seed=4), only_target)[0], PROBE)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_fusion_holds_both_branches_and_round_trips(source_state):
    model, _ = _fit("fusion", _data(source_state))
    assert isinstance(model, FusionNet)
    source = _predict(load_unet(source_state, 1, TINY), PROBE)
    fused = _predict(model, PROBE)
    assert not np.allclose(fused, source, atol=1e-4)
    reloaded = load_unet(model.state_dict(), 1, TINY)
    assert isinstance(reloaded, FusionNet)
    np.testing.assert_allclose(_predict(reloaded, PROBE), fused, atol=1e-6)


def test_fusion_weighs_the_confident_branch():
    sure, unsure = torch.tensor([0.99]), torch.tensor([0.45])
    assert binary_confidence(torch.tensor([0.5])).item() == pytest.approx(0.0, abs=1e-6)
    assert binary_confidence(sure).item() > 0.9
    assert fuse_probabilities(sure, unsure).item() > 0.9
    assert fuse_probabilities(unsure, sure).item() > 0.9
    assert fuse_probabilities(torch.tensor([0.8]), torch.tensor([0.2])).item() == pytest.approx(0.5, abs=1e-5)


def test_a_recipe_without_what_it_needs_says_so():
    with pytest.raises(ValueError, match="source_state"):
        _fit("fine-tune", _data(None))
    with pytest.raises(ValueError, match="Unknown training recipe 'nope'"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="unknown needs"):
        register_recipe("odd", lambda *a, **k: None, needs=("labels", "a crystal ball"))


def test_step_count_and_index_stream():
    assert step_count(TINY, 3) == 6
    assert step_count(dataclasses.replace(TINY, steps=0, epochs=4, min_steps=0), 3) == 8  # 4 epochs x 2 batches
    stream = IndexStream(3, torch.Generator().manual_seed(0))
    drawn = stream.take(6).tolist()
    assert sorted(drawn[:3]) == [0, 1, 2] and sorted(drawn[3:]) == [0, 1, 2]


def test_rampup_and_consistency_loss():
    assert rampup(0, 100, 0.3) == pytest.approx(np.exp(-5))
    assert rampup(30, 100, 0.3) == 1.0 and rampup(0, 100, 0.0) == 1.0
    teacher = torch.tensor([[0.95, 0.6, 0.02]])
    logits = torch.zeros(1, 3)
    assert consistency_loss(logits, teacher, 0.0).item() == pytest.approx(((0.5 - teacher) ** 2).mean().item())
    # with a threshold only the confident pixels (0.95 and 0.02) count
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(2), torch.tensor([1.0, 0.0]))
    assert consistency_loss(logits, teacher, 0.9).item() == pytest.approx(expected.item())


# ---------------------------------------------------------------- shared ingredients
def test_flip_moves_image_and_mask_together_and_is_seeded():
    images, masks = _squares(8, seed=3, brightness=1.0)
    augment = build_augment("flip", 16, seed=0)
    out_images, out_masks = augment([torch.from_numpy(images), torch.from_numpy(masks)])
    flipped = [not np.array_equal(a, b) for a, b in zip(out_masks.numpy(), masks)]
    assert any(flipped) and not all(flipped)
    for image, mask, original, original_mask in zip(out_images.numpy(), out_masks.numpy(), images, masks):
        same = np.array_equal(mask, original_mask)
        np.testing.assert_array_equal(image, original if same else original[..., ::-1])
        np.testing.assert_array_equal(mask, original_mask if same else original_mask[..., ::-1])
    again = build_augment("flip", 16, seed=0)([torch.from_numpy(images), torch.from_numpy(masks)])
    np.testing.assert_array_equal(again[0].numpy(), out_images.numpy())


def test_standard_augmentation_keeps_masks_binary_and_on_the_object():
    images = np.zeros((16, 1, 32, 32), np.float32)
    images[:, :, 8:24, 10:20] = 1.0
    masks = images.astype(np.uint8)
    out_images, out_masks = build_augment("standard", 32, seed=1)([torch.from_numpy(images), torch.from_numpy(masks)])
    assert out_masks.dtype == torch.uint8 and set(np.unique(out_masks.numpy())) <= {0, 1}
    assert not np.array_equal(out_masks.numpy(), masks)  # something moved
    agreement = ((out_images.numpy() > 0.5) == (out_masks.numpy() == 1)).mean()
    assert agreement > 0.97


def test_perturbation_changes_intensities_only_where_it_is_seeded():
    images = torch.from_numpy(_squares(4, seed=0)[0])
    a, b = build_perturbation(0)(images), build_perturbation(0)(images)
    assert torch.equal(a, b) and not torch.allclose(a, images)


def test_dice_bce_and_cosine_schedule_change_training():
    images, masks = _squares(4, seed=0)
    plain = _predict(train_unet(images, masks, TINY, seed=0, device=CPU)[0], PROBE)
    for change in ({"loss": "dice-bce"}, {"lr_schedule": "cosine"}, {"augment": "standard"}):
        other = _predict(train_unet(images, masks, dataclasses.replace(TINY, **change), seed=0, device=CPU)[0], PROBE)
        assert not np.allclose(plain, other, atol=1e-5), change


def test_cosine_schedule_ends_at_zero():
    from xssr.train.loop import learning_rate_schedule

    optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = learning_rate_schedule(optimiser, "cosine", 10)
    for _ in range(10):
        optimiser.step()
        schedule.step()
    assert optimiser.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_schedule(optimiser, "constant", 10) is None


def test_flip_tta_averages_the_mirrored_prediction():
    images, masks = _squares(4, seed=0)
    model, _ = train_unet(images, masks, TINY, seed=0, device=CPU)
    plain = predict_probabilities(model, PROBE, device=CPU, precision="fp32")
    mirrored = predict_probabilities(model, PROBE[..., ::-1].copy(), device=CPU, precision="fp32")[..., ::-1]
    tta = predict_probabilities(model, PROBE, device=CPU, precision="fp32", tta=True)
    np.testing.assert_allclose(tta, 0.5 * (plain + mirrored), atol=1e-6)
    assert not np.allclose(tta, plain, atol=1e-5)


def test_keep_largest_components():
    binary = np.zeros((2, 1, 12, 12), np.uint8)
    binary[0, 0, 1:6, 1:6] = 1  # 25 px
    binary[0, 0, 8:10, 8:10] = 1  # 4 px
    binary[0, 0, 0, 11] = 1  # 1 px
    kept = keep_largest_components(binary, 1)
    assert kept[0].sum() == 25 and kept[1].sum() == 0
    assert keep_largest_components(binary, 2)[0].sum() == 29
    assert keep_largest_components(binary, 0) is binary
    # diagonal neighbours belong to one component (8-connectivity)
    diagonal = np.zeros((1, 1, 4, 4), np.uint8)
    diagonal[0, 0, [0, 1, 2], [0, 1, 2]] = 1
    assert keep_largest_components(diagonal, 1).sum() == 3


def test_segment_images_applies_threshold_and_components():
    images, masks = _squares(4, seed=0)
    model, _ = train_unet(images, masks, dataclasses.replace(TINY, steps=30), seed=0, device=CPU)
    config = dataclasses.replace(TINY, keep_components=1)
    out = segment_images(model, PROBE, config, device=CPU)
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    p = predict_probabilities(model, PROBE, device=CPU, precision="fp32")
    np.testing.assert_array_equal(out, keep_largest_components((p >= 0.5).astype(np.uint8), 1))
