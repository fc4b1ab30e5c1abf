"""Run a suite: every unfinished run, one at a time, each result cached as its own JSON file.

Results live in ``RESULTS/<suite>/runs/<run name>.json`` and carry the run's key; a file
with the right key is a finished run and is skipped, so an interrupted sweep resumes where
it stopped. Every run goes through :class:`xssr.pipeline.Pipeline` in its own folder under
``WORK/`` (not committed); the MAE and embeddings of a (dataset, settings, seed) live in
``WORK/store/`` by fingerprint, where every run, budget and suite with the same data and
settings finds them.

A sweep can be split across machines (:class:`Shard`, ``xssr bench run SUITE --shard I/N``): the
runs are partitioned by group, so each machine makes the MAE and embeddings of its own groups,
and the results folder is the only state the machines share.

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
from typing import Any, Callable, NamedTuple

import numpy as np

from xssr.bench.suite import RunSpec, Suite
from xssr.metrics.embedding import domain_separability
from xssr.pipeline import Inputs, Pipeline, StageResult
from xssr.report.io import read_json, remove_interrupted_writes, write_json
from xssr.report.provenance import config_fingerprint, environment, git_commit
from xssr.selection.registry import get_method

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


class Shard(NamedTuple):
    """Part ``index`` (from 1) of a suite's runs split into ``count`` parts, e.g. ``Shard(2, 4)``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"I/N"`` with whole numbers ``1 <= I <= N``; ValueError otherwise."""
        index, slash, count = str(text).strip().partition("/")
        try:
            shard = cls(int(index), int(count)) if slash else None
        except ValueError:
            shard = None
        if shard is None or not 1 <= shard.index <= shard.count:
            raise ValueError(f"expected I/N with whole numbers 1 <= I <= N (e.g. 2/4 for the second of four "
                             f"parts), got {text!r}")
        return shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


def partition(specs: list[RunSpec], count: int) -> list[list[RunSpec]]:
    """Split ``specs`` into ``count`` lists of runs that share no group, balanced by number of runs.

    A group's runs (one dataset, data and MAE settings, seed) share the decoded inputs, the MAE
    and the embeddings, so they always stay in one part: no two machines make the same MAE.
    Greedy: groups from largest to smallest, each to the part with the fewest runs so far (ties:
    the lower part; equal groups in order of first appearance). The result depends only on
    ``specs`` and their order, never on which runs are finished nor on the values of the group
    fingerprints, so every machine and every re-run of a sweep computes the same split. Within a part, runs keep their order; a
    part can be empty when there are fewer groups than parts.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"The 'count' parameter must be a whole number >= 1. Got {count!r} instead.")
    groups: dict[tuple, list[int]] = defaultdict(list)  # in order of first appearance
    for position, spec in enumerate(specs):
        groups[spec.group].append(position)
    loads, owner = [0] * count, {}
    for members in sorted(groups.values(), key=len, reverse=True):  # stable: equal sizes keep suite order
        part = loads.index(min(loads))
        loads[part] += len(members)
        owner.update(dict.fromkeys(members, part))
    parts: list[list[RunSpec]] = [[] for _ in range(count)]
    for position, spec in enumerate(specs):
        parts[owner[position]].append(spec)
    return parts


class _CheckedInputs:
    """One input check and data digest per distinct (source, pool, test) of a suite, shared by its runs."""

    GROUPS = ("source", "pool", "test")

    def __init__(self):
        self._checked: dict[tuple, Inputs] = {}
        self._digests: dict[tuple, str] = {}

    @staticmethod
    def _where(spec: RunSpec) -> tuple:
        d = spec.config.data
        return d.source, d.pool, d.test, d.data_root

    def of(self, spec: RunSpec) -> Inputs:
        where = self._where(spec)
        if where not in self._checked:
            checked = Inputs(spec.config)
            checked.check(self.GROUPS, masks=["pool", "test"])
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
    shard: Shard | None = None,
) -> dict[str, int]:
    """Run the unfinished runs of ``suite`` (of ``tables`` if given, and those ``only`` accepts),
    at most ``max_runs`` of them; with ``shard``, only that part of them (:func:`partition`).

    Returns counts over the runs asked for: total, already finished, run now. Progress over the
    whole suite is written to ``RESULTS/<suite>/progress.json`` after every run; a shard writes
    ``progress-shard-I-of-N.json`` instead, so that parallel shards never overwrite each other's.
    """
    results, work = Path(results), Path(work)
    provenance = {"git_commit": git_commit(), "command": command}  # the code as it was when the sweep started
    everything = suite.runs()  # for progress.json, which covers the whole suite
    specs = [s for s in suite.runs(tables) if only is None or only(s)]
    if shard is not None:
        if not isinstance(shard, Shard) or not 1 <= shard.index <= shard.count:
            raise ValueError(f"The 'shard' parameter must be a Shard(index, count) with 1 <= index <= count. "
                             f"Got {shard!r} instead.")
        specs = partition(specs, shard.count)[shard.index - 1]  # before finished runs are dropped: stable
    inputs = _CheckedInputs()  # every dataset is checked before any run starts
    todo = [s for s in specs if not is_finished(results, s, inputs.digest(s))]
    counts = {"total": len(specs), "finished_before": len(specs) - len(todo), "ran": 0}
    groups: dict[tuple, list[RunSpec]] = defaultdict(list)
    for spec in todo:
        groups[spec.group].append(spec)
    for group_specs in groups.values():
        if max_runs is not None and counts["ran"] >= max_runs:
            break
        context = _GroupContext(group_specs[0], work, inputs.of(group_specs[0]).for_config(group_specs[0].config))
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
            if shard is None:
                _write_progress(results, suite, everything, spec, inputs)
            else:
                _write_shard_progress(results, suite, everything, specs, spec, inputs, shard)
    return counts


def _count_finished(results: Path, specs: list[RunSpec], inputs: _CheckedInputs) -> int:
    # Data digests are known only for the datasets this sweep checked; others are matched by key.
    return sum(is_finished(results, s, inputs.digest(s) if inputs.has(s) else None) for s in specs)


def _write_progress(results: Path, suite: Suite, everything: list[RunSpec], last: RunSpec,
                    inputs: _CheckedInputs) -> None:
    done = _count_finished(results, everything, inputs)
    # Parallel sweeps write progress.json too; a temporary file a minute old is no live write's.
    remove_interrupted_writes(Path(results) / suite.name, "progress.json", older_than=60.0)
    write_json(Path(results) / suite.name / "progress.json", {
        "suite": suite.name, "finished": done, "total": len(everything), "last_run": last.name,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


def _write_shard_progress(results: Path, suite: Suite, everything: list[RunSpec], mine: list[RunSpec],
                          last: RunSpec, inputs: _CheckedInputs, shard: Shard) -> None:
    """One file per shard: ``finished``/``total`` over this shard's runs, ``suite_*`` over the whole
    suite as the result files stand now (the other shards' runs included)."""
    name = f"progress-{shard.label}.json"
    remove_interrupted_writes(Path(results) / suite.name, name, older_than=60.0)
    write_json(Path(results) / suite.name / name, {
        "suite": suite.name, "shard": str(shard), "finished": _count_finished(results, mine, inputs),
        "total": len(mine), "suite_finished": _count_finished(results, everything, inputs),
        "suite_total": len(everything), "last_run": last.name, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


class _GroupContext:
    """The runs of one (dataset, data and MAE settings, seed) group: they share decoded inputs, and
    the MAE and embeddings through the store, which every suite shares (``WORK/store``)."""

    def __init__(self, first: RunSpec, work: Path, inputs: Inputs):
        self.folder = work / first.suite / first.dataset / f"{first.group[1]}_s{first.seed}"
        self.store = work / "store"
        self.inputs = inputs
        self._domain_auc: dict[str, float] = {}

    def _embedding_record(self, pipeline: Pipeline, embeddings: StageResult) -> tuple[dict, dict]:
        """Timings of the MAE and embed stages, and how well the MAE sees the shift."""
        if embeddings.fingerprint not in self._domain_auc and "source" in embeddings.outputs["files"]:
            pool, source = np.load(embeddings.folder / "pool.npy"), np.load(embeddings.folder / "source.npy")
            # Novelty is only meaningful when the embedding separates the domains.
            self._domain_auc[embeddings.fingerprint] = round(
                domain_separability(source, pool, random_state=pipeline.config.seed), 4)
        timings = {"embed_seconds": embeddings.seconds}
        pretrained = pipeline.results.get("pretrain")  # absent for embeddings made elsewhere
        if pretrained is not None:
            timings = {"pretrain_seconds": pretrained.seconds,
                       "mae_images_per_second": pretrained.outputs.get("images_per_second"), **timings}
        if embeddings.seconds:
            timings["embed_images_per_second"] = round(sum(embeddings.outputs["counts"].values())
                                                       / embeddings.seconds, 2)
        auc = self._domain_auc.get(embeddings.fingerprint)
        return timings, ({"domain_auc": auc} if auc is not None else {})

    def run(self, spec: RunSpec) -> dict[str, Any]:
        pipeline = Pipeline(spec.config, self.folder / spec.name, self.inputs, store=self.store)
        method = get_method(spec.method)
        # Random picks need no MAE; they get a coverage figure whenever this seed's embeddings
        # exist (now or from an earlier, interrupted sweep), but never train an MAE for it.
        embeddings = pipeline.embeddings() if method.uses_embeddings else pipeline.embeddings_ready()
        timings, diagnostics = self._embedding_record(pipeline, embeddings) if embeddings else ({}, {})
        selection = pipeline.select(spec.method, embeddings)
        trained = pipeline.train(spec.method, selection)
        metrics = pipeline.evaluate(spec.method, trained)
        evaluated = pipeline.results[f"evaluate/{spec.method}"]
        chosen = pipeline.selected(selection)
        logger.info("%s: Dice %.4f", spec.name, metrics["dice"]["overall"]["mean"])
        s = selection.outputs
        return {
            "key": spec.key,
            "suite": spec.suite, "dataset": spec.dataset, "method": spec.method, "budget": spec.budget,
            "variant": spec.variant, "seed": spec.seed,
            "n_train": len(chosen),
            "dice": metrics["dice"],
            "selected": [{"case_id": r.case_id, "site": r.site, "slice_index": r.slice_index} for r in chosen],
            "selected_sites": _count([r.site for r in chosen]),
            "selection": {} if method.algorithm is None else {
                "alpha": s["alpha"], "coverage": s["coverage"] if embeddings else None,
                "alpha_curve": s["alpha_curve"], "delta": s["delta"]},
            "embedding": diagnostics,
            "recipe": spec.config.train.recipe,
            "timings": {
                **timings, **self._source_model_timings(pipeline), "select_seconds": round(selection.seconds, 3),
                "unet_train_seconds": trained.outputs["train_seconds"], "unet_steps": trained.outputs["steps"],
                "unet_precision": trained.outputs.get("precision"),
                **({"target_branch_seconds": trained.outputs["target_model_seconds"]}
                   if "target_model_seconds" in trained.outputs else {}),
                "unet_images_per_second": trained.outputs["images_per_second"],
                "inference_images_per_second": evaluated.outputs.get("inference_images_per_second"),
            },
            "config": spec.config.to_dict(),
            "environment": {k: v for k, v in environment().items() if k != "git_commit"},
            "device": str(pipeline.device),
        }


    @staticmethod
    def _source_model_timings(pipeline: Pipeline) -> dict[str, Any]:
        source = pipeline.results.get("source-train")
        if source is None or source.outputs.get("from") == "source_weights":
            return {}
        return {"source_train_seconds": source.outputs["train_seconds"],
                "source_images_per_second": source.outputs["images_per_second"]}


def _count(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(sorted(counts.items()))
