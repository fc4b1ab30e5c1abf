"""Turn a data spec string into a sorted list of :class:`ImageRecord`.

A spec is ``PATH`` or ``PATH#key=value&key=value``, for example::

    @cxr_lung_qu#site=covidqu_covid19&split=train&n=453&seed=0

PATH is a manifest CSV, or a folder (with ``manifest.csv``, or ``images/`` and
``masks/``, or just image files). A leading ``@`` makes PATH relative to the data root
(:func:`default_data_root`). Keys: ``site`` and ``split`` (comma lists; keep records
whose value is listed), ``n`` (seeded random sample of that many records), ``seed``
(default 0), ``rest`` (instead of the ``n`` sample, a seeded sample of ``rest`` records
from those the ``n`` sample left out, or ``all`` of them: a validation split that can
never overlap the pool), ``slices`` (``all`` or ``foreground``) and ``paths`` (``inside``,
the default: a manifest's image and mask paths must stay inside its folder; ``any``).

Nothing here opens image pixels except ``slices=foreground`` (which reads masks of
volumes); broken or missing files are kept as records so that
:func:`xssr.data.validate.check_inputs` can report them all at once.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xssr.report.io import unguard_cell

from .readers import (
    ImageReadError,
    VOLUME_SUFFIXES,
    count_slices,
    file_stem,
    file_suffix,
    is_supported,
    read_volume,
)
from .records import ImageRecord, record_order

logger = logging.getLogger(__name__)

DATA_ROOT_ENV = "XSSR_DATA_ROOT"
SPEC_KEYS = ("site", "split", "n", "seed", "rest", "slices", "paths")
SLICE_MODES = ("all", "foreground")
#: Where a manifest's image and mask paths may point: inside the manifest's folder, or anywhere.
PATH_MODES = ("inside", "any")
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("image", "mask", "site", "case_id", "split")  # and optionally slice_index


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec.

    Attributes
    ----------
    path : str
        As written, possibly starting with ``@`` (relative to the data root).
    sites, splits : tuple of str
        Sorted, de-duplicated filters; empty means "no filter".
    n : int or None
        Sample size after filtering; ``None`` keeps all records.
    seed : int
        Seed of the sample (non-negative).
    slices : str
        ``"all"`` or ``"foreground"`` (volume slices whose mask has foreground).
    """

    path: str
    sites: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    n: int | None = None
    seed: int = 0
    rest: int | str | None = None
    slices: str = "all"
    paths: str = "inside"

    def __str__(self) -> str:
        parts = []
        if self.sites:
            parts.append("site=" + ",".join(self.sites))
        if self.splits:
            parts.append("split=" + ",".join(self.splits))
        if self.n is not None:
            parts.append(f"n={self.n}")
        if self.seed != 0:
            parts.append(f"seed={self.seed}")
        if self.rest is not None:
            parts.append(f"rest={self.rest}")
        if self.slices != "all":
            parts.append(f"slices={self.slices}")
        if self.paths != "inside":
            parts.append(f"paths={self.paths}")
        return self.path + ("#" + "&".join(parts) if parts else "")


def _parse_list(key: str, value: str, text: str) -> tuple[str, ...]:
    items = sorted({item.strip() for item in value.split(",") if item.strip()})
    if not items:
        raise ValueError(
            f"The '{key}' key of data spec '{text}' must list at least one value, got '{value}'."
        )
    return tuple(items)


def _parse_int(key: str, value: str, text: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        kind = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise ValueError(f"The '{key}' key of data spec '{text}' must be {kind}, got '{value}'.")
    return number


def parse_spec(text: str | os.PathLike | DataSpec) -> DataSpec:
    """Parse ``PATH`` or ``PATH#key=value&...`` into a :class:`DataSpec`.

    The last ``#`` separates the path from the options. Raises ValueError for an
    unknown or repeated key, a malformed item, or an invalid value.
    """
    if isinstance(text, DataSpec):
        return text
    text = os.fspath(text)
    if "#" not in text:
        path, query = text, ""
    else:
        path, _, query = text.rpartition("#")
    if not path.strip():
        raise ValueError(f"Data spec '{text}' has no path before the options.")
    fields: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"Data spec '{text}': expected key=value, got '{item}'.")
        if key not in SPEC_KEYS:
            raise ValueError(
                f"Data spec '{text}': unknown key '{key}'; valid keys are {', '.join(SPEC_KEYS)}."
            )
        if key in fields:
            raise ValueError(f"Data spec '{text}': key '{key}' is given twice.")
        fields[key] = value.strip()
    spec = DataSpec(path=path)
    if "site" in fields:
        spec = replace(spec, sites=_parse_list("site", fields["site"], text))
    if "split" in fields:
        spec = replace(spec, splits=_parse_list("split", fields["split"], text))
    if "n" in fields:
        spec = replace(spec, n=_parse_int("n", fields["n"], text, minimum=1))
    if "seed" in fields:
        spec = replace(spec, seed=_parse_int("seed", fields["seed"], text, minimum=0))
    if "rest" in fields:
        if "n" not in fields:
            raise ValueError(f"Data spec '{text}': 'rest' needs 'n' (it samples what the n-sample left out).")
        rest = fields["rest"]
        spec = replace(spec, rest="all" if rest == "all" else _parse_int("rest", rest, text, minimum=1))
    for key, modes in (("slices", SLICE_MODES), ("paths", PATH_MODES)):
        if key in fields:
            if fields[key] not in modes:
                raise ValueError(
                    f"The '{key}' key of data spec '{text}' must be one of {', '.join(modes)}, got '{fields[key]}'."
                )
            spec = replace(spec, **{key: fields[key]})
    return spec


# --------------------------------------------------------------------------- paths


def _repo_root(start: Path) -> Path | None:
    for parent in start.parents:
        if (parent / "pyproject.toml").is_file() or (parent / ".git").exists():
            return parent
    return None


def default_data_root() -> Path | None:
    """Folder that holds the shared datasets, or ``None`` when none is found.

    In order: the ``XSSR_DATA_ROOT`` environment variable (returned even if the
    folder is missing, so the error names it); ``../shared/data`` from the current
    directory; ``shared/data`` beside the repository that holds this file.
    """
    env = os.environ.get(DATA_ROOT_ENV, "").strip()
    if env:
        root = Path(env).expanduser().resolve()
        if not root.is_dir():
            logger.warning("%s=%s is not a folder", DATA_ROOT_ENV, env)
        return root
    candidate = Path.cwd() / ".." / "shared" / "data"
    if candidate.is_dir():
        return candidate.resolve()
    repo = _repo_root(Path(__file__).resolve())
    if repo is not None:
        candidate = repo.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate.resolve()
    return None


def resolve_path(text: str, data_root: str | os.PathLike | None) -> Path:
    """Absolute path of a spec path; ``@name`` means ``<data_root>/name``."""
    if text.startswith("@"):
        if data_root is None:
            raise ValueError(
                f"Data path '{text}' is relative to the data root, but no data root was found: "
                f"set the {DATA_ROOT_ENV} environment variable to the folder holding the "
                "datasets (e.g. .../shared/data)."
            )
        return (Path(data_root) / text[1:].lstrip("/\\")).resolve()
    return Path(text).expanduser().resolve()


# --------------------------------------------------------------------------- listing


def _read_manifest(csv_path: Path, paths: str = "inside") -> list[ImageRecord]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"Cannot read manifest {csv_path}: {err}") from err
    # DictReader puts the cells beyond the header's columns in a list under the key None.
    ragged = [str(line) for line, row in enumerate(rows, start=2) if None in row]
    if ragged:
        raise ValueError(f"Manifest {csv_path}: more cells than the header has columns on line(s) "
                         f"{', '.join(ragged[:10])}" + (" ..." if len(ragged) > 10 else ""))
    # xssr writes manifests (a round's) with the spreadsheet formula guard: undone before use
    rows = [{(k or "").strip(): unguard_cell(v or "").strip() for k, v in row.items()} for row in rows]
    if "image" not in columns:
        raise ValueError(
            f"Manifest {csv_path} must have an 'image' column; found columns: "
            f"{', '.join(columns) if columns else '(none)'}."
        )
    split_column = "split" if "split" in columns else "split_hint"
    empty = [str(i + 2) for i, row in enumerate(rows) if not row.get("image")]
    if empty:
        raise ValueError(
            f"Manifest {csv_path}: empty 'image' cell on line(s) {', '.join(empty[:10])}"
            + (" ..." if len(empty) > 10 else "")
        )
    folder = csv_path.parent
    outside = []

    def absolute(cell: str, line: int) -> Path:
        path = Path(cell).expanduser()
        path = path if path.is_absolute() else folder / path
        # Lexical check, before symlinks are followed: a manifest someone else wrote must not
        # make xssr open and hash files like ../../etc/passwd unless the user says so.
        if paths == "inside" and not Path(os.path.normpath(path)).is_relative_to(folder):
            outside.append(f"line {line}: {cell}")
        return path.resolve()

    # An optional slice_index column lists single slices of a volume (a round folder's manifest
    # does: one row per slice, the annotated ones with a mask volume); a volume row without one
    # stands for all its slices.
    bad_slices = [str(line) for line, row in enumerate(rows, start=2)
                  if row.get("slice_index") and not row["slice_index"].isdigit()]
    if bad_slices:
        raise ValueError(f"Manifest {csv_path}: slice_index must be a whole number >= 0 (or empty) on line(s) "
                         f"{', '.join(bad_slices[:10])}")
    records, lines_of = [], {}
    for line, row in enumerate(rows, start=2):
        image = absolute(row["image"], line)
        slice_index = int(row["slice_index"]) if row.get("slice_index") else None
        lines_of.setdefault((image, slice_index), []).append(line)
        stem = file_stem(image) if slice_index is None else f"{file_stem(image)}_s{slice_index}"
        records.append(
            ImageRecord(
                image=image,
                mask=absolute(row["mask"], line) if row.get("mask") else None,
                site=row.get("site", ""),
                case_id=row.get("case_id", "") or stem,
                split=row.get(split_column, ""),
                slice_index=slice_index,
            )
        )
    if outside:
        raise ValueError(
            f"Manifest {csv_path}: {len(outside)} path(s) point outside its folder {folder} ("
            + "; ".join(outside[:5]) + (" ..." if len(outside) > 5 else "")
            + "); move the files under that folder, or add '#paths=any' to the data spec to allow it."
        )
    repeated = [f"{image}{'' if index is None else f' [slice {index}]'} on lines {', '.join(map(str, lines))}"
                for (image, index), lines in lines_of.items() if len(lines) > 1]
    if repeated:
        raise ValueError(f"Manifest {csv_path}: image(s) listed more than once: " + "; ".join(repeated[:5])
                         + (" ..." if len(repeated) > 5 else ""))
    return records


def _supported_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_supported(p)
    )


def _folder_records(folder: Path) -> list[ImageRecord]:
    images_dir = folder / "images"
    site = folder.name
    if not images_dir.is_dir():
        return [ImageRecord(image=p.resolve(), site=site, case_id=file_stem(p))
                for p in _supported_files(folder)]
    masks_dir = folder / "masks"
    masks = _supported_files(masks_dir) if masks_dir.is_dir() else []
    by_name = {p.name: p for p in masks}
    by_stem: dict[str, Path] = {}
    for p in masks:
        by_stem.setdefault(file_stem(p), p)
    records = []
    for image in _supported_files(images_dir):
        mask = by_name.get(image.name) or by_stem.get(file_stem(image))
        records.append(ImageRecord(
            image=image.resolve(), mask=mask.resolve() if mask else None,
            site=site, case_id=file_stem(image),
        ))
    return records


def _base_records(path: Path, paths: str = "inside") -> list[ImageRecord]:
    if path.is_dir():
        manifest = path / MANIFEST_NAME
        if manifest.is_file():
            return _read_manifest(manifest, paths)
        return _folder_records(path)
    if file_suffix(path) == ".csv":
        return _read_manifest(path, paths)
    raise ValueError(
        f"Data path {path} must be a folder or a .csv manifest, got a '{file_suffix(path)}' file."
    )


def _expand_volumes(records: list[ImageRecord]) -> list[ImageRecord]:
    """One record per slice for multi-slice files; unreadable files stay single records."""
    out = []
    for record in records:
        if file_suffix(record.image) not in VOLUME_SUFFIXES or record.slice_index is not None:
            out.append(record)
            continue
        try:
            n_slices = count_slices(record.image)
        except ImageReadError as err:
            logger.debug("cannot count slices (left for validation): %s", err)
            n_slices = 1
        if n_slices == 1:
            out.append(record)
            continue
        case_id = record.case_id or file_stem(record.image)
        out.extend(
            replace(record, slice_index=i, case_id=f"{case_id}_s{i}") for i in range(n_slices)
        )
    return out


def _foreground_slices(records: list[ImageRecord]) -> list[ImageRecord]:
    """Keep 2-D records and the volume slices whose mask has any value > 0."""
    missing = [r.label for r in records if r.slice_index is not None and r.mask is None]
    if missing:
        raise ValueError(
            "slices=foreground needs masks for volume slices, but these have none: "
            + "; ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        )
    keep, flags, flags_for = [], None, None
    for record in records:
        if record.slice_index is None:
            keep.append(record)
            continue
        if flags_for != record.mask:
            flags_for = record.mask
            try:
                stack = read_volume(record.mask)
                flags = (stack > 0).reshape(stack.shape[0], -1).any(axis=1)
            except ImageReadError as err:
                # Keep every slice so that validation reports the bad mask.
                logger.debug("cannot read mask for slices=foreground: %s", err)
                flags = None
        if flags is None or record.slice_index >= len(flags) or flags[record.slice_index]:
            keep.append(record)
    return keep


def annotated_records(spec: str, data_root: str | os.PathLike | None = None) -> list[ImageRecord]:
    """The annotated images a spec names: of a manifest in which some rows have masks (a round
    folder's, which lists the whole pool and fills the mask in for the annotated images) the rows
    whose mask file exists; of a spec without any mask, every row (the images someone annotated)."""
    records = load_records(spec, data_root)
    if any(r.mask is not None for r in records):
        records = [r for r in records if r.mask is not None and Path(r.mask).is_file()]
    return records


def load_records(
    spec: DataSpec | str, data_root: str | os.PathLike | None = None
) -> list[ImageRecord]:
    """List the records a data spec selects, sorted by file and slice.

    Parameters
    ----------
    spec : DataSpec or str
        See :func:`parse_spec`; ``"SPEC + SPEC"`` joins several specs (one pool drawn from two
        datasets' manifests), their records in the order the specs are given.
    data_root : path-like, optional
        Root for ``@`` paths; defaults to :func:`default_data_root`.

    Returns
    -------
    list of ImageRecord
        Deterministic order: by image path, then slice index (per spec of a join).

    Raises
    ------
    ValueError
        Missing path, malformed manifest, or ``n`` larger than the records available.
    """
    if isinstance(spec, str) and " + " in spec:
        return [r for part in spec.split(" + ") for r in load_records(part.strip(), data_root)]
    spec = parse_spec(spec)
    if spec.path.startswith("@") and data_root is None:
        data_root = default_data_root()
    path = resolve_path(spec.path, data_root)
    if not path.exists():
        raise ValueError(f"Data path {path} (from spec '{spec}') does not exist.")
    records = _base_records(path, spec.paths)
    if spec.sites:
        records = [r for r in records if r.site in spec.sites]
    if spec.splits:
        records = [r for r in records if r.split in spec.splits]
    records = sorted(_expand_volumes(records), key=record_order)
    if spec.slices == "foreground":
        records = _foreground_slices(records)
    if spec.n is not None:
        if spec.n > len(records):
            raise ValueError(
                f"Data spec '{spec}' asks for n={spec.n} records, but only {len(records)} "
                f"match in {path}."
            )
        # Sampling from the sorted list with its own generator makes the sample
        # depend on the seed and the candidate set only.
        chosen = np.random.default_rng(spec.seed).choice(len(records), size=spec.n, replace=False)
        if spec.rest is not None:
            left = sorted(set(range(len(records))) - set(chosen.tolist()))
            if spec.rest != "all":
                if spec.rest > len(left):
                    raise ValueError(
                        f"Data spec '{spec}' asks for rest={spec.rest} records, but the n-sample "
                        f"leaves only {len(left)} in {path}."
                    )
                # A second generator from the same seed keeps the held-out sample stable too.
                pick = np.random.default_rng([spec.seed, 1]).choice(len(left), size=spec.rest, replace=False)
                left = [left[i] for i in pick]
            chosen = np.asarray(left, dtype=np.int64)
        records = [records[i] for i in sorted(chosen)]
    logger.debug("spec %s -> %d records", spec, len(records))
    return records
