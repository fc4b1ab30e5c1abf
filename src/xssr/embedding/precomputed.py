"""Embeddings made by any other model: ``.npy`` files with one row per source or pool image."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.data import ImageRecord, InputError, file_sha1, read_embeddings
from xssr.data.names import csv_root, recorded_root, resolve_name
from xssr.report.io import read_csv
from xssr.embedding.base import Batches


class PrecomputedEmbedder:
    """Reads ``embed.pool_file`` and ``embed.source_file`` (``(n, d)`` .npy).

    Rows are matched to images by an index CSV beside each file (``embed.pool_index`` /
    ``embed.source_index``, with an ``image`` column and an optional ``slice_index``; relative
    names start at the CSV's folder, or at the data root of a run's ``pool_index.csv``), or,
    without one, must be in xssr's record order: the order of ``pool_index.csv`` that any
    ``xssr embed`` writes, which is sorted by image path and slice.
    """

    name = "precomputed"
    learns = False
    checkpoint = ""

    def __init__(self, config):
        self.config = config  # EmbedConfig

    def _files(self, group: str) -> tuple[str | None, str | None]:
        return getattr(self.config, f"{group}_file"), getattr(self.config, f"{group}_index")

    def settings(self) -> dict[str, Any]:
        # The files' bytes, not their names: replacing a file must invalidate what was chosen from it.
        digests = {}
        for group in ("source", "pool"):
            for path in self._files(group):
                if path:
                    digests[path] = file_sha1(path) if Path(path).is_file() else "missing"
        return {"model": self.name, "files": digests}

    def check(self, records: dict[str, Sequence[ImageRecord]]) -> None:
        problems = []
        if "source" in records and not self.config.source_file:
            # The source images are asked for only when a method weighs novelty.
            problems.append(("embed.source_file", "is not set, but a selected method weighs novelty (distance to "
                             "the source) and so needs source embeddings; set it, or set select.alpha=0"))
        for group in ("source", "pool"):
            if group not in records or (group == "source" and not self.config.source_file):
                continue
            try:
                self.embed(group, records[group], lambda: iter(()), checkpoint=None, channels=0, device=None)
            except InputError as error:
                problems += error.problems
        if problems:
            raise InputError(problems)

    def fit(self, images, *, seed, device, progress=None):
        raise TypeError("Precomputed embeddings are not fitted.")

    def save(self, model, path):
        raise TypeError("Precomputed embeddings have no state to save.")

    def embed(self, group: str, records: Sequence[ImageRecord], batches: Batches, *, checkpoint: Path | None,
              channels: int, device) -> np.ndarray:
        if group == "source" and not self.config.source_file:
            return None  # novelty then has no source: XSSR needs alpha 0
        path, index = self._files(group)
        setting = f"embed.{group}_file"
        if not path:
            raise InputError([(setting, f"is not set, but the precomputed embedder needs the {group} embeddings")])
        try:
            array = np.asarray(read_embeddings(path), dtype=np.float32)
        except InputError as error:
            raise InputError([(f"{label} ({setting})", reason) for label, reason in error.problems]) from None
        if index:
            array = self._reorder(array, Path(index), records, f"embed.{group}_index")
        if len(array) != len(records):
            raise InputError([(f"{path} ({setting})", f"has {len(array)} rows, but the {group} has {len(records)} "
                               "images; give an index CSV (embed." + group + "_index) or one row per image")])
        return array

    @staticmethod
    def _reorder(array: np.ndarray, index: Path, records: Sequence[ImageRecord], setting: str) -> np.ndarray:
        label = f"{index} ({setting})"
        try:
            if recorded_root(index) is not None:  # xssr's own (a run's pool_index.csv, embed-images' index.csv)
                rows = read_csv(index)  # undoes the spreadsheet-formula guard of names like "-x/a.png"
            else:
                with open(index, newline="", encoding="utf-8-sig") as handle:
                    rows = list(csv.DictReader(handle))  # a user's file: read as written, no guard to undo
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise InputError([(label, f"cannot be read as CSV ({error})")]) from None
        if not rows or "image" not in rows[0]:
            raise InputError([(label, "needs an 'image' column naming each row's image")])
        bad = [str(line) for line, row in enumerate(rows, start=2)
               if None in row or not (row.get("slice_index") or "0").strip().isdigit()]
        if bad:
            raise InputError([(label, "extra cells or a slice_index that is not a whole number on line(s) "
                               + ", ".join(bad[:10]))])
        if len(rows) != len(array):
            raise InputError([(f"{index} ({setting})", f"has {len(rows)} rows for {len(array)} embeddings")])
        # Relative names start at the data root a run's pool_index.csv records, else at the CSV's folder.
        root = csv_root(index)
        position = {}
        for i, row in enumerate(rows):
            # resolve(): the records are resolved paths; a user's name may pass a symlink or "..".
            image = Path(resolve_name(str(Path(row["image"]).expanduser()), root)).resolve()
            sliced = row.get("slice_index") or None
            position[(str(image), int(sliced) if sliced is not None else None)] = i
        missing = [r.label for r in records if (str(r.image), r.slice_index) not in position]
        if missing:
            raise InputError([(f"{index} ({setting})", f"has no row for {len(missing)} image(s), e.g. {missing[0]}")])
        return array[[position[(str(r.image), r.slice_index)] for r in records]]
