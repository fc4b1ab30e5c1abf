"""The xssr Python API: every CLI subcommand is one call here.

A run folder holds one subfolder per stage::

    OUT/pretrain/            mae.pt, history.csv, manifest.json
    OUT/embed/               source.npy, pool.npy, pool_index.csv, manifest.json
    OUT/select/<method>/     selection.csv, alpha_curve.csv, manifest.json
    OUT/train/<method>/      unet.pt, history.csv, manifest.json
    OUT/evaluate/<method>/   metrics.json, per_image.csv, manifest.json
    OUT/metrics.json, OUT/run_manifest.json

A stage's manifest is written last; calling a stage again with the same configuration
and inputs reuses it (see xssr.report.stages). Every entry point checks all the inputs it
will touch before any stage starts.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.config import METHODS, RunConfig
from xssr.data import (
    ImageRecord,
    InputError,
    InputSummary,
    check_inputs,
    default_data_root,
    iter_arrays,
    load_arrays,
    load_records,
    make_synthetic_dataset,
)
from xssr.metrics import dice_per_image, summarise_dice
from xssr.report.io import (
    check_writable_folder, read_csv, remove_interrupted_writes, save_array, write_csv, write_json,
)
from xssr.report.provenance import config_fingerprint, environment
from xssr.report.stages import Stage
from xssr.selection import SelectionResult, resolve_budget
from xssr.selection import select as _select_core

logger = logging.getLogger(__name__)

#: Methods that need MAE embeddings (and so a source set and pretraining).
EMBEDDING_METHODS = (
    "xssr", "coreset", "typiclust", "probcover", "xssr-no-density", "xssr-no-novelty", "xssr-no-diversity",
)


@dataclass
class RunResult:
    """What :func:`run` produced: metrics per method and where the files are."""

    out: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    selections: dict[str, Path] = field(default_factory=dict)

    def table(self) -> str:
        """Plain-text summary: method, annotated images, test Dice, share of full-data Dice."""
        full = self.metrics.get("full", {}).get("dice", {}).get("overall", {}).get("mean")
        lines = [f"{'method':<20} {'n_labelled':>10} {'test Dice':>17} {'% of full':>10}"]
        for method, m in self.metrics.items():
            overall = m["dice"]["overall"]
            share = f"{100 * overall['mean'] / full:9.1f}%" if full else f"{'-':>10}"
            lines.append(
                f"{method:<20} {m['n_train']:>10d} {overall['mean']:>9.4f} ± {overall['std']:.4f} {share}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


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


_MISSING_GROUP_HINTS = {
    "test": " (annotated target images to measure Dice on): give --test, or, to choose the images to annotate "
            "without measuring, use `xssr select` (checked alone by `xssr validate --stage select`)",
}


class _Run:
    """One run folder: resolved inputs, their check, cached arrays and the stages."""

    def __init__(self, config: RunConfig, out: str | Path, *, progress: bool = False):
        self.config = config
        self.out = Path(out)
        self.progress = progress
        self.data_root = Path(config.data.data_root) if config.data.data_root else default_data_root()
        self.records: dict[str, list[ImageRecord]] = {}
        self.summary: InputSummary | None = None
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self._device = None
        self._channels: int | None = None
        # Taken now, not when the manifest is written: the code that runs is the code at the start.
        self.environment = environment()
        self._announced: set[str] = set()

    def _reuse(self, stage: Stage) -> None:
        # Later stages pull their upstream again for every method: say "reused" once per stage.
        if stage.label not in self._announced:
            self._announced.add(stage.label)
            stage.reuse()

    # ---- inputs
    def needs(self, groups: Sequence[str], masks: Sequence[str] = ()) -> None:
        """Resolve and check the given groups (all at once); raises InputError listing every problem."""
        specs = {"source": self.config.data.source, "pool": self.config.data.pool, "test": self.config.data.test}
        problems = []
        for group in groups:
            if not specs[group]:
                problems.append(f"data.{group} is not set, but this step needs the {group} images"
                                + _MISSING_GROUP_HINTS.get(group, ""))
        if problems:
            raise ValueError("Missing inputs:\n  " + "\n  ".join(problems))
        spec_problems = []
        for group in groups:
            # "SPEC + SPEC" joins several specs, e.g. one pool drawn from two datasets' manifests.
            parts = [part.strip() for part in specs[group].split(" + ")]
            try:
                self.records[group] = [r for part in parts for r in load_records(part, data_root=self.data_root)]
            except ValueError as error:
                spec_problems.append((f"data.{group}", str(error)))
                self.records[group] = []
                continue
            if not self.records[group]:
                spec_problems.append((group, f"no images match the spec {specs[group]!r}"))
        from tqdm.auto import tqdm

        total = sum(len(self.records[g]) for g in groups)
        with tqdm(total=total, desc="checking inputs", disable=not self.progress, leave=False) as bar:
            try:
                self.summary = check_inputs(
                    {g: self.records[g] for g in groups}, require_masks=frozenset(masks),
                    specs={g: specs[g] for g in groups}, progress=bar.update,
                )
            except InputError as error:
                reported = {label for label, _ in spec_problems}
                raise InputError(spec_problems + [p for p in error.problems if p[0] not in reported]) from None
        if spec_problems:
            raise InputError(spec_problems)
        logger.info("inputs checked: %s", {g: len(self.records[g]) for g in groups})

    def adopt_inputs(self, checked: "_Run") -> None:
        """Take the resolved and checked inputs of another run of the same data specs."""
        self.records = {g: list(recs) for g, recs in checked.records.items()}
        self.summary = checked.summary

    def record_hash(self, key: str) -> tuple[str, str]:
        """(image sha1, mask sha1) of one record, so a changed mask also invalidates results."""
        return self.summary.content_hashes.get(key, ""), self.summary.mask_hashes.get(key, "")

    def group_hash(self, group: str, masks: bool = True) -> str:
        """Fingerprint of a group's records: keys, sites, image bytes and (if ``masks``) mask bytes.

        Stages that never read masks leave them out, so annotating the selected images
        later does not invalidate the embeddings and selections they were chosen from.
        """
        return config_fingerprint([
            (r.key, r.site, self.record_hash(r.key)[0], self.record_hash(r.key)[1] if masks else "")
            for r in self.records[group]
        ])

    @property
    def channels(self) -> int:
        if self._channels is None:
            # Every image was opened by the input check, so its colour kinds are known exactly.
            self._channels = self.config.data.channels or (3 if "rgb" in self.summary.channel_kinds else 1)
        return self._channels

    @property
    def device(self):
        if self._device is None:
            self._device = resolve_device(self.config.device)
        return self._device

    def data_key(self) -> dict[str, Any]:
        d = self.config.data
        return {"image_size": d.image_size, "channels": self.channels, "normalize": d.normalize}

    def arrays(self, group: str, with_masks: bool) -> tuple[np.ndarray, np.ndarray | None]:
        cached = self._arrays.get(group)
        if cached is None or (with_masks and cached[1] is None):
            d = self.config.data
            cached = load_arrays(self.records[group], d.image_size, self.channels, d.normalize, with_masks=with_masks)
            self._arrays[group] = cached
        return cached

    # ---- stage 1: MAE
    def _pretrain_groups(self) -> list[str]:
        return ["source"] + (["pool"] if self.config.pretrain.train_on == "source+pool" else [])

    def _pretrain_stage(self) -> Stage:
        return Stage(
            self.out / "pretrain",
            name="pretrain",
            inputs={"data": self.data_key(), "pretrain": dataclasses.asdict(self.config.pretrain),
             "seed": self.config.seed,
             "inputs": {g: self.group_hash(g, masks=False) for g in self._pretrain_groups()}},
        )

    def pretrain(self) -> Path:
        cfg = self.config.pretrain
        groups = self._pretrain_groups()
        stage = self._pretrain_stage()
        checkpoint = stage.folder / "mae.pt"
        if stage.is_complete() and checkpoint.exists():
            self._reuse(stage)
            return checkpoint
        started = stage.start()
        images = np.concatenate([self.arrays(g, with_masks=False)[0] for g in groups])
        from xssr.train import train_mae

        model, history = train_mae(
            images, cfg, seed=self.config.seed, device=self.device,
            progress=_progress(self.progress, "pretrain MAE", cfg.epochs),
        )
        _save_state(checkpoint, model.state_dict())
        write_csv(stage.folder / "history.csv",
                  [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)])
        stage.finish(started, {
            "checkpoint": checkpoint.name, "n_images": len(images), "in_channels": self.channels,
            "widths": list(cfg.widths), "final_loss": history.epoch_loss[-1],
            "images_per_second": round(history.samples_per_second, 2),
        })
        return checkpoint

    # ---- stage 1b: embeddings
    def _embed_stage(self) -> Stage:
        pre = Stage(self.out / "pretrain", {})
        return Stage(
            self.out / "embed",
            name="embed",
            inputs={"pretrain": _read_fingerprint(pre.manifest_path), "data": self.data_key(),
             "inputs": {g: self.group_hash(g, masks=False) for g in ("source", "pool")}},
        )

    @staticmethod
    def _embed_paths(stage: Stage) -> dict[str, Path]:
        return {g: stage.folder / f"{g}.npy" for g in ("source", "pool")}

    @classmethod
    def _embed_done(cls, stage: Stage) -> dict[str, Path] | None:
        """The embedding files of a complete embed stage, or None."""
        paths = cls._embed_paths(stage)
        return paths if stage.is_complete() and all(p.exists() for p in paths.values()) else None

    def embeddings_ready(self) -> bool:
        """Whether :meth:`embed` would only read files (no MAE training, no embedding pass)."""
        return self._pretrain_stage().is_complete() and self._embed_done(self._embed_stage()) is not None

    def embed(self) -> dict[str, Path]:
        from xssr.train import embed_batches, load_mae
        import torch

        checkpoint = self.pretrain()
        stage = self._embed_stage()
        done = self._embed_done(stage)
        if done is not None:
            self._reuse(stage)
            return done
        paths = self._embed_paths(stage)
        started = stage.start()
        model = load_mae(torch.load(checkpoint, map_location="cpu", weights_only=True), self.channels,
                         self.config.pretrain.widths)
        d = self.config.data
        counts = {}
        for group in ("source", "pool"):
            loaded = self._arrays.get(group)
            if loaded is not None:  # already decoded for MAE training: embed from memory
                batches = (loaded[0][i:i + 64] for i in range(0, len(loaded[0]), 64))
            else:  # stream, so a large pool is embedded in bounded memory
                batches = iter_arrays(self.records[group], d.image_size, self.channels, d.normalize, batch_size=64)
            emb = embed_batches(model, batches, device=self.device, precision=self.config.pretrain.precision)
            save_array(paths[group], emb)
            counts[group] = int(len(emb))
        write_csv(stage.folder / "pool_index.csv", [_record_row(i, r) for i, r in enumerate(self.records["pool"])])
        stage.finish(started, {"files": {g: p.name for g, p in paths.items()}, "counts": counts})
        return paths

    # ---- stage 2: selection
    def select(self, method: str) -> Path:
        s = self.config.select
        pool = self.records["pool"]
        # Random picks ignore embeddings, but when a run has them its coverage is still worth
        # reporting beside the others'.
        uses_embeddings = method in EMBEDDING_METHODS or (
            method in ("random", "stratified-random")
            and any(m in EMBEDDING_METHODS for m in self.config.select.methods))
        if uses_embeddings:
            paths = self.embed()
            upstream = _read_fingerprint(self.out / "embed" / "manifest.json")
        else:
            paths, upstream = None, self.group_hash("pool", masks=False)
        stage = Stage(
            self.out / "select" / method,
            name=f"select/{method}",
            inputs={"method": method, "upstream": upstream,
             "settings": {} if method == "full" else method_settings(method, s),
             "seed": self.config.seed},
        )
        csv_path = stage.folder / "selection.csv"
        if stage.is_complete() and csv_path.exists():
            self._reuse(stage)
            return csv_path
        started = stage.start()
        if method == "full":
            result = SelectionResult(method="full", indices=np.arange(len(pool)), coverage=0.0)
        else:
            sites = [r.site for r in pool]
            if paths is None:  # random without embeddings: coverage cannot be measured
                result = _select_core(np.zeros((len(pool), 1), np.float32), None, random_state=self.config.seed,
                                      sites=sites, **method_settings(method, s))
                result = dataclasses.replace(result, coverage=float("nan"))
            else:
                result = _select_core(np.load(paths["pool"]), np.load(paths["source"]),
                                      random_state=self.config.seed, sites=sites, **method_settings(method, s))
        write_selection(stage.folder, result, pool)
        stage.finish(started, {
            "selection": csv_path.name, "n_selected": int(len(result.indices)), "alpha": result.alpha,
            "coverage": None if np.isnan(result.coverage) else result.coverage,
        })
        return csv_path

    # ---- stage 3: U-Net
    def train(self, method: str) -> Path:
        csv_path = self.select(method)
        keys = [row["key"] for row in read_csv(csv_path)]
        by_key = {r.key: i for i, r in enumerate(self.records["pool"])}
        chosen = [by_key[k] for k in keys]
        cfg = self.config.train
        stage = Stage(
            self.out / "train" / method,
            # Pick order is kept: it decides the batches. The threshold only matters when evaluating.
            {"train": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threshold"}, "data": self.data_key(),
             "seed": self.config.seed, "images": [(k, *self.record_hash(k)) for k in keys]},
            name=f"train/{method}",
        )
        checkpoint = stage.folder / "unet.pt"
        if stage.is_complete() and checkpoint.exists():
            self._reuse(stage)
            return checkpoint
        records = [self.records["pool"][i] for i in chosen]
        # A manifest may name the mask files before they are drawn; the input check lets a
        # missing one pass for stages that need no masks, so it is caught here.
        unannotated = [r for r in records if r.mask is None or not r.mask.is_file()]
        if unannotated:
            # Checked before the stage starts, so no half-trained model is left behind.
            raise InputError([(r.label, f"selected for annotation by '{method}' but has no mask yet"
                               + (f" ({r.mask} does not exist)" if r.mask is not None else ""))
                              for r in unannotated])
        started = stage.start()
        d = self.config.data
        images, masks = load_arrays(records, d.image_size, self.channels, d.normalize, with_masks=True)
        from xssr.train import train_unet

        model, history = train_unet(
            images, masks, cfg, seed=self.config.seed, device=self.device,
            progress=_progress(self.progress, f"train U-Net ({method})", cfg.epochs),
        )
        _save_state(checkpoint, model.state_dict())
        write_csv(stage.folder / "history.csv",
                  [{"epoch": i + 1, "loss": v} for i, v in enumerate(history.epoch_loss)])
        stage.finish(started, {
            "checkpoint": checkpoint.name, "n_train": len(chosen), "in_channels": self.channels,
            "steps": history.steps, "train_seconds": round(history.seconds, 2),
            "images_per_second": round(history.samples_per_second, 2),
        })
        return checkpoint

    # ---- evaluation
    def evaluate(self, method: str) -> dict[str, Any]:
        import torch

        checkpoint = self.train(method)
        train_stage = Stage(self.out / "train" / method, {})
        train_manifest = train_stage.manifest_path
        stage = Stage(
            self.out / "evaluate" / method,
            name=f"evaluate/{method}",
            inputs={"train": _read_fingerprint(train_manifest), "test": self.group_hash("test"),
             "threshold": self.config.train.threshold, "data": self.data_key()},
        )
        metrics_path = stage.folder / "metrics.json"
        if stage.is_complete() and metrics_path.exists():
            from xssr.report.io import read_json

            self._reuse(stage)
            return read_json(metrics_path)
        started = stage.start()
        from xssr.train import load_unet, predict_probabilities

        model = load_unet(torch.load(checkpoint, map_location="cpu", weights_only=True), self.channels,
                          self.config.train)
        images, masks = self.arrays("test", with_masks=True)
        probabilities = predict_probabilities(model, images, device=self.device, precision=self.config.train.precision)
        dice = dice_per_image(probabilities, masks, self.config.train.threshold)
        test = self.records["test"]
        train_info = train_stage.outputs()
        metrics = {
            "method": method,
            "n_train": train_info["n_train"],
            "dice": summarise_dice(dice, [r.site for r in test]),
            "threshold": self.config.train.threshold,
            "train_seconds": train_info["train_seconds"],
        }
        write_csv(stage.folder / "per_image.csv",
                  [{**_record_row(i, r), "dice": float(v)} for i, (r, v) in enumerate(zip(test, dice))])
        write_json(metrics_path, metrics)
        stage.finish(started, {"metrics": metrics_path.name})
        return metrics


def _read_fingerprint(manifest: Path) -> str:
    from xssr.report.io import read_json

    return read_json(manifest)["fingerprint"]


def _save_state(path: Path, state: dict) -> None:
    import torch

    from xssr.report.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _record_row(index: int, record: ImageRecord) -> dict[str, Any]:
    return {
        "index": index, "key": record.key, "image": str(record.image), "slice_index": record.slice_index,
        "site": record.site, "case_id": record.case_id,
    }


def method_settings(method: str, s) -> dict[str, Any]:
    """Selection parameters for a method name; the ablations fix one switch of XSSR's score."""
    common = {"budget": s.budget, "k": s.k, "metric": s.metric, "beta": s.beta, "alpha": s.alpha,
              "alpha_grid": list(s.alpha_grid)}
    if method == "xssr":
        return {"method": "xssr", **common}
    if method == "xssr-no-density":
        return {"method": "xssr", **common, "beta": 0.0}
    if method == "xssr-no-novelty":
        return {"method": "xssr", **common, "alpha": 0.0}
    if method == "xssr-no-diversity":
        return {"method": "xssr", **common, "alpha": 1.0}
    if method in ("random", "coreset", "typiclust", "probcover", "stratified-random"):
        return {"method": method, "budget": s.budget, "metric": s.metric}
    raise ValueError(f"Unknown selection method {method!r}; valid: {', '.join(METHODS)}.")


SELECTION_COLUMNS = (
    "rank", "index", "case_id", "site", "image", "slice_index", "key", "method", "alpha", "beta",
    "density", "novelty", "diversity", "z_density", "z_novelty", "z_diversity", "score",
)


def write_selection(folder: Path, result: SelectionResult, pool: Sequence[ImageRecord] | None = None) -> Path:
    """Write the ranked selection CSV (and the alpha->coverage curve when alpha was calibrated)."""
    rows = []
    for row in result.to_rows():
        index = int(row["index"])
        extra = _record_row(index, pool[index]) if pool is not None else {"key": str(index)}
        rows.append({**row, **extra, "method": result.method, "alpha": result.alpha, "beta": result.beta})
    path = write_csv(Path(folder) / "selection.csv", rows, SELECTION_COLUMNS)
    curve = Path(folder) / "alpha_curve.csv"
    if result.alpha_curve:
        write_csv(curve, [{"alpha": a, "coverage": c, "chosen": a == result.alpha} for a, c in result.alpha_curve])
    elif curve.exists():
        curve.unlink()  # left from an earlier run with alpha="auto"; it would contradict this selection
    return path


# --------------------------------------------------------------------------- public API

def _groups_for(config: RunConfig, stage: str) -> tuple[list[str], list[str]]:
    """Which input groups a stage touches, and which of them must have masks."""
    methods = config.select.methods
    embeds = any(m in EMBEDDING_METHODS for m in methods)
    if stage in ("pretrain",):
        return (["source"] + (["pool"] if config.pretrain.train_on == "source+pool" else [])), []
    if stage in ("embed",):
        return ["source", "pool"], []
    if stage == "select":
        return (["source", "pool"] if embeds else ["pool"]), []
    # Pool masks are needed up front only when the whole pool is trained on; otherwise only the
    # selected images must be annotated, and that is checked once the selection is known.
    pool_masks = ["pool"] if "full" in methods else []
    if stage == "train":
        return (["source", "pool"] if embeds else ["pool"]), pool_masks
    return (["source", "pool", "test"] if embeds else ["pool", "test"]), pool_masks + ["test"]


#: Stages whose commands select, and so need a budget the pool can meet.
_SELECTING_STAGES = ("select", "train", "run")


def _check_budget(run_: _Run) -> None:
    """A budget the pool cannot meet is an input error, found before any stage runs."""
    if all(m == "full" for m in run_.config.select.methods):
        return
    budget, n_pool = run_.config.select.budget, len(run_.records["pool"])
    try:
        resolve_budget(budget, n_pool)
    except ValueError:
        raise InputError([("select.budget", f"asks for {budget:g} images, but the pool "
                           f"({run_.config.data.pool}) has only {n_pool}")]) from None


def validate(config: RunConfig, *, stage: str = "run") -> InputSummary:
    """Check every input the given stage would read; raises ``InputError`` listing all problems."""
    run_ = _Run(config, ".")
    groups, masks = _groups_for(config, stage)
    run_.needs(groups, masks)
    if stage in _SELECTING_STAGES:
        _check_budget(run_)
    return run_.summary


def pretrain(config: RunConfig, out: str | Path, *, progress: bool = False) -> Path:
    """Train the MAE on the source images (stage 1); returns the checkpoint path."""
    run_ = _open(config, out, "pretrain", progress)
    return run_.pretrain()


def embed(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Embed source and pool with the (cached or new) MAE; returns {'source': npy, 'pool': npy}."""
    return _open(config, out, "embed", progress).embed()


def select(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Run every configured selection method (stage 2); returns {method: selection.csv}."""
    run_ = _open(config, out, "select", progress)
    return {m: run_.select(m) for m in config.select.methods}


def train(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Train a U-Net on each method's selection (stage 3); returns {method: checkpoint}."""
    run_ = _open(config, out, "train", progress)
    return {m: run_.train(m) for m in config.select.methods}


def evaluate(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, dict]:
    """Test Dice of each method's U-Net on the target test images; returns {method: metrics}."""
    run_ = _open(config, out, "run", progress)
    return {m: run_.evaluate(m) for m in config.select.methods}


def run(config: RunConfig, out: str | Path, *, progress: bool = False) -> RunResult:
    """The whole pipeline for every configured method, with a summary and a run manifest."""
    run_ = _open(config, out, "run", progress)
    result = RunResult(out=run_.out)
    for method in config.select.methods:
        result.metrics[method] = run_.evaluate(method)
        result.selections[method] = run_.select(method)
    write_json(run_.out / "metrics.json", result.metrics)
    _write_run_manifest(run_)
    return result


def select_embeddings(
    pool_embeddings: np.ndarray,
    source_embeddings: np.ndarray | None = None,
    *,
    method: str = "xssr",
    budget: float = 0.05,
    alpha: float | str = "auto",
    beta: float = 0.5,
    k: int = 10,
    alpha_grid: Sequence[float] | None = None,
    metric: str = "euclidean",
    seed: int = 0,
) -> SelectionResult:
    """Select from embeddings made by any model: (n_pool, d) and (n_source, d) arrays."""
    from xssr.config import SelectConfig

    s = SelectConfig(budget=budget, alpha=alpha, beta=beta, k=k, metric=metric,
                     alpha_grid=tuple(alpha_grid) if alpha_grid is not None else SelectConfig().alpha_grid)
    if method == "full":
        raise ValueError("The 'method' 'full' is not a selection; choose one of "
                         + ", ".join(m for m in METHODS if m != "full") + ".")
    return _select_core(pool_embeddings, source_embeddings, random_state=seed, **method_settings(method, s))


def select_embedding_files(
    pool_path: str | Path,
    source_path: str | Path | None,
    out: str | Path,
    config: RunConfig,
    *,
    method: str = "xssr",
) -> tuple[SelectionResult, Path]:
    """Select from ``.npy`` embeddings made by any model and write ``OUT/selection.csv``.

    Both files are checked (readable .npy, 2-D numeric, finite, the same width, a budget
    the pool can meet) before anything is written; problems name the file and its flag.
    """
    from xssr.data.embeddings import read_embeddings

    check_writable_folder(out)
    problems, arrays = [], {}
    for name, path, flag in (("pool", pool_path, "--pool-embeddings"),
                             ("source", source_path, "--source-embeddings")):
        if path is None:
            continue
        try:
            arrays[name] = read_embeddings(path)
        except InputError as error:
            problems += [(f"{label} ({flag})", reason) for label, reason in error.problems]
    settings = method_settings(method, config.select) if method != "full" else {}
    if source_path is None and settings.get("method") == "xssr" and settings.get("alpha") != 0:
        problems.append(("--source-embeddings", f"'{method}' weighs novelty (distance to the source), so it needs "
                         "source embeddings: give --source-embeddings, or --alpha 0 to select without novelty"))
    if "pool" in arrays and "source" in arrays and arrays["pool"].shape[1] != arrays["source"].shape[1]:
        problems.append((f"{source_path} (--source-embeddings)",
                         f"has {arrays['source'].shape[1]} features per row, but the pool embeddings "
                         f"{pool_path} have {arrays['pool'].shape[1]}"))
    if "pool" in arrays:
        try:
            resolve_budget(config.select.budget, len(arrays["pool"]))
        except ValueError:
            problems.append(("select.budget", f"asks for {config.select.budget:g} images, but {pool_path} "
                             f"has only {len(arrays['pool'])} rows"))
    if problems:
        raise InputError(problems)
    s = config.select
    result = select_embeddings(arrays["pool"], arrays.get("source"), method=method, budget=s.budget,
                               alpha=s.alpha, beta=s.beta, k=s.k, alpha_grid=s.alpha_grid, metric=s.metric,
                               seed=config.seed)
    return result, write_selection(Path(out), result)


def demo(out: str | Path, *, progress: bool = False, seed: int = 0) -> RunResult:
    """Make a small SYNTHETIC two-domain set under OUT/data and run the whole pipeline on it."""
    out = Path(out)
    check_writable_folder(out)
    manifest = make_synthetic_dataset(out / "data", n_source=60, n_pool=100, n_test=40, seed=seed)
    config = demo_config(manifest, seed)
    return run(config, out, progress=progress)


def demo_config(manifest: Path, seed: int = 0) -> RunConfig:
    """Settings sized for the synthetic demo: 64 px, short MAE training, same U-Net recipe."""
    from xssr.config import DataConfig, PretrainConfig, SelectConfig, TrainConfig

    m = str(manifest)
    return RunConfig(
        data=DataConfig(source=f"{m}#site=synthetic_source", pool=f"{m}#split=train&site="
                        "synthetic_target_a,synthetic_target_b,synthetic_target_c",
                        test=f"{m}#split=test", image_size=64),
        pretrain=PretrainConfig(epochs=15, batch_size=16),
        select=SelectConfig(budget=0.1),
        train=TrainConfig(epochs=100, min_steps=300),
        seed=seed,
    )


def _open(config: RunConfig, out: str | Path, stage: str, progress: bool) -> _Run:
    check_writable_folder(out)
    run_ = _Run(config, out, progress=progress)
    groups, masks = _groups_for(config, stage)
    run_.needs(groups, masks)  # everything is checked before any output is written
    if stage in _SELECTING_STAGES:
        _check_budget(run_)
    run_.out.mkdir(parents=True, exist_ok=True)
    remove_interrupted_writes(run_.out)  # config.json, metrics.json... of a run killed mid-write
    write_json(run_.out / "config.json", config.to_dict())
    return run_


def _write_run_manifest(run_: _Run) -> None:
    summary = run_.summary
    write_json(run_.out / "run_manifest.json", {
        "config": run_.config.to_dict(),
        "seed": run_.config.seed,
        "device": str(run_.device),
        "data_root": str(run_.data_root) if run_.data_root else None,
        "environment": run_.environment,
        "inputs": {g: [{"key": r.key, "sha1": summary.content_hashes.get(r.key, ""),
                        "mask_sha1": summary.mask_hashes.get(r.key, "")} for r in recs]
                   for g, recs in run_.records.items()},
    })
