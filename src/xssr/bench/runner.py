"""Run a suite: every unfinished run, one at a time, each result cached as its own JSON file.

Results live in ``RESULTS/<suite>/runs/<run name>.json`` and carry the run's key; a file
with the right key is a finished run and is skipped, so an interrupted sweep resumes where
it stopped. The MAE of a (dataset, seed) is trained once into ``WORK/`` (not committed) and
shared by all methods and budgets of that seed, through the pipeline's own stage cache.

The key hashes the configuration only; the data are covered by ``inputs_sha1``, a digest of
every source, pool and test image and mask. A run whose stored digest differs from the
data on disk now is stale and runs again, so edited or replaced files never leave old
numbers in the tables.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xssr.api import EMBEDDING_METHODS, _Run, method_settings
from xssr.bench.suite import RunSpec, Suite
from xssr.data import load_arrays
from xssr.metrics import dice_per_image, summarise_dice
from xssr.metrics.embedding import domain_separability
from xssr.report.io import read_json, remove_interrupted_writes, write_json
from xssr.report.provenance import config_fingerprint, environment, git_commit
from xssr.selection import select as select_core

logger = logging.getLogger(__name__)


def result_path(results: Path, spec: RunSpec) -> Path:
    return Path(results) / spec.suite / "runs" / f"{spec.name}.json"


def is_finished(results: Path, spec: RunSpec, inputs_sha1: str | None = None) -> bool:
    """A result file exists with this run's key and, when ``inputs_sha1`` is given, the same data."""
    path = result_path(results, spec)
    if not path.exists():
        return False
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return False
    if record.get("key") != spec.key:
        return False
    stored = record.get("inputs_sha1")
    if inputs_sha1 is not None and stored is not None and stored != inputs_sha1:
        logger.warning("%s: the input images or masks changed since this run; running it again", spec.name)
        return False
    return True


class _CheckedInputs:
    """One input check and data digest per distinct (source, pool, test) of a suite, shared by its runs."""

    GROUPS = ("source", "pool", "test")

    def __init__(self):
        self._checked: dict[tuple, _Run] = {}
        self._digests: dict[tuple, str] = {}

    @staticmethod
    def _where(spec: RunSpec) -> tuple:
        d = spec.config.data
        return d.source, d.pool, d.test, d.data_root

    def of(self, spec: RunSpec) -> _Run:
        where = self._where(spec)
        if where not in self._checked:
            checked = _Run(spec.config, Path("."))  # folder unused: only the inputs are read
            checked.needs(self.GROUPS, masks=["pool", "test"])
            self._checked[where] = checked
            self._digests[where] = config_fingerprint({g: checked.group_hash(g) for g in self.GROUPS})
        return self._checked[where]

    def has(self, spec: RunSpec) -> bool:
        return self._where(spec) in self._checked

    def digest(self, spec: RunSpec) -> str:
        self.of(spec)
        return self._digests[self._where(spec)]


def run_suite(
    suite: Suite,
    results: str | Path,
    work: str | Path,
    *,
    only: Callable[[RunSpec], bool] | None = None,
    tables: tuple[str, ...] = (),
    max_runs: int | None = None,
    command: str = "",
) -> dict[str, int]:
    """Run the unfinished runs of ``suite`` (of ``tables`` if given, and those ``only`` accepts),
    at most ``max_runs`` of them.

    Returns counts over the runs asked for: total, already finished, run now. Progress over the
    whole suite is written to ``RESULTS/<suite>/progress.json`` after every run.
    """
    results, work = Path(results), Path(work)
    provenance = {"git_commit": git_commit(), "command": command}  # the code as it was when the sweep started
    everything = suite.runs()  # for progress.json, which covers the whole suite
    specs = [s for s in suite.runs(tables) if only is None or only(s)]
    inputs = _CheckedInputs()  # every dataset is checked before any run starts
    todo = [s for s in specs if not is_finished(results, s, inputs.digest(s))]
    counts = {"total": len(specs), "finished_before": len(specs) - len(todo), "ran": 0}
    groups: dict[tuple, list[RunSpec]] = defaultdict(list)
    for spec in todo:
        groups[spec.group].append(spec)
    for group_specs in groups.values():
        if max_runs is not None and counts["ran"] >= max_runs:
            break
        context = _GroupContext(group_specs[0], work, inputs.of(group_specs[0]))
        for spec in group_specs:
            if max_runs is not None and counts["ran"] >= max_runs:
                break
            record = {**context.run(spec), "inputs_sha1": inputs.digest(spec), **provenance}
            # A sweep killed mid-write leaves ".NAME.XXXX.tmp" in the committed results folder;
            # only this run's own name is cleared, as parallel sweeps may be writing theirs.
            path = result_path(results, spec)
            remove_interrupted_writes(path.parent, path.name)
            write_json(result_path(results, spec), record)
            counts["ran"] += 1
            _write_progress(results, suite, everything, spec, inputs)
    return counts


def _write_progress(results: Path, suite: Suite, everything: list[RunSpec], last: RunSpec,
                    inputs: _CheckedInputs) -> None:
    # Data digests are known only for the datasets this sweep checked; others are matched by key.
    done = sum(is_finished(results, s, inputs.digest(s) if inputs.has(s) else None) for s in everything)
    # Parallel sweeps write progress.json too; a temporary file a minute old is no live write's.
    remove_interrupted_writes(Path(results) / suite.name, "progress.json", older_than=60.0)
    write_json(Path(results) / suite.name / "progress.json", {
        "suite": suite.name, "finished": done, "total": len(everything), "last_run": last.name,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


class _GroupContext:
    """Inputs, arrays and MAE embeddings shared by the runs of one (dataset, settings, seed) group."""

    def __init__(self, first: RunSpec, work: Path, checked: _Run):
        self.config = first.config
        folder = work / first.suite / first.dataset / f"{first.group[1]}_s{first.seed}"
        self.pipeline = _Run(self.config, folder)
        self.pipeline.adopt_inputs(checked)
        self.pipeline.out.mkdir(parents=True, exist_ok=True)
        self._embeddings: tuple[np.ndarray, np.ndarray] | None = None
        self.timings: dict[str, float] = {}
        self.embedding_diagnostics: dict[str, float] = {}

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        if self._embeddings is None:
            paths = self.pipeline.embed()
            self._embeddings = (np.load(paths["pool"]), np.load(paths["source"]))
            # How well the MAE sees the shift; novelty is only meaningful when it does.
            self.embedding_diagnostics = {
                "domain_auc": round(domain_separability(self._embeddings[1], self._embeddings[0],
                                                        random_state=self.config.seed), 4)}
            for stage in ("pretrain", "embed"):
                manifest = read_json(self.pipeline.out / stage / "manifest.json")
                self.timings[f"{stage}_seconds"] = manifest["seconds"]
                if stage == "pretrain":
                    self.timings["mae_images_per_second"] = manifest["outputs"].get("images_per_second")
                elif manifest["seconds"]:
                    embedded = sum(manifest["outputs"]["counts"].values())
                    self.timings["embed_images_per_second"] = round(embedded / manifest["seconds"], 2)
        return self._embeddings

    def run(self, spec: RunSpec) -> dict[str, Any]:
        from xssr.train import predict_probabilities, train_unet

        p = self.pipeline
        pool, test = p.records["pool"], p.records["test"]
        cfg = spec.config
        # Random picks need no MAE; they get a coverage figure whenever this seed's embeddings
        # exist (now or from an earlier, interrupted sweep), but never train an MAE for it.
        have_embeddings = (spec.method in EMBEDDING_METHODS or self._embeddings is not None
                           or self.pipeline.embeddings_ready())
        if have_embeddings:
            pool_emb, source_emb = self.embeddings()
        else:
            pool_emb, source_emb = np.zeros((len(pool), 1), np.float32), None
        started = time.perf_counter()  # after the (cached) MAE, so this times the selection alone
        if spec.method == "full":
            indices, extra = np.arange(len(pool)), {}
        else:
            result = select_core(pool_emb, source_emb, random_state=spec.seed, sites=[r.site for r in pool],
                                 **method_settings(spec.method, cfg.select))
            indices = result.indices
            extra = {"alpha": result.alpha, "coverage": result.coverage if have_embeddings else None,
                     "alpha_curve": [list(pair) for pair in result.alpha_curve],
                     "delta": getattr(result, "delta", None)}
        select_seconds = time.perf_counter() - started

        chosen = [pool[i] for i in indices]
        d = cfg.data
        images, masks = load_arrays(chosen, d.image_size, p.channels, d.normalize, with_masks=True)
        model, history = train_unet(images, masks, cfg.train, seed=spec.seed, device=p.device)
        test_images, test_masks = p.arrays("test", with_masks=True)
        start_infer = time.perf_counter()
        prob = predict_probabilities(model, test_images, device=p.device, precision=cfg.train.precision)
        infer_seconds = time.perf_counter() - start_infer
        dice = dice_per_image(prob, test_masks, cfg.train.threshold)
        logger.info("%s: Dice %.4f", spec.name, float(dice.mean()))
        return {
            "key": spec.key,
            "suite": spec.suite, "dataset": spec.dataset, "method": spec.method, "budget": spec.budget,
            "variant": spec.variant, "seed": spec.seed,
            "n_train": int(len(indices)),
            "dice": summarise_dice(dice, [r.site for r in test]),
            "selected": [{"case_id": r.case_id, "site": r.site, "slice_index": r.slice_index} for r in chosen],
            "selected_sites": _count([r.site for r in chosen]),
            "selection": extra,
            "embedding": dict(self.embedding_diagnostics),
            "timings": {
                **self.timings, "select_seconds": round(select_seconds, 3),
                "unet_train_seconds": round(history.seconds, 2), "unet_steps": history.steps,
                "unet_images_per_second": round(history.samples_per_second, 2),
                "inference_images_per_second": round(len(test) / infer_seconds, 2) if infer_seconds else None,
            },
            "config": cfg.to_dict(),
            "environment": {k: v for k, v in environment().items() if k != "git_commit"},
            "device": str(p.device),
        }


def _count(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(sorted(counts.items()))
