"""Embed any image set with the model a finished run fitted, into a folder of its own.

A team that chose its first round from one pool wants the next month's images (or another
site's) in the same embedding space: to place them on the run's map, or to select from them with
``embed.model = "precomputed"``. This reads the run's configuration and its fitted embedder,
checks the new images, and writes ``embeddings.npy``, ``index.csv`` (image names below their data
root, xssr.data.names) and ``manifest.json`` into OUT. Nothing of the run is changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from xssr.config import RunConfig, from_dict
from xssr.data import InputError, check_inputs, iter_arrays, load_records
from xssr.data.names import ROOT_OUTPUT, data_root, record_row
from xssr.embedding import get_embedder, uses_source_model
from xssr.pipeline.stage import MANIFEST, Stage
from xssr.report.io import read_json, save_array, write_csv

EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.csv"
#: Run sub-folders that may hold the fitted state an embed stage used.
_FITTED_STAGES = ("pretrain", "source-train")


def run_config(run: Path) -> RunConfig:
    path = run / "config.json"
    if not path.is_file():
        raise InputError([(str(run), "not an xssr run folder (no config.json); give the --out folder of "
                           "xssr embed, select or run")])
    try:
        return from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise InputError([(str(path), f"not a readable run configuration ({error})")]) from None


def fitted_checkpoint(run: Path, config: RunConfig) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, data settings) of the fitted embedder that made ``run``'s embeddings."""
    manifest_path = run / "embed" / MANIFEST
    try:
        embedded = read_json(manifest_path)
    except (OSError, ValueError):
        raise InputError([(str(manifest_path), "missing or unreadable: this run has no finished embeddings "
                           "(run xssr embed first)")]) from None
    wanted = embedded.get("inputs", {}).get("pretrain")
    embedder = get_embedder(config)
    if not wanted or not embedder.learns and not uses_source_model(embedder):
        raise InputError([(str(run), f"its embeddings come from the {config.embed.model!r} embedder, which has no "
                           "model xssr could apply to other images")])
    weights = config.train.source_weights
    if weights and uses_source_model(embedder):
        from xssr.data import file_sha1

        try:
            same = file_sha1(weights) == wanted
        except OSError as error:
            raise InputError([(str(weights), f"the run's source weights cannot be read ({error.strerror})")]) from None
        if not same:
            raise InputError([(str(weights), "changed since the run embedded its pool with it; its embeddings of other "
                               "images would not be comparable")])
        return Path(weights), embedded["inputs"]["data"]
    for name in _FITTED_STAGES:
        try:
            fitted = read_json(run / name / MANIFEST)
        except (OSError, ValueError):
            continue
        checkpoint = run / name / fitted.get("outputs", {}).get("checkpoint", "")
        if fitted.get("fingerprint") == wanted and checkpoint.is_file():
            return checkpoint, embedded["inputs"]["data"]
    raise InputError([(str(run), "the fitted model its embeddings came from is not in the run folder (made in a "
                       "shared benchmark store, or deleted); run xssr embed with --out here to fit it again")])


def embed_images(run: str | Path, images: str, out: str | Path, *, device: str | None = None) -> Path:
    """Embed the images of the data spec ``images`` with ``run``'s fitted embedder; returns OUT.

    Every problem (not a run, no fitted model, unreadable images) is reported before any
    embedding is computed.
    """
    from xssr.pipeline import resolve_device

    run, out = Path(run), Path(out)
    config = run_config(run)
    if out.resolve().is_relative_to(run.resolve()):
        raise InputError([(str(out), "is inside the run folder; embeddings of other images go to a folder of their "
                           "own, so none of the run's stages is touched")])
    checkpoint, data = fitted_checkpoint(run, config)
    try:
        records = load_records(images, data_root=config.data.data_root)
    except ValueError as error:
        raise InputError([(images, str(error))]) from None
    if not records:
        raise InputError([(images, "no images match this spec")])
    check_inputs({"images": records}, specs={"images": images})
    embedder = get_embedder(config)
    stage = Stage(out, {"run": str(run.resolve()), "checkpoint": str(checkpoint), "images": images, "data": data},
                  name="embed-images")
    started = stage.start()

    def batches():
        return iter_arrays(records, data["image_size"], data["channels"], data["normalize"], batch_size=64)

    embedding = np.asarray(embedder.embed("pool", records, batches, checkpoint=checkpoint,
                                          channels=data["channels"], device=resolve_device(device or config.device)))
    root = data_root(records)
    save_array(out / EMBEDDINGS_FILE, embedding.astype(np.float32, copy=False))
    write_csv(out / INDEX_FILE, [record_row(i, r, root) for i, r in enumerate(records)])
    stage.finish(started, {"files": {"embeddings": EMBEDDINGS_FILE, "index": INDEX_FILE}, ROOT_OUTPUT: str(root),
                           "embedder": embedder.name, "count": int(len(embedding))})
    return out
