"""The one orchestrator: the stages a command needs, run forward, each cached by fingerprint.

A run folder holds one subfolder per stage::

    OUT/pretrain/            mae.pt, history.csv, manifest.json
    OUT/embed/               source.npy, pool.npy, pool_index.csv, manifest.json
    OUT/select/<method>/     selection.csv, alpha_curve.csv, manifest.json
    OUT/source-train/        unet.pt, history.csv, manifest.json  (recipes that start from the source)
    OUT/train/<method>/      unet.pt, history.csv, manifest.json
    OUT/evaluate/<method>/   metrics.json, per_image.csv, manifest.json

Each stage takes its upstream results as arguments (:class:`StageResult`), so the order is
written once, in :meth:`Pipeline.run`. Stages that depend only on their inputs (the MAE, the
embeddings and the source-trained U-Net) can live in a shared *store* instead, ``STORE/<stage>/<fingerprint>/``, where
every run and benchmark suite with the same data and settings finds them. The API, the CLI
and the benchmark all go through this class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xssr.config import PREDICTION_SETTINGS, RunConfig, fingerprint_settings
from xssr.data import ImageRecord, InputError, iter_arrays, load_arrays
from xssr.data.records import record_row
from xssr.embedding import get_embedder, pretrain_groups, uses_source_model
from xssr.metrics import dice_per_image, summarise_dice
from xssr.pipeline.inputs import Inputs
from xssr.pipeline.plan import needs_embeddings
from xssr.pipeline.stage import Stage
from xssr.report.io import read_csv, read_json, save_array, write_csv, write_json
from xssr.report.provenance import config_fingerprint
from xssr.selection import SelectionResult
from xssr.selection import select as select_core
from xssr.selection.registry import get_method

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    """A finished stage: where its files are, its fingerprint and what its manifest recorded."""

    folder: Path
    fingerprint: str
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def path(self, key: str) -> Path:
        return self.folder / self.outputs[key]


def resolve_device(name: str):
    """'auto' -> cuda when present, else cpu; asking for cuda without one is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"The 'device' {name!r} was asked for, but PyTorch sees no CUDA device here; use cpu or auto.")
    return torch.device(name)


def _progress(enabled: bool, desc: str, total: int):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)

    def update(done: int, total_now: int, loss: float | None = None) -> None:
        bar.total = total_now
        bar.n = done
        if loss is not None:
            bar.set_postfix(loss=f"{loss:.4f}")
        bar.refresh()
        if done >= total_now:
            bar.close()

    return update


class Pipeline:
    """The stages of one configuration, over checked :class:`Inputs`, writing under ``out``."""

    def __init__(self, config: RunConfig, out: str | Path, inputs: Inputs, *, store: str | Path | None = None,
                 progress: bool = False):
        self.config = config
        self.out = Path(out)
        self.inputs = inputs
        self.store = Path(store) if store is not None else None
        self.progress = progress
        self._device = None
        self._announced: set[str] = set()
        self._settings = fingerprint_settings(config)
        #: Every stage this pipeline ran or reused, by label ("pretrain", "train/xssr", ...).
        self.results: dict[str, StageResult] = {}
        self.embedder = get_embedder(config)

    @property
    def device(self):
        if self._device is None:
            self._device = resolve_device(self.config.device)
        return self._device

    # ---- bookkeeping
    def _shared(self, name: str, inputs: dict[str, Any]) -> Stage:
        """A stage that depends only on its inputs: in the store when there is one."""
        folder = self.store / name / config_fingerprint(inputs) if self.store else self.out / name
        return Stage(folder, inputs, name=name)

    def _reuse(self, stage: Stage) -> StageResult:
        # Later stages are asked for again for every method: say "reused" once per stage.
        if stage.label not in self._announced:
            self._announced.add(stage.label)
            stage.reuse()
        return self._result(stage)

    def _result(self, stage: Stage) -> StageResult:
        manifest = read_json(stage.manifest_path)
        result = StageResult(stage.folder, manifest["fingerprint"], manifest.get("outputs", {}),
                             manifest.get("seconds", 0.0))
        self.results[stage.label] = result
        return result

    def _done(self, stage: Stage, *files: str) -> bool:
        return stage.is_complete() and all((stage.folder / f).exists() for f in files)

    # ---- stage 1: the embedder (the paper's MAE by default)
    def _pretrain_groups(self) -> list[str]:
        return pretrain_groups(self.embedder, self.config)

    def _pretrain_stage(self) -> Stage:
        # For the MAE these are the inputs run folders have always been keyed by.
        return self._shared("pretrain", {
            "data": self.inputs.data_key(), "pretrain": self.embedder.settings(), "seed": self.config.seed,
            "inputs": {g: self.inputs.group_hash(g, masks=False) for g in self._pretrain_groups()}})

    @contextlib.contextmanager
    def _exclusive(self, stage: Stage):
        """Hold the store's lock of a shared stage: parallel sweeps make it once, the others then reuse it."""
        if self.store is None:
            yield
            return
        import fcntl

        stage.folder.parent.mkdir(parents=True, exist_ok=True)
        with open(stage.folder.with_name(stage.folder.name + ".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
            yield

    def pretrain(self) -> StageResult:
        """Fit the embedder on the source (and, if configured, pool) images."""
        if not self.embedder.learns:
            raise ValueError(f"The embedder {self.embedder.name!r} learns nothing: there is no pretraining to run.")
        stage = self._pretrain_stage()
        if self._done(stage, self.embedder.checkpoint):
            return self._reuse(stage)
        with self._exclusive(stage):
            if self._done(stage, self.embedder.checkpoint):  # made by another process while we waited
                return self._reuse(stage)
            return self._fit(stage)

    def _fit(self, stage: Stage) -> StageResult:
        started = stage.start()
        images = np.concatenate([self.inputs.arrays(g, with_masks=False)[0] for g in self._pretrain_groups()])
        model, facts = self.embedder.fit(images, seed=self.config.seed, device=self.device,
                                         progress=_progress(self.progress, f"pretrain {self.embedder.name}",
                                                            self.config.pretrain.epochs))
        self.embedder.save(model, stage.folder / self.embedder.checkpoint)
        history = facts.pop("history", [])
        if history:
            write_csv(stage.folder / "history.csv", history)
        stage.finish(started, {"checkpoint": self.embedder.checkpoint, "n_images": len(images),
                               "in_channels": self.inputs.channels, **facts})
        return self._result(stage)

    def _embed_groups(self) -> list[str]:
        return [g for g in ("source", "pool") if g in self.inputs.records]

    def _embed_stage(self, fitted: StageResult | None) -> Stage:
        inputs = {g: self.inputs.group_hash(g, masks=False) for g in self._embed_groups()}
        if fitted is not None:  # a learned embedder is identified by its fitted state
            return self._shared("embed", {"pretrain": fitted.fingerprint, "data": self.inputs.data_key(),
                                          "inputs": inputs})
        return self._shared("embed", {"embedder": self.embedder.settings(), "data": self.inputs.data_key(),
                                      "inputs": inputs})

    def embeddings_ready(self) -> StageResult | None:
        """The embeddings if the embedder is fitted and the embed stage finished already, else None."""
        fitted, fitted_stage = None, None
        if uses_source_model(self.embedder):
            if self.config.train.source_weights:
                fitted = self.source_model()
            else:
                fitted_stage = self._source_model_stage()
        elif self.embedder.learns:
            fitted_stage = self._pretrain_stage()
        if fitted_stage is not None:
            if not self._done(fitted_stage, self.embedder.checkpoint):
                return None
            fitted = self._result(fitted_stage)
        stage = self._embed_stage(fitted)
        if not self._done(stage, "pool.npy"):
            return None
        if fitted_stage is not None:
            self._reuse(fitted_stage)
        return self._reuse(stage)

    def embed(self, fitted: StageResult | None) -> StageResult:
        """Embed the source and pool images (``fitted``: the pretrain stage of a learned embedder)."""
        stage = self._embed_stage(fitted)
        if self._done(stage, "pool.npy"):
            return self._reuse(stage)
        with self._exclusive(stage):
            if self._done(stage, "pool.npy"):  # made by another process while we waited
                return self._reuse(stage)
            return self._embed(stage, fitted)

    def _embed(self, stage: Stage, fitted: StageResult | None) -> StageResult:
        started = stage.start()
        d, counts, files = self.config.data, {}, {}
        for group in self._embed_groups():
            records = self.inputs.records[group]

            def batches(group=group, records=records):
                decoded = self.inputs.decoded(group)
                if decoded is not None:  # already decoded for fitting: embed from memory
                    return (decoded[i:i + 64] for i in range(0, len(decoded), 64))
                # else stream, so a large pool is embedded in bounded memory
                return iter_arrays(records, d.image_size, self.inputs.channels, d.normalize, batch_size=64)

            embedding = self.embedder.embed(group, records, batches, channels=self.inputs.channels,
                                            checkpoint=fitted.path("checkpoint") if fitted else None,
                                            device=self.device)
            if embedding is None:
                continue
            files[group] = f"{group}.npy"
            save_array(stage.folder / files[group], embedding)
            counts[group] = int(len(embedding))
        write_csv(stage.folder / "pool_index.csv",
                  [record_row(i, r) for i, r in enumerate(self.inputs.records["pool"])])
        stage.finish(started, {"files": files, "counts": counts, "embedder": self.embedder.name,
                               "seed": self.config.seed, "pool_spec": self.config.data.pool})
        return self._result(stage)

    # ---- stage 2: selection
    def select(self, method: str, embeddings: StageResult | None) -> StageResult:
        """Choose ``method``'s images; with ``embeddings`` None only methods without them can run."""
        spec, s = get_method(method), self.config.select
        if spec.uses_embeddings and embeddings is None:
            raise ValueError(f"The method {method!r} needs embeddings, but none were given.")
        pool = self.inputs.records["pool"]
        # "full" reads no embeddings: keyed by the pool alone, it survives a new MAE.
        upstream = (embeddings.fingerprint if embeddings is not None and spec.algorithm is not None
                    else self.inputs.group_hash("pool", masks=False))
        settings = {} if spec.algorithm is None else spec.select_kwargs(s)
        inputs = {"method": method, "upstream": upstream, "settings": settings, "seed": self.config.seed}
        scores = self.uncertainty() if spec.uses_scores else None
        if scores is not None:
            inputs["scores"] = scores.fingerprint
        labeled = self.inputs.labeled_indices() if spec.algorithm is not None else []
        if labeled:
            inputs["labeled"] = [pool[i].key for i in labeled]
        stage = Stage(self.out / "select" / method, name=f"select/{method}", inputs=inputs)
        if self._done(stage, "selection.csv"):
            return self._reuse(stage)
        started = stage.start()
        if spec.algorithm is None:
            result = SelectionResult(method=method, indices=np.arange(len(pool)), coverage=0.0)
        elif embeddings is None:
            # Random picks depend on the pool size only; without embeddings coverage is unknown.
            result = select_core(np.zeros((len(pool), 1), np.float32), None, random_state=self.config.seed,
                                 sites=[r.site for r in pool], labeled=labeled or None, **settings)
            result = dataclasses.replace(result, coverage=float("nan"))
        else:
            # The manifest says which files this embedding made (a stale source.npy may lie beside them).
            source = embeddings.outputs["files"].get("source")
            result = select_core(np.load(embeddings.folder / "pool.npy"),
                                 np.load(embeddings.folder / source) if source else None,
                                 random_state=self.config.seed, sites=[r.site for r in pool],
                                 scores=np.load(scores.path("scores")) if scores is not None else None,
                                 labeled=labeled or None, **settings)
        from xssr.exchange.selection_csv import write_selection

        write_selection(stage.folder, result, pool)
        stage.finish(started, {
            "selection": "selection.csv", "n_selected": int(len(result.indices)), "alpha": result.alpha,
            "coverage": None if np.isnan(result.coverage) else result.coverage,
            "alpha_curve": [list(pair) for pair in result.alpha_curve], "delta": result.delta,
        })
        return self._result(stage)

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
            return self._result(stage)

    def selected(self, selection: StageResult) -> list[ImageRecord]:
        """The pool records a selection chose, in pick order."""
        by_key = {r.key: r for r in self.inputs.records["pool"]}
        return [by_key[row["key"]] for row in read_csv(selection.path("selection"))]

    # ---- stage 3: U-Net
    def _model_settings(self, *, recipe: bool) -> dict[str, Any]:
        """The train settings that shape a trained model (not how its predictions are read);
        without ``recipe``, only those a source model trained by the plain recipe depends on."""
        recipe_only = ("recipe", "source_weights", "joint_target_fraction", "ema_decay", "consistency_weight",
                       "consistency_rampup", "pseudo_threshold")
        return {k: v for k, v in self._settings["train"].items()
                if k not in PREDICTION_SETTINGS and (recipe or k not in recipe_only)}

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
            started = stage.start()
            images, masks = self.inputs.arrays("source", with_masks=True)
            from xssr.train import train_unet

            model, history = train_unet(images, masks, cfg, seed=self.config.seed, device=self.device,
                                        progress=_progress(self.progress, "train source U-Net", cfg.epochs))
            return self._save_model(stage, started, model, history, n_train=len(images), extra={"from": "source masks"})

    def _source_model_stage(self) -> Stage:
        return self._shared("source-train", {
            "data": self.inputs.data_key(), "train": self._model_settings(recipe=False), "seed": self.config.seed,
            "source": self.inputs.group_hash("source")})

    def _save_model(self, stage: Stage, started: float, model, history, *, n_train: int,
                    extra: dict[str, Any] | None = None) -> StageResult:
        from xssr.train.checkpoint import save_state

        save_state(stage.folder / "unet.pt", model.state_dict())
        write_csv(stage.folder / "history.csv", [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)])
        stage.finish(started, {
            "checkpoint": "unet.pt", "n_train": n_train, "in_channels": self.inputs.channels,
            "steps": history.steps, "train_seconds": round(history.seconds, 2),
            "images_per_second": round(history.samples_per_second, 2), "precision": history.precision,
            **(extra or {}),
        })
        return self._result(stage)

    def train(self, method: str, selection: StageResult) -> StageResult:
        """Train a U-Net for the images of ``selection`` (their masks must exist) with the configured recipe."""
        from xssr.train.recipes import get_recipe

        cfg = self.config.train
        recipe = get_recipe(cfg.recipe)
        records = self.selected(selection) if "labels" in recipe.needs else []
        source = self.source_model() if "source_model" in recipe.needs else None
        target = self._supervised_model(method, selection) if "target_model" in recipe.needs else None
        ssl = self._ssl_model() if "ssl_model" in recipe.needs else None
        inputs = {"train": self._model_settings(recipe=True), "data": self.inputs.data_key(), "seed": self.config.seed}
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
            data = self._training_data(recipe, records, source)
            extra = {"recipe": cfg.recipe}
            import torch

            if target is not None:
                data.target_state = torch.load(target.path("checkpoint"), map_location="cpu", weights_only=True)
                extra["target_model_seconds"] = target.outputs["train_seconds"]
            if ssl is not None:
                data.ssl_state = torch.load(ssl.path("checkpoint"), map_location="cpu", weights_only=True)
            started = stage.start()
            model, history = recipe.load()(
                data, cfg, seed=self.config.seed, device=self.device,
                progress=_progress(self.progress, f"train U-Net ({method}, {cfg.recipe})", cfg.epochs))
            return self._save_model(stage, started, model, history, n_train=len(records), extra=extra)

    def _ssl_model(self) -> StageResult:
        """The MedSASS-pretrained U-Net: the pretrain stage of the ``medsass`` embedder (shared with
        a run that embeds with it)."""
        config = dataclasses.replace(self.config, embed=dataclasses.replace(self.config.embed, model="medsass"))
        branch = Pipeline(config, self.out / "ssl", self.inputs, store=self.store)
        branch._device, branch._announced = self._device, self._announced
        return branch.pretrain()

    def _supervised_model(self, method: str, selection: StageResult) -> StageResult:
        """The supervised recipe's U-Net on ``selection``: its own stage (in the store, the very
        one a supervised run with the same settings makes or reuses)."""
        config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train, recipe="supervised"))
        branch = Pipeline(config, self.out / "target-branch", self.inputs, store=self.store)
        branch._device, branch._announced = self._device, self._announced
        return branch.train(method, selection)

    def _training_data(self, recipe, records: list[ImageRecord], source: StageResult | None):
        import torch

        from xssr.train.recipes.base import TrainingData

        d = self.config.data
        data = TrainingData(channels=self.inputs.channels)
        if "labels" in recipe.needs:
            data.images, data.masks = load_arrays(records, d.image_size, self.inputs.channels, d.normalize,
                                                  with_masks=True)
        if source is not None:
            data.source_state = torch.load(source.path("checkpoint"), map_location="cpu", weights_only=True)
        if "source_masks" in recipe.needs:
            data.source_images, data.source_masks = self.inputs.arrays("source", with_masks=True)
        if "pool" in recipe.needs:
            data.pool_images = self.inputs.arrays("pool", with_masks=False)[0]
        return data

    # ---- stage 4: evaluation
    def evaluate(self, method: str, trained: StageResult) -> dict[str, Any]:
        """Test Dice of the U-Net of ``trained``; returns the metrics written to metrics.json."""
        import time

        import torch

        from xssr.train import load_unet, segment_images

        cfg = self.config.train
        inputs = {"train": trained.fingerprint, "test": self.inputs.group_hash("test"),
                  "threshold": cfg.threshold, "data": self.inputs.data_key()}
        # Added prediction settings enter the key only when moved from their defaults, so
        # evaluations made before they existed are found again.
        reading = {k: v for k, v in self._settings["train"].items() if k in PREDICTION_SETTINGS and k != "threshold"}
        if reading:
            inputs["prediction"] = reading
        stage = Stage(self.out / "evaluate" / method, name=f"evaluate/{method}", inputs=inputs)
        if self._done(stage, "metrics.json"):
            self._reuse(stage)
            return read_json(stage.folder / "metrics.json")
        started = stage.start()
        model = load_unet(torch.load(trained.path("checkpoint"), map_location="cpu", weights_only=True),
                          self.inputs.channels, cfg)
        images, masks = self.inputs.arrays("test", with_masks=True)
        start_infer = time.perf_counter()
        predicted = segment_images(model, images, cfg, device=self.device)
        infer_seconds = time.perf_counter() - start_infer
        dice = dice_per_image(predicted, masks, 0.5)
        test = self.inputs.records["test"]
        metrics = {
            "method": method, "n_train": trained.outputs["n_train"],
            "dice": summarise_dice(dice, [r.site for r in test]),
            "threshold": cfg.threshold, "train_seconds": trained.outputs["train_seconds"],
            "recipe": cfg.recipe, **self._source_note(),
        }
        write_csv(stage.folder / "per_image.csv",
                  [{**record_row(i, r), "dice": float(v)} for i, (r, v) in enumerate(zip(test, dice))])
        write_json(stage.folder / "metrics.json", metrics)
        stage.finish(started, {"metrics": "metrics.json", "inference_images_per_second":
                               round(len(test) / infer_seconds, 2) if infer_seconds else None})
        self._result(stage)
        return metrics

    def _source_note(self) -> dict[str, str]:
        """Where the source U-Net of this run's recipe came from, for the user to read."""
        source = self.results.get("source-train")
        if source is None:
            return {}
        if source.outputs.get("from") == "source_weights":
            return {"source_model": f"your weights {self.config.train.source_weights}"}
        return {"source_model": f"trained here on {source.outputs['n_train']} source images and masks"}

    # ---- whole commands, forward
    def embeddings(self) -> StageResult:
        if uses_source_model(self.embedder):
            return self.embed(self.source_model())
        return self.embed(self.pretrain() if self.embedder.learns else None)

    def selections(self) -> dict[str, StageResult]:
        """Every configured method's selection; the MAE and embeddings are made once, first."""
        embeddings = self.embeddings() if needs_embeddings(self.config) else None
        return {m: self.select(m, embeddings) for m in self.config.select.methods}

    def trained(self) -> dict[str, StageResult]:
        return {m: self.train(m, selection) for m, selection in self.selections().items()}

    def run(self) -> tuple[dict[str, dict[str, Any]], dict[str, StageResult]]:
        """Select, train and evaluate every configured method: (metrics, selections) per method."""
        selections = self.selections()
        metrics = {m: self.evaluate(m, self.train(m, selection)) for m, selection in selections.items()}
        return metrics, selections
