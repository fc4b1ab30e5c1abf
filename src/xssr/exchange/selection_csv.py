"""``selection.csv``: the ranked list of images to annotate, as a person or a spreadsheet reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from xssr.data.names import record_row
from xssr.data.records import ImageRecord
from xssr.report.io import write_csv
from xssr.selection import SelectionResult

SELECTION_COLUMNS = (
    "rank", "index", "case_id", "site", "image", "slice_index", "key", "method", "alpha", "beta",
    "density", "novelty", "diversity", "z_density", "z_novelty", "z_diversity", "score",
    "uncertainty", "weighted_distance",
)


def write_selection(folder: Path, result: SelectionResult, pool: Sequence[ImageRecord] | None = None,
                    root: Path | None = None) -> Path:
    """Write ``selection.csv`` (and ``alpha_curve.csv`` when alpha was calibrated) into ``folder``.

    With ``pool`` each row names its image (relative to ``root``, which the caller records in the
    stage manifest: xssr.data.names); without (embeddings from elsewhere) the row's ``key`` is its
    pool index.
    """
    rows = []
    for row in result.to_rows():
        index = int(row["index"])
        extra = record_row(index, pool[index], root) if pool is not None else {"key": str(index)}
        rows.append({**row, **extra, "method": result.method, "alpha": result.alpha, "beta": result.beta})
    path = write_csv(Path(folder) / "selection.csv", rows, SELECTION_COLUMNS)
    curve = Path(folder) / "alpha_curve.csv"
    if result.alpha_curve:
        write_csv(curve, [{"alpha": a, "coverage": c, "chosen": a == result.alpha} for a, c in result.alpha_curve])
    elif curve.exists():
        curve.unlink()  # left from an earlier run with alpha="auto"; it would contradict this selection
    return path
