"""The one orchestrator: the stages a command needs, run forward, each cached by fingerprint.

A run folder holds one subfolder per stage::

    OUT/pretrain/            mae.pt, history.csv, manifest.json
    OUT/embed/               source.npy, pool.npy, pool_index.csv, manifest.json
    OUT/select/<method>/     selection.csv, alpha_curve.csv, manifest.json
    OUT/source-train/        unet.pt, history.csv, manifest.json  (recipes that start from the source)
    OUT/train/<method>/      unet.pt, history.csv, manifest.json
    OUT/evaluate/<method>/   metrics.json, per_image.csv, examples.npz (best and worst test images), manifest.json

Each stage takes its upstream results as arguments (:class:`StageResult`), so the order is
written once, in :meth:`Pipeline.run`. Stages that depend only on their inputs (the MAE, the
embeddings and the source-trained U-Net) can live in a shared *store* instead, ``STORE/<stage>/<fingerprint>/``, where
every run and benchmark suite with the same data and settings finds them. The API, the CLI
and the benchmark all go through this class.

Under torchrun every process walks the same stages in the same order (xssr.train.distributed):
rank 0 decides whether a stage is finished and writes every file; training and embedding are
split over the processes; the others wait for rank 0 at the end of each stage and read what it
wrote (so OUT and the store must be on a file system all of them see).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from xssr.config import PREDICTION_SETTINGS, RunConfig, fingerprint_settings
from xssr.data import ImageRecord, iter_arrays
from xssr.data.names import ROOT_OUTPUT, data_root, read_named_rows, record_row
from xssr.embedding import get_embedder, pretrain_groups, uses_source_model
from xssr.metrics import dice_per_image, summarise_dice
from xssr.pipeline.inputs import Inputs
from xssr.pipeline.models import ModelStages, StageResult, progress_bar
from xssr.pipeline.plan import needs_embeddings
from xssr.pipeline.stage import Stage
from xssr.report.examples import EXAMPLES_FILE, save_examples
from xssr.report.io import read_json, save_array, write_csv, write_json
from xssr.report.provenance import config_fingerprint
from xssr.selection import SelectionResult
from xssr.selection import select as select_core
from xssr.selection.registry import get_method
from xssr.train import distributed

logger = logging.getLogger(__name__)


def resolve_device(name: str):
    """'auto' -> cuda when present, else cpu; asking for cuda without one is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"The 'device' {name!r} was asked for, but PyTorch sees no CUDA device here; use cpu or auto.")
    return torch.device(name)


class Pipeline(ModelStages):
    """The stages of one configuration, over checked :class:`Inputs`, writing under ``out``."""

    def __init__(self, config: RunConfig, out: str | Path, inputs: Inputs, *, store: str | Path | None = None,
                 progress: bool = False):
        from xssr.pipeline.recipe_choice import resolve_recipe

        self.config = config = resolve_recipe(config)  # "auto" -> the recipe chosen for these inputs
        self.out = Path(out)
        self.inputs = inputs
        self.store = Path(store) if store is not None else None
        self.progress = progress and distributed.is_main()  # one bar, not one per process
        self._device = None
        self._announced: set[str] = set()
        self._settings = fingerprint_settings(config)
        #: Every stage this pipeline ran or reused, by label ("pretrain", "train/xssr", ...).
        self.results: dict[str, StageResult] = {}
        self.embedder = get_embedder(config)

    @property
    def device(self):
        if self._device is None:
            self._device = distributed.device(resolve_device(self.config.device))
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
        # Rank 0's answer on every process: one that skipped a stage the others train would
        # leave them waiting for it.
        return distributed.agree(stage.is_complete() and all((stage.folder / f).exists() for f in files))

    def _start(self, stage: Stage) -> float:
        """Start a stage that rank 0 writes (every process may compute it)."""
        return stage.start() if distributed.is_main() else 0.0

    def _written(self, stage: Stage) -> StageResult:
        """The result of a stage rank 0 has just finished, read by every process once it is written."""
        distributed.barrier()
        return self._result(stage)

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
        """Hold the store's lock of a shared stage: parallel sweeps make it once, the others then reuse it.
        Under torchrun rank 0 holds it for all its processes."""
        if self.store is None or not distributed.is_main():
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
        started = self._start(stage)
        images = np.concatenate([self.inputs.arrays(g, with_masks=False)[0] for g in self._pretrain_groups()])
        # Every process fits (the MAE and MedSASS train as one DDP model; others repeat the work).
        model, facts = self.embedder.fit(images, seed=self.config.seed, device=self.device,
                                         progress=progress_bar(self.progress, f"pretrain {self.embedder.name}",
                                                            self.config.pretrain.epochs))
        if distributed.is_main():
            self.embedder.save(model, stage.folder / self.embedder.checkpoint)
            history = facts.pop("history", [])
            if history:
                write_csv(stage.folder / "history.csv", history)
            stage.finish(started, {"checkpoint": self.embedder.checkpoint, "n_images": len(images),
                                   "in_channels": self.inputs.channels, **facts})
        return self._written(stage)

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
        started = self._start(stage)
        counts, files = {}, {}
        for group in self._embed_groups():
            embedding = self._embed_group(group, fitted)
            if embedding is None or not distributed.is_main():
                continue
            files[group] = f"{group}.npy"
            save_array(stage.folder / files[group], embedding)
            counts[group] = int(len(embedding))
        if distributed.is_main():
            pool = self.inputs.records["pool"]
            root = data_root(pool)
            write_csv(stage.folder / "pool_index.csv", [record_row(i, r, root) for i, r in enumerate(pool)])
            stage.finish(started, {"files": files, "counts": counts, "embedder": self.embedder.name,
                                   "seed": self.config.seed, "pool_spec": self.config.data.pool,
                                   ROOT_OUTPUT: str(root)})
        return self._written(stage)

    def _embed_group(self, group: str, fitted: StageResult | None) -> np.ndarray | None:
        """One group's embeddings, one row per record in record order (None: none for this group).

        Under torchrun, an embedder whose rows each depend on one image alone (``per_image``) runs
        in every process on a contiguous share of the records and rank 0 puts the shares end to
        end (the others get None); any other embedder runs on rank 0 only.
        """
        records = self.inputs.records[group]
        split = distributed.active() and getattr(self.embedder, "per_image", False)
        if not split and not distributed.is_main():
            return None
        share = distributed.share(len(records)) if split else slice(0, len(records))
        d = self.config.data

        def batches():
            decoded = self.inputs.decoded(group)
            if decoded is not None:  # already decoded for fitting: embed from memory
                decoded = decoded[share]
                return (decoded[i:i + 64] for i in range(0, len(decoded), 64))
            # else stream, so a large pool is embedded in bounded memory
            return iter_arrays(records[share], d.image_size, self.inputs.channels, d.normalize, batch_size=64)

        embedding = self.embedder.embed(group, records[share], batches, channels=self.inputs.channels,
                                        checkpoint=fitted.path("checkpoint") if fitted else None, device=self.device)
        if not split:
            return embedding
        parts = distributed.gather(embedding)
        if parts is None or any(part is None for part in parts):
            return None
        return np.concatenate(parts)

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
        if distributed.is_main():  # numpy on one process; the others wait for its file
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
                # Memory-mapped: selection makes its own float64 copy, and need not hold a second one.
                result = select_core(np.load(embeddings.folder / "pool.npy", mmap_mode="r"),
                                     np.load(embeddings.folder / source, mmap_mode="r") if source else None,
                                     random_state=self.config.seed, sites=[r.site for r in pool],
                                     scores=np.load(scores.path("scores")) if scores is not None else None,
                                     labeled=labeled or None, **settings)
            from xssr.exchange.selection_csv import write_selection

            root = data_root(pool)
            write_selection(stage.folder, result, pool, root)
            stage.finish(started, {
                "selection": "selection.csv", ROOT_OUTPUT: str(root), "n_selected": int(len(result.indices)), "alpha": result.alpha,
                "coverage": None if np.isnan(result.coverage) else result.coverage,
                "alpha_curve": [list(pair) for pair in result.alpha_curve], "delta": result.delta,
            })
        return self._written(stage)

    def selected(self, selection: StageResult) -> list[ImageRecord]:
        """The pool records a selection chose, in pick order."""
        by_key = {r.key: r for r in self.inputs.records["pool"]}
        return [by_key[row["key"]] for row in read_named_rows(selection.path("selection"))]

    # ---- stage 4: evaluation
    def evaluate(self, method: str, trained: StageResult, *, source_only: bool = False) -> dict[str, Any]:
        """Test Dice of the U-Net of ``trained``; returns the metrics written to metrics.json.

        ``source_only``: ``trained`` is the source U-Net itself, measured with no target annotation."""
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
        metrics = None
        if distributed.is_main():  # on one process; the others wait for its files
            started = stage.start()
            model = load_unet(torch.load(trained.path("checkpoint"), map_location="cpu", weights_only=True),
                              self.inputs.channels, cfg)
            images, masks = self.inputs.arrays("test", with_masks=True)
            start_infer = time.perf_counter()
            predicted = segment_images(model, images, cfg, device=self.device)
            infer_seconds = time.perf_counter() - start_infer
            dice = dice_per_image(predicted, masks, 0.5)
            test = self.inputs.records["test"]
            root = data_root(test)
            metrics = {
                "method": method, "n_train": 0 if source_only else trained.outputs["n_train"],
                "dice": summarise_dice(dice, [r.site for r in test]),
                "threshold": cfg.threshold, "train_seconds": trained.outputs.get("train_seconds", 0.0),
                "recipe": "source-only" if source_only else cfg.recipe, **self._source_note(),
            }
            write_csv(stage.folder / "per_image.csv",
                      [{**record_row(i, r, root), "dice": float(v)} for i, (r, v) in enumerate(zip(test, dice))])
            # The best and worst few, for the report's overlays (tens of kilobytes).
            save_examples(stage.folder / EXAMPLES_FILE, images, masks, predicted, dice)
            write_json(stage.folder / "metrics.json", metrics)
            stage.finish(started, {"metrics": "metrics.json", "examples": EXAMPLES_FILE, ROOT_OUTPUT: str(root),
                                   "inference_images_per_second":
                                   round(len(test) / infer_seconds, 2) if infer_seconds else None})
        self._written(stage)
        return metrics if metrics is not None else read_json(stage.folder / "metrics.json")

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
        """Select, train and evaluate every configured method: (metrics, selections) per method.

        Each method's metrics also say the alpha its selection chose and the seconds of every stage
        it rests on. When the recipe started from a source U-Net, that model alone is measured too
        (``source-only``: no target annotation), the row every annotation must beat.
        """
        selections = self.selections()
        metrics = {}
        for method, selection in selections.items():
            evaluated = self.evaluate(method, self.train(method, selection))
            metrics[method] = {**evaluated, "alpha": selection.outputs.get("alpha"),
                               "stage_seconds": self._stage_seconds(method)}
        from xssr.train.recipes import get_recipe

        if "source_model" in get_recipe(self.config.train.recipe).needs and self.config.train.recipe != "source-only":
            evaluated = self.evaluate("source-only", self.results["source-train"], source_only=True)
            metrics["source-only"] = {**evaluated, "stage_seconds": self._stage_seconds("source-only")}
        return metrics, selections

    def _stage_seconds(self, method: str) -> dict[str, float]:
        """Seconds each stage behind ``method``'s result took when it was computed (also if reused now)."""
        from xssr.train.recipes import get_recipe

        needs = get_recipe(self.config.train.recipe).needs
        shared = {"source-train"} if "source_model" in needs else set()
        if "ssl_model" in needs:
            shared.add("ssl-pretrain")
        if method in self.config.select.methods and get_method(method).uses_embeddings:
            shared |= {"pretrain", "embed"}
        if method in self.config.select.methods and get_method(method).uses_scores:
            shared |= {"source-train", "uncertainty"}
        return {label: round(result.seconds, 1) for label, result in self.results.items()
                if label in shared or label.endswith(f"/{method}")}
