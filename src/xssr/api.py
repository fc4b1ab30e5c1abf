"""The xssr Python API: every CLI subcommand is one call here.

Each call checks every input it will touch before any stage starts (nothing is written when
something is wrong), then hands over to :class:`xssr.pipeline.Pipeline`, which runs the
stages forward and reuses every finished one (see :mod:`xssr.pipeline.run` for the run
folder's layout).

The pipeline commands (pretrain, embed, select, train, evaluate, run, demo) also run under
torchrun, one call per process: rank 0 writes every file, and each call returns once they are
written (docs/cluster.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.config import RunConfig, demo_config
from xssr.data import InputSummary, make_synthetic_dataset
from xssr.exchange.selection_csv import write_selection
from xssr.pipeline import Inputs, Pipeline, needs_embeddings, plan
from xssr.embedding import get_embedder, uses_source_model
from xssr.pipeline.plan import needs_scores, needs_source_weights
from xssr.report.io import check_writable_folder, remove_interrupted_writes, write_json
from xssr.report.provenance import environment
from xssr.report.run_text import metrics_table
from xssr.selection import SelectionResult
from xssr.selection import select as _select_core
from xssr.selection.registry import get_method, method_names
from xssr.train import distributed

logger = logging.getLogger(__name__)

#: Files a command writes at the top of the run folder.
_RUN_FILES = ("config.json", "metrics.json", "run_manifest.json", "report.html")
#: Commands whose work includes a selection, and so need a budget the pool can meet.
_SELECTING_COMMANDS = ("select", "train", "run")


@dataclass
class RunResult:
    """What :func:`run` produced: metrics per method and where the files are."""

    out: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    selections: dict[str, Path] = field(default_factory=dict)
    #: OUT/report.html, or None when it could not be written (a warning says why).
    report: Path | None = None

    def table(self) -> str:
        """Plain-text summary: method, annotated images, test Dice, share of full-data Dice."""
        return metrics_table(self.metrics)


def _checked_inputs(config: RunConfig, command: str, progress: bool = False) -> Inputs:
    """Every input ``command`` reads, checked; ``inputs.config`` is ``config`` with an ``auto``
    recipe resolved (xssr.pipeline.recipe_choice)."""
    from xssr.pipeline.recipe_choice import resolve_recipe

    config = resolve_recipe(config)
    inputs = Inputs(config, progress=progress and distributed.is_main())
    groups, masks = plan(config, command)
    inputs.check(groups, masks)
    if command in _SELECTING_COMMANDS:
        inputs.check_budget()
    if command == "embed" or needs_embeddings(config):
        get_embedder(config).check(inputs.records)
    reads_source_model = (uses_source_model(get_embedder(config)) and (command == "embed" or needs_embeddings(config))
                          or command in _SELECTING_COMMANDS and needs_scores(config))
    if config.train.source_weights and (reads_source_model or (command in ("train", "run")
                                                               and needs_source_weights(config))):
        from xssr.train import read_source_weights

        read_source_weights(config.train.source_weights, inputs.channels, config.train)
    return inputs


def _open(config: RunConfig, out: str | Path, command: str, progress: bool) -> Pipeline:
    """Check the output folder and every input, then (only then) create the run folder."""
    check_writable_folder(out)
    inputs = _checked_inputs(config, command, progress)
    config = inputs.config
    out = Path(out)
    if distributed.is_main():  # under torchrun every process checks, one writes
        out.mkdir(parents=True, exist_ok=True)
        for name in _RUN_FILES:  # of a run killed mid-write; only xssr's own names in a folder the user chose
            remove_interrupted_writes(out, name)
        write_json(out / "config.json", config.to_dict())
    return Pipeline(config, out, inputs, progress=progress)


def validate(config: RunConfig, *, stage: str = "run") -> InputSummary:
    """Check every input the given stage would read; raises ``InputError`` listing all problems."""
    return _checked_inputs(config, stage).summary


def pretrain(config: RunConfig, out: str | Path, *, progress: bool = False) -> Path:
    """Train the MAE (or the configured embedder) on the source images (stage 1); returns the checkpoint path."""
    from xssr.embedding import get_embedder

    if not get_embedder(config).learns:  # before any input is read or any folder made
        raise ValueError(f"embed.model = {config.embed.model!r} learns nothing: there is no pretraining to run.")
    return _open(config, out, "pretrain", progress).pretrain().path("checkpoint")


def embed(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Embed source and pool with the (cached or new) MAE; returns {'source': npy, 'pool': npy}."""
    embeddings = _open(config, out, "embed", progress).embeddings()
    return {group: embeddings.folder / name for group, name in embeddings.outputs["files"].items()}


def embed_images(run: str | Path, images: str, out: str | Path, *, device: str | None = None) -> Path:
    """Embed the images of the data spec ``images`` with the model ``run`` fitted; returns the
    folder holding embeddings.npy, index.csv and manifest.json (the run is not changed)."""
    from xssr.pipeline.new_images import embed_images as embed_with_run

    return embed_with_run(run, images, out, device=device)


def advise(run: str | Path, labeled: str, next_batch: int, out: str | Path, *, settings: Sequence[str] = (),
           folds: int = 3, n_sizes: int = 4, progress=None) -> dict:
    """How much Dice ``next_batch`` more annotations are likely to add, from a cross-validated
    learning curve of ``run``'s recipe on the annotated images of ``labeled`` (a data spec, e.g. a
    round folder's ``manifest.csv#paths=any``); ``settings`` ("train.steps=500", ...) override the
    run's. Writes OUT/advice.json and OUT/curve.csv (docs/advice.md)."""
    from xssr.config import apply_overrides, check_config
    from xssr.pipeline.advice import advise as fit_and_advise
    from xssr.pipeline.new_images import run_config

    config = run_config(Path(run))
    overrides = {}
    for item in settings:
        key, _, value = item.partition("=")
        overrides[key.strip()] = value.strip()
    config = apply_overrides(config, overrides, where="option")
    check_config(config)
    from xssr.pipeline.recipe_choice import resolve_recipe

    config = resolve_recipe(config)
    check_writable_folder(out)
    return fit_and_advise(config, run, labeled, next_batch, out, folds=folds, n_sizes=n_sizes, progress=progress)


def select(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Run every configured selection method (stage 2); returns {method: selection.csv}."""
    selections = _open(config, out, "select", progress).selections()
    return {m: s.path("selection") for m, s in selections.items()}


def train(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, Path]:
    """Train a U-Net on each method's selection (stage 3); returns {method: checkpoint}."""
    return {m: t.path("checkpoint") for m, t in _open(config, out, "train", progress).trained().items()}


def evaluate(config: RunConfig, out: str | Path, *, progress: bool = False) -> dict[str, dict]:
    """Test Dice of each method's U-Net on the target test images; returns {method: metrics}."""
    metrics, _ = _open(config, out, "run", progress).run()
    return metrics


def run(config: RunConfig, out: str | Path, *, progress: bool = False) -> RunResult:
    """The whole pipeline for every configured method, with a summary and a run manifest."""
    pipeline = _open(config, out, "run", progress)
    started_with = environment()  # the code that runs is the code at the start
    metrics, selections = pipeline.run()
    result = RunResult(out=pipeline.out, metrics=metrics,
                       selections={m: s.path("selection") for m, s in selections.items()})
    if distributed.is_main():
        write_json(pipeline.out / "metrics.json", result.metrics)
        _write_run_manifest(pipeline, started_with)
        result.report = _report_after_run(pipeline.out)
    distributed.barrier()
    return result


def report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of the run folder ``run`` (default ``RUN/report.html``); returns its path.

    One self-contained page (pictures embedded, nothing fetched): the embedding map with the
    picks, the picks in rank order with their score components, the alpha -> coverage curve,
    each site's share of the picks against the pool, the Dice table, and the best and worst
    test predictions of each method. It reads the run folder only; it runs no stage.
    """
    from xssr.report.run_report import write_report

    return write_report(run, out)


def _report_after_run(out: Path) -> Path | None:
    """The report at the end of a run: a failure to write it is a warning, not a failed run
    (every result is written already, and `xssr report OUT` can try again)."""
    try:
        return report(out)
    except (ValueError, OSError) as error:
        logger.warning("The HTML report was not written: %s (try again with `xssr report %s`).", error, out)
        return None


def run_seeds(config: RunConfig, out: str | Path, seeds: Sequence[int], *, progress: bool = False) -> dict[int, RunResult]:
    """:func:`run` once per seed, in ``OUT/seed-<s>/``, every input checked once before the first;
    ``OUT/seeds.json`` and the summary (:func:`xssr.report.run_text.seeds_table`) compare the
    methods over seeds with paired 95 % intervals against random."""
    import dataclasses

    from xssr.report.run_text import seeds_table

    if len(set(seeds)) < 2:
        raise ValueError(f"--seeds needs at least two different seeds to compare over, got {list(seeds)}")
    out = Path(out)
    check_writable_folder(out)
    config = _checked_inputs(config, "run", progress).config  # every problem, before the first seed trains
    results = {s: run(dataclasses.replace(config, seed=int(s)), out / f"seed-{s}", progress=progress) for s in seeds}
    per_seed = {s: r.metrics for s, r in results.items()}
    if distributed.is_main():
        write_json(out / "seeds.json", {"seeds": list(seeds), "metrics": {str(s): m for s, m in per_seed.items()},
                                        "summary": seeds_table(per_seed)})
        _report_after_run(out)  # over the seeds (each seed's folder has its own)
    distributed.barrier()
    return results


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
    spec = get_method(method)
    if spec.algorithm is None:
        raise ValueError(f"The 'method' {method!r} is not a selection; choose one of "
                         + ", ".join(m for m in method_names() if get_method(m).algorithm) + ".")
    return _select_core(pool_embeddings, source_embeddings, random_state=seed, **spec.select_kwargs(s))


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
    from xssr.data.embeddings import read_embedding_files

    check_writable_folder(out)
    spec = get_method(method)
    settings = spec.select_kwargs(config.select) if spec.algorithm else {}
    arrays = read_embedding_files(pool_path, source_path, config.select.budget,
                                  source_needed=settings.get("method") == "xssr" and settings.get("alpha") != 0,
                                  method=method)
    s = config.select
    result = select_embeddings(arrays["pool"], arrays.get("source"), method=method, budget=s.budget,
                               alpha=s.alpha, beta=s.beta, k=s.k, alpha_grid=s.alpha_grid, metric=s.metric,
                               seed=config.seed)
    return result, write_selection(Path(out), result)


def export_selection(run: str | Path, method: str, to: str, out: str | Path, **options: Any) -> Path:
    """Hand ``method``'s selection in the run folder ``run`` to a labelling tool or to nnU-Net.

    ``to="label-studio"``: a task JSON (``out``) plus its labelling config beside it; options
    ``image_url_prefix`` and ``model`` (an xssr U-Net checkpoint whose predictions become
    pre-annotations). ``to="cvat"``: the list of image paths for the task (``out``) and, with
    ``model``, ``<out>.masks.zip`` of predicted masks to upload as annotations. ``to="nnunet"``: an nnU-Net v2 raw dataset under ``out``, from the masks of
    the round folder ``round`` (or the pool's own); options ``dataset_id``, ``name``, ``label``.
    """
    from xssr.exchange.rounds import export_cvat, export_label_studio, export_nnunet_round

    if to == "label-studio":
        return export_label_studio(run, method, out, **options)
    if to == "cvat":
        return export_cvat(run, method, out, **options)
    if to == "nnunet":
        return export_nnunet_round(run, method, out, **options)
    raise ValueError(f"Unknown export format {to!r}; valid: label-studio, cvat, nnunet.")


def import_masks(run: str | Path, method: str, source: str, path: str | Path, out: str | Path, *,
                 allow_empty: bool = False, label: str | None = None) -> Path:
    """Check finished masks of ``method``'s selection (``source``: "label-studio" JSON export, "cvat"
    Segmentation mask 1.1 export, or "folder" of mask files) and write the round folder ``out``;
    returns its manifest."""
    from xssr.exchange.rounds import import_round

    return import_round(run, method, source, path, out, allow_empty=allow_empty, label=label)


def demo(out: str | Path, *, progress: bool = False, seed: int = 0) -> RunResult:
    """Make a small SYNTHETIC two-domain set under OUT/data and run the whole pipeline on it."""
    out = Path(out)
    check_writable_folder(out)
    manifest = None
    if distributed.is_main():
        manifest = make_synthetic_dataset(out / "data", n_source=60, n_pool=100, n_test=40, seed=seed)
    manifest = distributed.agree(manifest)  # sent once rank 0 has written the data
    return run(demo_config(manifest, seed), out, progress=progress)


def _write_run_manifest(pipeline: Pipeline, environment_: dict[str, Any]) -> None:
    inputs = pipeline.inputs
    summary = inputs.summary
    write_json(pipeline.out / "run_manifest.json", {
        "config": pipeline.config.to_dict(),
        "seed": pipeline.config.seed,
        "device": str(pipeline.device),
        "data_root": str(inputs.data_root) if inputs.data_root else None,
        "environment": environment_,
        "inputs": {g: [{"key": r.key, "sha1": summary.content_hashes.get(r.key, ""),
                        "mask_sha1": summary.mask_hashes.get(r.key, "")} for r in recs]
                   for g, recs in inputs.records.items()},
    })
