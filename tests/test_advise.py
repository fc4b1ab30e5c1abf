"""`xssr advise`: a cross-validated learning curve on the annotated images says what the next batch adds."""

import json

import pytest
from click.testing import CliRunner

from xssr.cli import main

TINY_TRAIN = ["--image-size", "32", "--set", "train.steps=6", "--set", "train.channels=4,8",
              "--set", "train.num_res_units=0", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, synthetic_specs):
    run = tmp_path_factory.mktemp("advise") / "run"
    result = CliRunner().invoke(main, ["select", "--source", synthetic_specs["source"], "--pool", synthetic_specs["pool"],
                                       "--methods", "random", "--budget", "4", *TINY_TRAIN, "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def _advise(run, labeled, out, *extra):
    return CliRunner().invoke(main, ["advise", str(run), labeled, "--out", str(out), *extra])


def test_advice_trains_the_plan_once_and_answers_again_from_its_points(run_folder, synthetic_specs, tmp_path):
    out = tmp_path / "advice"
    result = _advise(run_folder, synthetic_specs["pool"], out, "--next", "10")
    assert result.exit_code == 0, result.output
    advice = json.loads((out / "advice.json").read_text())
    assert advice["n_labeled"] == 20 and advice["next_batch"] == 10 and advice["u_nets_trained"] == 12
    assert advice["sizes"] == [3, 5, 8, 13] and len(list((out / "points").glob("*.json"))) == 12
    low, high = advice["gain_interval_95"]
    assert low <= advice["gain"] <= high
    assert "Annotating 10 more image(s) (to 30) is expected to add" in result.output
    assert result.output.count("curve point") == 12 and "(reused)" not in result.output
    # Every point measured every held-out image once: 20 Dice values per size, from three folds.
    points = [json.loads(p.read_text()) for p in (out / "points").glob("*.json")]
    assert [sum(len(p["dice"]) for p in points if p["size"] == s) for s in (3, 5, 8, 13)] == [20] * 4

    # Another batch size costs no training; a changed setting trains again.
    again = _advise(run_folder, synthetic_specs["pool"], out, "--next", "40")
    assert again.exit_code == 0 and again.output.count("(reused)") == 12, again.output
    assert json.loads((out / "advice.json").read_text())["sizes"] == advice["sizes"]
    for setting in ("train.steps=3", "train.tta=true"):  # how the U-Net is trained, and how it is read
        changed = _advise(run_folder, synthetic_specs["pool"], out, "--next", "10", "--set", setting)
        assert changed.exit_code == 0 and "(reused)" not in changed.output, changed.output


def test_a_source_recipe_trains_its_source_model_beside_the_advice_not_in_the_run(run_folder, synthetic_specs,
                                                                                  tmp_path):
    result = _advise(run_folder, synthetic_specs["pool"], tmp_path / "ft", "--next", "5", "--folds", "2",
                     "--sizes", "2", "--set", "train.recipe=fine-tune")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ft" / "advice.json").read_text())["recipe"] == "fine-tune"
    assert (tmp_path / "ft" / "stages" / "source-train" / "unet.pt").is_file()
    assert not (run_folder / "source-train").exists()


def test_a_recipe_that_learns_from_the_pool_never_sees_a_held_out_image_there(run_folder, synthetic_specs, tmp_path,
                                                                              monkeypatch):
    import numpy as np

    from xssr.train.recipes import mean_teacher

    seen = []
    original = mean_teacher.mean_teacher_from_scratch

    def spy(data, *args, **kwargs):
        seen.append({row.tobytes() for row in data.pool_images})
        return original(data, *args, **kwargs)

    monkeypatch.setattr(mean_teacher, "mean_teacher_from_scratch", spy)
    # the annotated images are 12 of the pool, so every held-out image is also a pool image
    labeled = synthetic_specs["pool"] + "&n=12&seed=0"
    result = _advise(run_folder, labeled, tmp_path / "mt", "--next", "5", "--folds", "2", "--sizes", "2",
                     "--set", "train.recipe=mean-teacher-scratch")
    assert result.exit_code == 0, result.output
    from xssr.data import load_arrays, load_records

    images = load_arrays(load_records(labeled), 32, 1, "minmax", with_masks=False)[0]
    points = [json.loads(p.read_text()) for p in sorted((tmp_path / "mt" / "points").glob("*.json"))]
    assert len(seen) == len(points) == 4
    held_out_total = 0
    for pool in seen:
        present = [row.tobytes() in pool for row in images]
        held_out_total += len(images) - int(np.sum(present))
    assert held_out_total == 4 * 6  # each point's 6 held-out images, and only those, were left out of its pool


@pytest.mark.parametrize("args, message", [
    (["--next", "0"], "--next: must be at least 1 image"),
    (["--next", "5", "--set", "train.recipe=source-only"], "trains on no annotated target image"),
    (["--next", "5", "--set", "train.recipe=fusion"], "trains a second model per subset"),
    (["--next", "5", "--folds", "1"], "folds must be at least 2"),
])
def test_questions_it_cannot_answer_are_refused_before_training(run_folder, synthetic_specs, tmp_path, args, message):
    result = _advise(run_folder, synthetic_specs["pool"], tmp_path / "o", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o" / "points").exists()


def test_too_few_or_unannotated_images_are_named(run_folder, synthetic_specs, tmp_path):
    few = synthetic_specs["pool"] + "&n=6"
    result = _advise(run_folder, few, tmp_path / "o", "--next", "5")
    assert result.exit_code == 2 and "needs at least 12 annotated images; there are 6" in result.output

    folder = tmp_path / "bare"
    folder.mkdir()
    from PIL import Image

    for i in range(12):
        Image.new("L", (32, 32), 20 * i).save(folder / f"x{i}.png")
    result = _advise(run_folder, str(folder), tmp_path / "o", "--next", "5")
    assert result.exit_code == 2 and "x0.png" in result.output and "mask" in result.output
    assert not (tmp_path / "o" / "points").exists()


def test_a_curve_that_does_not_rise_is_reported_as_what_the_points_show():
    from xssr.pipeline.advice import advice_text

    flat = {"n_labeled": 22, "next_batch": 23, "recipe": "supervised", "folds": 3, "sizes": [4, 6, 9, 14],
            "mean_held_out_dice": [0.58, 0.59, 0.55, 0.58], "curve": {"a": 0.58, "b": 0.0, "c": 1.0},
            "gain": 0.0, "gain_interval_95": [0.0, 0.0], "dice_now": 0.58, "dice_next": 0.58, "curve_at_bound": []}
    text = advice_text(flat)
    assert "did not rise" in text and "4: 0.5800, 6: 0.5900" in text and "interval" not in text
    rising = {**flat, "curve": {"a": 0.95, "b": 0.6, "c": 0.7}, "gain": 0.03, "gain_interval_95": [0.01, 0.05]}
    assert "expected to add +0.0300 Dice (95 % interval +0.0100 to +0.0500)" in advice_text(rising)
