"""The learning-curve plan, the power-law fit and the gain estimate behind `xssr advise`."""

import numpy as np
import pytest

from xssr.metrics.learning_curve import at_bounds, curve_plan, estimate_gain, fit_power_law, power_law


def test_every_image_is_measured_once_per_size_by_a_model_that_never_saw_it():
    tasks = curve_plan(22, folds=3, n_sizes=3, seed=4)
    sizes = sorted({t.size for t in tasks})
    assert sizes == [4, 7, 14] and len(tasks) == 9
    for size in sizes:
        held = [i for t in tasks if t.size == size for i in t.held_out]
        assert sorted(held) == list(range(22))
    for t in tasks:
        assert len(t.train) == t.size and not set(t.train) & set(t.held_out)
    for fold in range(3):  # nested within a fold: a larger subset starts with the smaller one
        mine = sorted((t for t in tasks if t.fold == fold), key=lambda t: t.size)
        assert all(a.train == b.train[:a.size] for a, b in zip(mine, mine[1:]))
    assert curve_plan(22, n_sizes=3, seed=4) == tasks and curve_plan(22, n_sizes=3, seed=5) != tasks


def test_too_few_images_say_how_many_are_needed():
    with pytest.raises(ValueError, match="needs at least 9 annotated images; there are 8"):
        curve_plan(8, folds=3, n_sizes=3)
    with pytest.raises(ValueError, match="folds must be at least 2"):
        curve_plan(30, folds=1)


def test_the_fit_recovers_a_known_curve():
    sizes = np.array([4, 7, 14, 30])
    a, b, c = fit_power_law(sizes, power_law(sizes, 0.93, 0.4, 0.7))
    assert (a, b, c) == pytest.approx((0.93, 0.4, 0.7), abs=1e-4)
    flat = fit_power_law(sizes, np.full(4, 0.8))
    assert power_law(100, *flat) == pytest.approx(0.8, abs=1e-6) and flat[1] == pytest.approx(0, abs=1e-4)


def test_gain_estimate_covers_the_truth_and_is_zero_for_a_flat_curve():
    rng = np.random.default_rng(0)
    sizes = np.array([4, 7, 14])
    truth = power_law(sizes, 0.92, 0.5, 0.8)
    noisy = truth[:, None] + rng.normal(0, 0.03, (3, 22))  # 22 held-out images, paired across sizes
    estimate = estimate_gain(sizes, noisy, 22, 45, n_boot=300)
    true_gain = float(np.subtract(*power_law([45, 22], 0.92, 0.5, 0.8)))
    assert estimate.low <= true_gain <= estimate.high and estimate.low > 0
    assert estimate.gain == pytest.approx(true_gain, abs=0.02)

    flat = 0.85 + rng.normal(0, 0.03, (3, 22))
    none = estimate_gain(sizes, flat - flat.mean(axis=1, keepdims=True) + 0.85, 22, 45, n_boot=300)
    assert abs(none.gain) < 1e-3 and none.low <= 0.0 <= none.high + 1e-9


def test_bad_shapes_and_sizes_are_refused():
    with pytest.raises(ValueError, match="one row per size"):
        estimate_gain([4, 7], np.zeros((3, 5)), 10, 20)
    with pytest.raises(ValueError, match="must exceed"):
        estimate_gain([4, 7], np.zeros((2, 5)), 10, 10)


def test_parameters_the_points_leave_at_a_bound_are_named():
    sizes = np.array([4, 7, 14])
    assert at_bounds(fit_power_law(sizes, [0.70, 0.80, 0.82])) == ("c",)  # the points ask for a jump
    assert at_bounds(fit_power_law(sizes, power_law(sizes, 0.93, 0.4, 0.7))) == ()
    assert at_bounds((0.8, 0.0, 1.0)) == ()  # b = 0 (no gain) is an answer, not a bound
    assert curve_plan(22)[0].size == 4 and sorted({t.size for t in curve_plan(22)}) == [4, 6, 9, 14]
