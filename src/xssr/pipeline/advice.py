"""Budget advice after a round: how much Dice the next batch of annotations is likely to add.

``advise(run, labeled, next_batch, out)`` trains the run's recipe, with the run's settings, on
nested subsets of the images annotated so far in a k-fold plan (xssr.metrics.learning_curve),
measures each U-Net on the fold it never saw, fits a learning curve and reads off the gain of
``next_batch`` more images with a bootstrap interval. Each trained point is kept in
``OUT/points/`` under the fingerprint of everything it depends on, so an interrupted advice
resumes where it stopped and a second question (another batch size) costs no training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xssr.config import PREDICTION_SETTINGS, RunConfig
from xssr.data import ImageRecord, InputError, annotated_records, load_arrays
from xssr.data.names import data_root, relative_key
from xssr.metrics.learning_curve import CurveTask, GainEstimate, curve_plan, estimate_gain, power_law
from xssr.report.io import read_json, write_csv, write_json
from xssr.report.provenance import config_fingerprint

#: Recipe inputs the advice can give a recipe trained on a subset (not a branch model of its own).
_SUPPORTED_NEEDS = {"labels", "source_model", "source_masks", "pool"}
ADVICE_FILE = "advice.json"


def labeled_records(spec: str, data_root_folder: str | None) -> list[ImageRecord]:
    """The annotated images of ``spec``: of a round folder's manifest (the whole pool, masks filled in
    for the annotated ones) the rows whose mask exists; of any other spec, every row."""
    try:
        records = annotated_records(spec, data_root_folder)
    except ValueError as error:
        raise InputError([(spec, str(error))]) from None
    if not records:
        raise InputError([(spec, "holds no annotated images (no row with an existing mask)")])
    return records


def check_recipe(config: RunConfig) -> None:
    from xssr.train.recipes import get_recipe, recipe_names

    needs = set(get_recipe(config.train.recipe).needs)
    if "labels" not in needs:
        raise InputError([("train.recipe", f"{config.train.recipe!r} trains on no annotated target image, so more "
                           "annotations cannot change it; ask with a recipe that uses them (--set train.recipe=...)")])
    if not needs <= _SUPPORTED_NEEDS:
        usable = [r for r in recipe_names() if "labels" in get_recipe(r).needs
                  and set(get_recipe(r).needs) <= _SUPPORTED_NEEDS]
        raise InputError([("train.recipe", f"{config.train.recipe!r} trains a second model per subset, which the "
                           f"learning curve does not do; ask with one of {', '.join(usable)}")])


def advise(config: RunConfig, run: str | Path, labeled: str | list[ImageRecord], next_batch: int,
           out: str | Path, *, folds: int = 3, n_sizes: int = 4, n_boot: int = 1000,
           progress: Callable[[str], None] | None = None, store: Path | None = None) -> dict[str, Any]:
    """Fit the learning curve of ``config``'s recipe on the images of ``labeled`` (a data spec, or
    the annotated records themselves) and estimate the gain of ``next_batch`` more; writes
    OUT/advice.json and OUT/curve.csv and returns the advice.

    ``run`` is the run folder whose stages (the source U-Net) are reused (``store``: a benchmark's
    shared stage store instead); every input is checked before the first U-Net trains.
    """
    from xssr.pipeline import Inputs, Pipeline
    from xssr.train.recipes import get_recipe

    if next_batch < 1:
        raise InputError([("--next", f"must be at least 1 image (got {next_batch})")])
    check_recipe(config)
    if isinstance(labeled, str):
        records = labeled_records(labeled, config.data.data_root)
    else:
        records, labeled = list(labeled), f"{len(labeled)} given images"
    tasks = curve_plan(len(records), folds=folds, n_sizes=n_sizes, seed=config.seed)
    recipe = get_recipe(config.train.recipe)
    # The recipe's other inputs, checked with the annotated images before the first U-Net trains.
    source_masks = ["source"] if "source_masks" in recipe.needs or (
        "source_model" in recipe.needs and not config.train.source_weights) else []
    groups = ["labeled"] + source_masks + (["pool"] if "pool" in recipe.needs else [])
    inputs = Inputs(config)
    inputs.check(groups, ["labeled"] + source_masks, given={"labeled": records})
    if config.train.source_weights and "source_model" in recipe.needs:
        from xssr.train import read_source_weights

        read_source_weights(config.train.source_weights, inputs.channels, config.train)
    out = Path(out)
    pipeline = Pipeline(config, Path(run), inputs, store=store)
    if "source_model" in recipe.needs and store is None and not pipeline.has_source_model():
        # The run has no source U-Net of these settings (another --set, say): train it under OUT, so
        # the run's own source-train stage is never replaced.
        pipeline = Pipeline(config, out / "stages", inputs)
    source = pipeline.source_model() if "source_model" in recipe.needs else None

    d = config.data
    images, masks = load_arrays(records, d.image_size, inputs.channels, d.normalize, with_masks=True)
    root = data_root(records)
    # Everything a point's Dice depends on: how the U-Net is trained AND how its predictions are read.
    shared = {"train": pipeline.model_settings(recipe=True), "data": inputs.data_key(), "seed": config.seed,
              "prediction": {k: getattr(config.train, k) for k in PREDICTION_SETTINGS},
              "source_model": source.fingerprint if source else None,
              "source": inputs.group_hash("source") if "source_masks" in recipe.needs else None,
              # each point's pool leaves out its held-out images (see _point)
              "pool": {"images": inputs.group_hash("pool", masks=False), "without_held_out": True}
              if "pool" in recipe.needs else None,
              "labeled": [(relative_key(r, root), *inputs.record_hash(r.key)) for r in records]}
    per_image: dict[int, np.ndarray] = {}
    seconds = 0.0
    for number, task in enumerate(tasks, start=1):
        dice, took = _point(pipeline, recipe, source, task, images, masks, out, shared, [r.key for r in records])
        seconds += took
        per_image.setdefault(task.size, np.full(len(records), np.nan))[list(task.held_out)] = dice
        if progress:
            progress(f"curve point {number}/{len(tasks)}: fold {task.fold + 1}, {task.size} images, "
                     f"held-out Dice {np.mean(dice):.4f}" + (f" ({took:.0f} s)" if took else " (reused)"))
    sizes = sorted(per_image)
    estimate = estimate_gain(sizes, np.stack([per_image[s] for s in sizes]), len(records), len(records) + next_batch,
                             n_boot=n_boot, seed=config.seed)
    advice = _advice(estimate, config, labeled, folds, seconds, len(tasks))
    write_csv(out / "curve.csv", [{"size": s, "mean_dice": m, "fitted_dice": float(power_law(s, *estimate.params))}
                                  for s, m in zip(estimate.sizes, estimate.mean_dice)])
    write_json(out / ADVICE_FILE, advice)
    return advice


def _point(pipeline, recipe, source, task: CurveTask, images, masks, out: Path,
           shared: dict[str, Any], keys: list[str]) -> tuple[np.ndarray, float]:
    """Held-out Dice of one curve point (trained now, or read back from an earlier advice)."""
    from xssr.metrics import dice_per_image
    from xssr.train import segment_images

    key = {**shared, "train_images": list(task.train), "held_out": list(task.held_out)}
    fingerprint = config_fingerprint(key)
    path = out / "points" / f"fold{task.fold}_size{task.size}.json"
    if path.is_file():
        try:
            done = read_json(path)
            if done.get("fingerprint") == fingerprint:
                return np.asarray(done["dice"], dtype=np.float64), 0.0
        except (OSError, ValueError):
            pass  # unreadable: train it again and overwrite
    config = pipeline.config
    data = pipeline.training_data(recipe, images[list(task.train)], masks[list(task.train)], source)
    if data.pool_images is not None:
        # A held-out image must be unseen: a recipe that learns from the unlabeled pool (the mean
        # teacher) would otherwise have trained on it, without its mask, and score it too well.
        held_keys = {keys[i] for i in task.held_out}
        kept = [i for i, r in enumerate(pipeline.inputs.records["pool"]) if r.key not in held_keys]
        data.pool_images = data.pool_images[kept]
    started = time.perf_counter()
    model, _ = recipe.load()(data, config.train, seed=config.seed, device=pipeline.device)
    held = list(task.held_out)
    dice = dice_per_image(segment_images(model, images[held], config.train, device=pipeline.device), masks[held], 0.5)
    took = time.perf_counter() - started
    write_json(path, {"fingerprint": fingerprint, "fold": task.fold, "size": task.size, "dice": [float(v) for v in dice],
                      "seconds": round(took, 2)})
    return np.asarray(dice, dtype=np.float64), took


def _advice(estimate: GainEstimate, config: RunConfig, labeled: str, folds: int, seconds: float,
            n_models: int) -> dict[str, Any]:
    return {
        "labeled": labeled, "n_labeled": estimate.n_now, "next_batch": estimate.n_next - estimate.n_now,
        "recipe": config.train.recipe, "folds": folds, "sizes": list(estimate.sizes),
        "mean_held_out_dice": list(estimate.mean_dice),
        "curve": dict(zip(("a", "b", "c"), estimate.params)), "curve_at_bound": list(estimate.at_bound),
        "dice_now": estimate.dice_now, "dice_next": estimate.dice_next,
        "gain": estimate.gain, "gain_interval_95": [estimate.low, estimate.high],
        "u_nets_trained": n_models, "train_seconds": round(seconds, 1),
        "note": "Dice on held-out annotated images of a learning curve a - b*n^-c; the interval is a bootstrap "
                "over those images and leaves out the spread between training seeds and between the folds' "
                "models (docs/advice.md).",
    }


def advice_text(advice: dict[str, Any]) -> str:
    low, high = advice["gain_interval_95"]
    measured = ", ".join(f"{size}: {dice:.4f}" for size, dice in zip(advice["sizes"], advice["mean_held_out_dice"]))
    if advice["curve"]["b"] <= 1e-9:
        # The curve cannot fall (b >= 0), so flat or falling points give exactly 0 with a zero-width
        # interval; say what the points showed instead of a certainty they do not carry.
        return (f"Held-out Dice did not rise with more annotated images on this curve ({measured}; "
                f"{advice['recipe']} recipe, {advice['folds']} folds), so it predicts no gain from "
                f"{advice['next_batch']} more. That is what these points show, not a certainty: check that the "
                "training settings are the run's (a short --set train.steps learns little).")
    return (f"Annotating {advice['next_batch']} more image(s) (to {advice['n_labeled'] + advice['next_batch']}) is "
            f"expected to add {advice['gain']:+.4f} Dice (95 % interval {low:+.4f} to {high:+.4f}): "
            f"{advice['dice_now']:.4f} -> {advice['dice_next']:.4f} on a learning curve of the {advice['recipe']} "
            f"recipe fitted to {advice['n_labeled']} annotated images ({advice['folds']} folds, sizes "
            f"{', '.join(map(str, advice['sizes']))})."
            + (f" The fit left {', '.join(advice['curve_at_bound'])} at a bound: the points do not pin the curve's "
               "shape down, so read the estimate as rough." if advice.get("curve_at_bound") else ""))


