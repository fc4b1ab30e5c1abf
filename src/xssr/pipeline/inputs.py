"""A configuration's input images: resolved from their specs, checked once, hashed, decoded on demand."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from xssr.config import RunConfig
from xssr.data import (ImageRecord, InputError, InputSummary, annotated_records, check_inputs, default_data_root,
                        load_arrays, load_records)
from xssr.report.provenance import config_fingerprint
from xssr.selection import resolve_budget

logger = logging.getLogger(__name__)

GROUPS = ("source", "pool", "test")

_MISSING_GROUP_HINTS = {
    "test": " (annotated target images to measure Dice on): give --test, or, to choose the images to annotate "
            "without measuring, use `xssr select` (checked alone by `xssr validate --stage select`)",
}


class Inputs:
    """The source, pool and test records of one configuration's data specs, and their check.

    One object serves every stage and every run that reads the same specs (the benchmark
    shares it across methods, budgets and seeds), so each file is opened and hashed once.
    """

    def __init__(self, config: RunConfig, *, progress: bool = False):
        self.config = config
        self.progress = progress
        self.data_root = Path(config.data.data_root) if config.data.data_root else default_data_root()
        self.records: dict[str, list[ImageRecord]] = {}
        self.summary: InputSummary | None = None
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self._channels: int | None = None

    def for_config(self, config: RunConfig) -> "Inputs":
        """The same checked records under another configuration of the same data specs (its own
        image size, channels and decoded arrays)."""
        shared = Inputs(config, progress=self.progress)
        shared.records = {g: list(records) for g, records in self.records.items()}
        shared.summary = self.summary
        return shared

    # ---- checking
    def check(self, groups: Sequence[str], masks: Sequence[str] = (),
              given: Mapping[str, Sequence[ImageRecord]] | None = None) -> None:
        """Resolve and check the given groups (all at once); raises InputError listing every problem.

        ``given`` adds groups whose records the caller resolved already (the annotated images of a
        round, say), checked with the others and named in ``groups``/``masks`` like them.
        """
        given = dict(given or {})
        specs = {g: getattr(self.config.data, g) if g in GROUPS else "" for g in groups}
        problems = [f"data.{g} is not set, but this step needs the {g} images" + _MISSING_GROUP_HINTS.get(g, "")
                    for g in groups if not specs[g] and g not in given]
        if problems:
            raise ValueError("Missing inputs:\n  " + "\n  ".join(problems))
        spec_problems = []
        for group in groups:
            if group in given:
                self.records[group] = list(given[group])
                continue
            try:  # "SPEC + SPEC" joins several specs, e.g. one pool drawn from two datasets' manifests
                self.records[group] = load_records(specs[group], data_root=self.data_root)
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

    def check_budget(self) -> None:
        """A budget the pool cannot meet is an input error, found before any stage runs."""
        from xssr.selection.registry import get_method

        if all(get_method(m).algorithm is None for m in self.config.select.methods):
            return
        budget, n_pool = self.config.select.budget, len(self.records["pool"])
        try:
            count = resolve_budget(budget, n_pool)
        except ValueError:
            raise InputError([("select.budget", f"asks for {budget:g} images, but the pool "
                               f"({self.config.data.pool}) has only {n_pool}")]) from None
        n_labeled = len(self.labeled_indices())  # an earlier round's images: readable, all in the pool
        if count > n_pool - n_labeled:
            raise InputError([("select.budget", f"asks for {count} images, but only {n_pool - n_labeled} of the "
                               f"pool's {n_pool} are not labeled yet (select.labeled)")])

    # ---- fingerprints
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

    def labeled_indices(self) -> list[int]:
        """Pool indices of ``select.labeled`` (an earlier round's annotated images), in pool order.

        Of a manifest whose rows have masks (a round folder's), the rows with an existing mask
        count; of one without any mask, every row. Every labeled image must be in the pool.
        """
        spec = self.config.select.labeled
        if not spec:
            return []
        try:
            records = annotated_records(spec, self.data_root)
        except ValueError as error:
            raise ValueError(f"select.labeled: {error}") from None
        index = {r.key: i for i, r in enumerate(self.records["pool"])}
        outside = [r.label for r in records if r.key not in index]
        if outside:
            raise InputError([(label, "is listed as labeled (select.labeled) but is not in the pool") for label in outside])
        return sorted(index[r.key] for r in records)

    def data_key(self) -> dict[str, Any]:
        """The data settings every stage that decodes images depends on."""
        d = self.config.data
        return {"image_size": d.image_size, "channels": self.channels, "normalize": d.normalize}

    # ---- pixels
    @property
    def channels(self) -> int:
        if self._channels is None:
            # Every image was opened by the input check, so its colour kinds are known exactly.
            self._channels = self.config.data.channels or (3 if "rgb" in self.summary.channel_kinds else 1)
        return self._channels

    def arrays(self, group: str, with_masks: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C, S, S) images (and (N, 1, S, S) masks) of a whole group, decoded once and kept."""
        cached = self._arrays.get(group)
        if cached is None or (with_masks and cached[1] is None):
            d = self.config.data
            cached = load_arrays(self.records[group], d.image_size, self.channels, d.normalize, with_masks=with_masks)
            self._arrays[group] = cached
        return cached

    def decoded(self, group: str) -> np.ndarray | None:
        """The group's images if they are already in memory, else None (the caller may stream)."""
        cached = self._arrays.get(group)
        return None if cached is None else cached[0]
