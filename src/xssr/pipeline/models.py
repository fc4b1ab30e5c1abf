"""The stages that train and read U-Nets: the source model, the recipe's model and the source
model's uncertainty. A mixin of :class:`xssr.pipeline.run.Pipeline`, which provides the stage
bookkeeping (``_shared``, ``_reuse``, ``_exclusive``, ``_done``, ``_start``, ``_written``, ``_result``),
the inputs and the device. Under torchrun every process trains (the U-Net as one DDP model, see
xssr.train.distributed) and rank 0 alone writes; the uncertainty is rank 0's alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xssr.config import PREDICTION_SETTINGS
from xssr.data import InputError, iter_arrays, load_arrays
from xssr.pipeline.stage import Stage
from xssr.report.io import save_array, write_csv
from xssr.report.provenance import config_fingerprint
from xssr.train import distributed


@dataclass(frozen=True)
class StageResult:
    """A finished stage: where its files are, its fingerprint and what its manifest recorded."""

    folder: Path
    fingerprint: str
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def path(self, key: str) -> Path:
        return self.folder / self.outputs[key]


#: Without a progress bar (a log file, a batch job) a training stage says where it is this often.
HEARTBEAT_SECONDS = 60.0


def progress_bar(enabled: bool, desc: str, total: int):
    """An epoch-progress callback: a tqdm bar when ``enabled``, else a stage-log line at most once a
    minute, so that a long stage in a log file (the MAE takes about 14 minutes on a CPU) shows it is
    alive; a stage shorter than a minute prints nothing."""
    if not enabled:
        return _heartbeat(desc)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(done: int, total_now: int, loss: float | None = None) -> None:
        bar.total = total_now
        bar.n = done
        if loss is not None:
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.refresh()
        if done >= total_now:
            bar.close()

    return update


def _heartbeat(desc: str):
    import time

    from xssr.pipeline.stage import stage_log

    start = last = time.monotonic()

    def update(done: int, total_now: int, loss: float | None = None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < HEARTBEAT_SECONDS or done >= total_now or not distributed.is_main():
            return
        last = now
        loss_text = f", loss {loss:.4f}" if loss is not None else ""
        # done/total counts epochs or optimiser steps, whichever the training loop counts
        stage_log.info("%s: %d/%d%s, %.0f s so far", desc, done, total_now, loss_text, now - start)

    return update


class ModelStages:
    """Training stages of the pipeline (see the module docstring)."""

    def uncertainty(self) -> StageResult:
        """How unsure the source U-Net is about each pool image: the mean binary entropy (bits)
        of its flip-TTA-averaged foreground probability, over all pixels. An image the model
        segments confidently scores near 0, one it hesitates on everywhere near 1."""
        source = self.source_model()
        stage = self._shared("uncertainty", {"source_model": source.fingerprint, "data": self.inputs.data_key(),
                                             "pool": self.inputs.group_hash("pool", masks=False),
                                             "measure": "flip-tta mean binary entropy"})
        if self._done(stage, "uncertainty.npy"):
            return self._reuse(stage)
        with self._exclusive(stage):
            if self._done(stage, "uncertainty.npy"):
                return self._reuse(stage)
            if distributed.is_main():  # on one process; the others wait for its file
                import torch

                from xssr.train import load_unet, predict_probabilities

                started = stage.start()
                model = load_unet(torch.load(source.path("checkpoint"), map_location="cpu", weights_only=True),
                                  self.inputs.channels, self.config.train)
                d, values = self.config.data, []
                for batch in iter_arrays(self.inputs.records["pool"], d.image_size, self.inputs.channels, d.normalize,
                                         batch_size=64):
                    p = np.clip(predict_probabilities(model, batch, device=self.device,
                                                      precision=self.config.train.precision, tta=True), 1e-6, 1 - 1e-6)
                    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
                    values.append(entropy.reshape(len(p), -1).mean(axis=1))
                save_array(stage.folder / "uncertainty.npy", np.concatenate(values).astype(np.float32))
                stage.finish(started, {"scores": "uncertainty.npy", "n_pool": len(self.inputs.records["pool"])})
            return self._written(stage)

    # ---- stage 3: U-Net
    def model_settings(self, *, recipe: bool) -> dict[str, Any]:
        """The train settings that shape a trained model (not how its predictions are read);
        without ``recipe``, only those a source model trained by the plain recipe depends on."""
        recipe_only = ("recipe", "source_weights", "joint_target_fraction", "ema_decay", "consistency_weight",
                       "consistency_rampup", "pseudo_threshold")
        return {k: v for k, v in self._settings["train"].items()
                if k not in PREDICTION_SETTINGS and (recipe or k not in recipe_only)}

    def has_source_model(self) -> bool:
        """Whether the source U-Net of these settings exists already (the user's weights, or trained
        here or in the store), so that :meth:`source_model` only reads it."""
        return bool(self.config.train.source_weights) or self._done(self._source_model_stage(), "unet.pt")

    def source_model(self) -> StageResult:
        """The U-Net that recipes start from: the user's ``train.source_weights``, or one trained
        here on the source images and masks (once per data, settings and seed, in the store)."""
        cfg = self.config.train
        if cfg.source_weights:
            from xssr.data import file_sha1

            path = Path(cfg.source_weights)
            result = StageResult(path.parent, file_sha1(path), {"checkpoint": path.name, "from": "source_weights"})
            self.results["source-train"] = result
            return result
        stage = self._source_model_stage()
        if self._done(stage, "unet.pt"):
            return self._reuse(stage)
        with self._exclusive(stage):
            if self._done(stage, "unet.pt"):  # made by another process while we waited
                return self._reuse(stage)
            started = self._start(stage)
            images, masks = self.inputs.arrays("source", with_masks=True)
            from xssr.train import train_unet

            model, history = train_unet(images, masks, cfg, seed=self.config.seed, device=self.device,
                                        progress=progress_bar(self.progress, "train source U-Net", cfg.epochs))
            return self._save_model(stage, started, model, history, n_train=len(images), extra={"from": "source masks"})

    def _source_model_stage(self) -> Stage:
        return self._shared("source-train", {
            "data": self.inputs.data_key(), "train": self.model_settings(recipe=False), "seed": self.config.seed,
            "source": self.inputs.group_hash("source")})

    def _save_model(self, stage: Stage, started: float, model, history, *, n_train: int,
                    extra: dict[str, Any] | None = None) -> StageResult:
        from xssr.train.checkpoint import save_state

        if distributed.is_main():  # every process holds the same trained weights; one writes them
            save_state(stage.folder / "unet.pt", model.state_dict())
            write_csv(stage.folder / "history.csv",
                      [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)])
            stage.finish(started, {
                "checkpoint": "unet.pt", "n_train": n_train, "in_channels": self.inputs.channels,
                "steps": history.steps, "train_seconds": round(history.seconds, 2),
                "images_per_second": round(history.samples_per_second, 2), "precision": history.precision,
                **(extra or {}),
            })
        return self._written(stage)

    def train(self, method: str, selection: StageResult) -> StageResult:
        """Train a U-Net for the images of ``selection`` (their masks must exist) with the configured recipe."""
        from xssr.train.recipes import get_recipe

        cfg = self.config.train
        recipe = get_recipe(cfg.recipe)
        records = self.selected(selection) if "labels" in recipe.needs else []
        source = self.source_model() if "source_model" in recipe.needs else None
        target = self._supervised_model(method, selection) if "target_model" in recipe.needs else None
        ssl = self._ssl_model() if "ssl_model" in recipe.needs else None
        inputs = {"train": self.model_settings(recipe=True), "data": self.inputs.data_key(), "seed": self.config.seed}
        if "labels" in recipe.needs:
            # Pick order is kept: it decides the batches.
            inputs["images"] = [(r.key, *self.inputs.record_hash(r.key)) for r in records]
        if source is not None:
            inputs["source_model"] = source.fingerprint
        if target is not None:
            inputs["target_model"] = target.fingerprint
        if ssl is not None:
            inputs["ssl_model"] = ssl.fingerprint
        if "source_masks" in recipe.needs:
            inputs["source"] = self.inputs.group_hash("source")
        if "pool" in recipe.needs:
            inputs["pool"] = self.inputs.group_hash("pool", masks=False)
        # In a store, a model is shared by every run that would train it identically (variants
        # that change only how predictions are read, budgets and suites that repeat a run).
        folder = self.store / "train" / config_fingerprint(inputs) if self.store else self.out / "train" / method
        stage = Stage(folder, inputs, name=f"train/{method}")
        if self._done(stage, "unet.pt"):
            return self._reuse(stage)
        # A manifest may name the mask files before they are drawn; the input check lets a
        # missing one pass for stages that need no masks, so it is caught here, before training.
        unannotated = [r for r in records if r.mask is None or not r.mask.is_file()]
        if unannotated:
            raise InputError([(r.label, f"selected for annotation by '{method}' but has no mask yet"
                               + (f" ({r.mask} does not exist)" if r.mask is not None else ""))
                              for r in unannotated])
        with self._exclusive(stage):
            if self._done(stage, "unet.pt"):  # made by another process while we waited
                return self._reuse(stage)
            d = self.config.data
            labeled = (load_arrays(records, d.image_size, self.inputs.channels, d.normalize, with_masks=True)
                       if "labels" in recipe.needs else (None, None))
            data = self.training_data(recipe, *labeled, source=source)
            extra = {"recipe": cfg.recipe}
            import torch

            if target is not None:
                data.target_state = torch.load(target.path("checkpoint"), map_location="cpu", weights_only=True)
                extra["target_model_seconds"] = target.outputs["train_seconds"]
            if ssl is not None:
                data.ssl_state = torch.load(ssl.path("checkpoint"), map_location="cpu", weights_only=True)
            started = self._start(stage)
            model, history = recipe.load()(
                data, cfg, seed=self.config.seed, device=self.device,
                progress=progress_bar(self.progress, f"train U-Net ({method}, {cfg.recipe})", cfg.epochs))
            return self._save_model(stage, started, model, history, n_train=len(records), extra=extra)

    def _ssl_model(self) -> StageResult:
        """The MedSASS-pretrained U-Net: the pretrain stage of the ``medsass`` embedder (shared with
        a run that embeds with it)."""
        config = dataclasses.replace(self.config, embed=dataclasses.replace(self.config.embed, model="medsass"))
        branch = type(self)(config, self.out / "ssl", self.inputs, store=self.store)
        branch._device, branch._announced = self._device, self._announced
        # Recorded under its own label, so the run's stage_seconds count the pretraining.
        self.results["ssl-pretrain"] = result = branch.pretrain()
        return result

    def _supervised_model(self, method: str, selection: StageResult) -> StageResult:
        """The supervised recipe's U-Net on ``selection``: its own stage (in the store, the very
        one a supervised run with the same settings makes or reuses)."""
        config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train, recipe="supervised"))
        branch = type(self)(config, self.out / "target-branch", self.inputs, store=self.store)
        branch._device, branch._announced = self._device, self._announced
        # Recorded under its own label, so the run's stage_seconds count the target branch.
        self.results[f"target-branch/{method}"] = result = branch.train(method, selection)
        return result

    def training_data(self, recipe, images: np.ndarray | None, masks: np.ndarray | None,
                      source: StageResult | None):
        """What ``recipe`` trains from: the given annotated images and masks, and (as it needs them)
        the source U-Net's weights, the source images and masks, and the unlabeled pool."""
        import torch

        from xssr.train.recipes.base import TrainingData

        data = TrainingData(channels=self.inputs.channels, images=images, masks=masks)
        if source is not None:
            data.source_state = torch.load(source.path("checkpoint"), map_location="cpu", weights_only=True)
        if "source_masks" in recipe.needs:
            data.source_images, data.source_masks = self.inputs.arrays("source", with_masks=True)
        if "pool" in recipe.needs:
            data.pool_images = self.inputs.arrays("pool", with_masks=False)[0]
        return data

    def _source_note(self) -> dict[str, str]:
        """Where the source U-Net of this run's recipe came from, for the user to read."""
        source = self.results.get("source-train")
        if source is None:
            return {}
        if source.outputs.get("from") == "source_weights":
            return {"source_model": f"your weights {self.config.train.source_weights}"}
        return {"source_model": f"trained here on {source.outputs['n_train']} source images and masks"}

