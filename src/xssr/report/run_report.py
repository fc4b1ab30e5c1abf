"""``xssr report RUN_DIR``: gather what a run folder holds and write it as one HTML page.

Reads only what the stages wrote (config.json, metrics.json or seeds.json, embed/, select/,
evaluate/) and the pool images the selections name, for their thumbnails; it never runs a
stage. :mod:`xssr.report.html` turns the gathered plain data into the page.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from xssr.report.examples import EXAMPLES_FILE, read_examples
from xssr.report.html import render_report
from xssr.data.names import csv_root, resolve_rows
from xssr.report.io import read_csv, write_text
from xssr.report.run_text import metrics_rows, seeds_rows

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
#: t-SNE runs only up to this many points (source + pool): 1,800 points took 9 s on one core
#: of two busy ones (28 points: 0.2 s), and it grows faster than linearly; beyond it the page
#: shows PCA alone and says why.
TSNE_MAX_POINTS = 2000
#: t-SNE iterations: half of scikit-learn's default, which halves its time; 250 of them are the
#: early exaggeration, and the maps of a few thousand points no longer change much after 500.
TSNE_ITERATIONS = 500
#: At most this many source and this many pool points are drawn per map (a seeded sample; every
#: pick is always drawn), which keeps the page small for large pools.
MAP_POINTS = 3000
#: Thumbnails shown per method, in rank order (selection.csv lists every pick).
MAX_THUMBNAILS = 60
#: Pick components shown under a thumbnail, with their z-score where selection.csv has one.
COMPONENTS = ("density", "novelty", "diversity", "score", "uncertainty", "weighted_distance")


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 tsne_max_points: int = TSNE_MAX_POINTS) -> Path:
    """Write the report of the run folder ``run_dir`` (a run, or a ``--seeds`` run) to ``out``
    (default ``RUN_DIR/report.html``), atomically; returns its path.

    Raises ValueError naming the folder when it is not an xssr run folder, or naming a file of it
    that cannot be read.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    if out.is_dir():
        raise ValueError(f"{out} (--out): is a folder; give the path of the HTML file to write.")
    page = render_report(**gather(run_dir, tsne_max_points=tsne_max_points))
    return write_text(out, page)


# ------------------------------------------------------------------ reading the folder
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason}).") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno}).") from None


def _read_rows(path: Path, needed: tuple[str, ...]) -> list[dict]:
    """Rows of a run CSV, its image names made absolute (xssr.data.names)."""
    try:
        rows = resolve_rows(read_csv(path), csv_root(path))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason}).") from None
    missing = [c for c in needed if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: expected the column(s) {', '.join(missing)}; got {', '.join(rows[0])}.")
    return rows


_RUN_MARKERS = ("config.json", "metrics.json", "select", "evaluate", "embed")


def _folders(run_dir: Path) -> tuple[Path, dict | None]:
    """(the folder whose stages are shown, seeds.json of a --seeds run or None)."""
    if not run_dir.exists():
        raise ValueError(f"{run_dir}: no such folder; give the --out folder of an xssr run.")
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: is a file, not a run folder; give the --out folder of an xssr run.")
    seeds = None
    if (run_dir / "seeds.json").is_file():
        seeds = _read_json(run_dir / "seeds.json")
        if not isinstance(seeds, dict) or not isinstance(seeds.get("metrics"), dict):
            raise ValueError(f"{run_dir / 'seeds.json'}: expected the 'seeds' and 'metrics' of `xssr run --seeds`.")
        for seed in seeds.get("seeds", []):
            if (run_dir / f"seed-{seed}").is_dir():
                return run_dir / f"seed-{seed}", seeds
        return run_dir, seeds
    if not any((run_dir / name).exists() for name in _RUN_MARKERS):
        raise ValueError(f"{run_dir}: not an xssr run folder (none of {', '.join(_RUN_MARKERS)} is there); "
                         "give the --out folder of `xssr run`, `select` or `evaluate`.")
    return run_dir, None


def _method_order(folder: Path, parent: str, configured: list[str]) -> list[str]:
    present = sorted(p.name for p in (folder / parent).iterdir() if p.is_dir()) if (folder / parent).is_dir() else []
    return [m for m in configured if m in present] + [m for m in present if m not in configured]


def gather(run_dir: str | os.PathLike, *, tsne_max_points: int = TSNE_MAX_POINTS) -> dict[str, Any]:
    """Everything the page shows, as the keyword arguments of :func:`xssr.report.html.render_report`."""
    run_dir = Path(run_dir)
    folder, seeds = _folders(run_dir)
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    manifest = _read_json(folder / "run_manifest.json") if (folder / "run_manifest.json").is_file() else {}
    configured = list(config.get("select", {}).get("methods", []))
    notes = []
    if seeds is not None and folder != run_dir:
        notes.append(f"A run over seeds {', '.join(str(s) for s in seeds.get('seeds', []))}: the Dice table "
                     f"compares them; the map, picks, sites and predictions are those of {folder.name}/.")
    selections = _selections(folder, _method_order(folder, "select", configured))
    pool_sites = _pool_sites(folder, selections)
    embeddings = _embeddings(folder)
    metrics = _metrics(folder, configured)
    maps, map_note = _maps(embeddings, selections, tsne_max_points)
    return {
        "title": run_dir.name or str(run_dir),
        "facts": _facts(run_dir, config, manifest, embeddings, metrics),
        "notes": notes,
        "config_text": json.dumps(config, indent=2) if config else None,
        "dice": _dice(metrics, seeds),
        "maps": maps, "map_note": map_note,
        "picks": _picks(selections),
        "alpha_curves": _alpha_curves(selections),
        "alpha_note": ("Coverage here is shift-weighted (select.alpha_criterion): each pool image's distance to "
                       "its nearest pick weighted by its distance to the source; lower is better, and alpha = "
                       "\"auto\" keeps the alpha of the lowest."
                       if config.get("select", {}).get("alpha_criterion") == "shift-weighted-coverage" else None),
        "sites": _sites(selections, pool_sites),
        "predictions": _predictions(folder, _method_order(folder, "evaluate", configured)),
        "predictions_note": None if (folder / "evaluate").is_dir() else "No predictions: the evaluate stage has not run.",
    }


def _selections(folder: Path, methods: list[str]) -> dict[str, dict]:
    """Per method: its selection.csv rows, alpha curve rows and stage manifest outputs."""
    found = {}
    for method in methods:
        stage = folder / "select" / method
        if not (stage / "selection.csv").is_file():
            continue
        found[method] = {
            "rows": _read_rows(stage / "selection.csv", ("rank", "index")),
            "curve": _read_rows(stage / "alpha_curve.csv", ("alpha", "coverage"))
            if (stage / "alpha_curve.csv").is_file() else [],
            "outputs": _read_json(stage / "manifest.json").get("outputs", {}) if (stage / "manifest.json").is_file()
            else {},
        }
    return found


def _pool_sites(folder: Path, selections: dict[str, dict]) -> list[str] | None:
    """The site of every pool image, in pool order (pool_index.csv, or the full method's selection)."""
    if (folder / "embed" / "pool_index.csv").is_file():
        rows = _read_rows(folder / "embed" / "pool_index.csv", ("index", "site"))
    elif "full" in selections:
        rows = selections["full"]["rows"]
    else:
        return None
    return [r.get("site") or "unknown" for r in sorted(rows, key=lambda r: int(r["index"]))]


def _embeddings(folder: Path) -> dict[str, np.ndarray]:
    stage = folder / "embed"
    if not (stage / "manifest.json").is_file():
        return {}
    files = _read_json(stage / "manifest.json").get("outputs", {}).get("files", {})
    arrays = {}
    for group in ("source", "pool"):
        if group in files and (stage / files[group]).is_file():
            try:
                arrays[group] = np.load(stage / files[group], mmap_mode="r", allow_pickle=False)
            except ValueError as error:
                raise ValueError(f"{stage / files[group]}: not a readable .npy ({error}).") from None
    return arrays


def _metrics(folder: Path, configured: list[str]) -> dict[str, dict]:
    if (folder / "metrics.json").is_file():
        return _read_json(folder / "metrics.json")
    metrics = {}  # xssr evaluate writes no metrics.json at the top: read the stages
    for method in _method_order(folder, "evaluate", configured):
        path = folder / "evaluate" / method / "metrics.json"
        if path.is_file():
            metrics[method] = _read_json(path)
    return metrics


# ------------------------------------------------------------------ the sections' data
def _facts(run_dir: Path, config: dict, manifest: dict, embeddings: dict, metrics: dict) -> list[tuple[str, str]]:
    data, select, train = config.get("data", {}), config.get("select", {}), config.get("train", {})
    environment = manifest.get("environment", {})
    counts = {g: len(a) for g, a in embeddings.items()}
    n_test = next((m["dice"]["overall"].get("n") for m in metrics.values() if "dice" in m), None)
    facts = [
        ("run folder", str(run_dir)),
        ("source", f"{data.get('source')}" + (f" ({counts['source']} images)" if "source" in counts else "")),
        ("pool", f"{data.get('pool')}" + (f" ({counts['pool']} images)" if "pool" in counts else "")),
        ("test", f"{data.get('test')}" + (f" ({n_test} images)" if n_test else "")),
        ("methods", ", ".join(select.get("methods", []))),
        ("budget", str(select.get("budget"))),
        ("embedder", str(config.get("embed", {}).get("model"))),
        ("training recipe", str(train.get("recipe"))),
        ("image size", str(data.get("image_size"))),
        ("seed", str(config.get("seed"))),
        ("device", str(manifest.get("device", "not recorded"))),
        ("git commit", str(environment.get("git_commit", "not recorded"))),
    ]
    return [(k, v) for k, v in facts if v not in ("None", "")]


def _dice(metrics: dict, seeds: dict | None) -> dict | None:
    if seeds is not None:
        per_seed = {int(s): m for s, m in seeds["metrics"].items()}
        rows = seeds_rows(per_seed)
        for row in rows:
            d = row["versus_random"]
            row["versus_random"] = None if d is None else {"mean": d.mean, "ci_low": d.ci_low,
                                                           "ci_high": d.ci_high, "n": d.n}
        return {"kind": "seeds", "rows": rows,
                "note": "Mean test Dice of each seed's run, then mean \u00b1 std over seeds. The difference to random "
                        "is paired by seed (same U-Net initialisation and batch order) with a 95 % t interval."}
    if not metrics:
        return None
    rows = metrics_rows(metrics)
    sites = sorted({s for r in rows for s in r["per_site"]})
    return {"kind": "run", "rows": rows, "sites": sites if len(sites) > 1 else [],
            "note": "One seed: \u00b1 is the spread over test images, not an interval between methods; "
                    "`xssr run --seeds 0,1,2` compares methods with paired intervals."}


def _project(points: np.ndarray, tsne: bool, random_state: int = 0) -> dict[str, np.ndarray]:
    """2-D maps of (n, d) points: PCA, and t-SNE (scikit-learn) when asked."""
    from sklearn.decomposition import PCA

    x = np.asarray(points, dtype=np.float32)
    if x.shape[1] < 2:
        x = np.hstack([x, np.zeros((len(x), 2 - x.shape[1]), np.float32)])
    maps = {"PCA": PCA(n_components=2, random_state=random_state).fit_transform(x)}
    if tsne:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        if x.shape[1] > 50:  # the usual first step: t-SNE on the leading 50 principal components
            x = PCA(n_components=min(50, len(x)), random_state=random_state).fit_transform(x)
        # One OpenMP thread: with two on two cores that another job keeps busy, scikit-learn's
        # t-SNE of 28 points took 24 s instead of 0.2 s, and of 1,800 points 51 s instead of 13 s.
        import inspect

        # scikit-learn 1.5 renamed n_iter to max_iter (pyproject allows 1.3)
        iterations = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
        with threadpool_limits(limits=1, user_api="openmp"):
            maps["t-SNE"] = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                                 random_state=random_state, **{iterations: TSNE_ITERATIONS}).fit_transform(x)
    return maps


def _maps(embeddings: dict, selections: dict, tsne_max_points: int) -> tuple[list[dict], str | None]:
    if "pool" not in embeddings:
        return [], "No embeddings in this run folder (no method that uses them ran)."
    pool = np.asarray(embeddings["pool"])
    source = np.asarray(embeddings["source"]) if "source" in embeddings else None
    if source is not None and source.shape[1] != pool.shape[1]:
        source = None
    points = pool if source is None else np.concatenate([source, pool])
    n_source = 0 if source is None else len(source)
    finite = np.isfinite(points).all(axis=1)
    if finite.sum() < 4:
        return [], "Too few embedded images to draw a map."
    tsne = len(points) <= tsne_max_points
    note = None if tsne else (f"t-SNE left out: {len(points):,} points (source + pool) is more than "
                              f"{tsne_max_points:,}, where it would take minutes; PCA only.")
    projected = {}
    for name, coords in _project(points[finite], tsne).items():
        full = np.full((len(points), 2), np.nan)
        full[finite] = coords
        projected[name] = full
    rng = np.random.default_rng(0)

    def sample(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, MAP_POINTS, replace=False)) if n > MAP_POINTS else np.arange(n)

    source_shown, pool_shown = sample(n_source), sample(len(pool))
    if n_source > MAP_POINTS or len(pool) > MAP_POINTS:
        note = (note + " " if note else "") + (f"Drawn: a seeded sample of at most {MAP_POINTS:,} source and "
                                               f"{MAP_POINTS:,} pool points, and every pick.")
    maps = []
    for name, coords in projected.items():
        pool_xy, source_xy = coords[n_source:], coords[:n_source]
        picks = {}
        for method, selection in selections.items():
            if method == "full":
                continue
            picks[method] = [{"x": float(pool_xy[int(r["index"]), 0]), "y": float(pool_xy[int(r["index"]), 1]),
                              "rank": int(r["rank"]), "label": f"{Path(r.get('image', '')).name} ({r.get('site', '')})"}
                             for r in selection["rows"]
                             if int(r["index"]) < len(pool_xy) and np.isfinite(pool_xy[int(r["index"])]).all()]
        ok = coords[np.isfinite(coords).all(axis=1)]
        maps.append({"name": name, "pool": pool_xy[pool_shown][np.isfinite(pool_xy[pool_shown]).all(axis=1)],
                     "source": source_xy[source_shown][np.isfinite(source_xy[source_shown]).all(axis=1)]
                     if n_source else None,
                     "extent": (float(ok[:, 0].min()), float(ok[:, 0].max()), float(ok[:, 1].min()),
                                float(ok[:, 1].max())),
                     "picks": picks,
                     "note": "Fitted on source and pool together." if name == "PCA" else
                             f"scikit-learn TSNE (perplexity 30, PCA start, {TSNE_ITERATIONS} iterations) on the first 50 "
                             "principal components; "
                             "distances between far-apart groups mean little."})
    return maps, note


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _components(row: dict) -> list[tuple[str, ...]]:
    """(name, raw value, z-score) of each score component of a pick that selection.csv records."""
    shown = []
    for name in COMPONENTS:
        value = _number(row.get(name))
        if value is None:
            continue
        z = _number(row.get(f"z_{name}"))
        shown.append((name, f"{value:.3g}", f"z {z:+.2f}" if z is not None else ""))
    return shown


def _thumbnail(row: dict, cache: dict) -> tuple[bytes | None, str | None]:
    from xssr.data.readers import read_image
    from xssr.report.pictures import thumbnail_jpeg

    key = row.get("key") or row.get("image")
    if key not in cache:
        slice_index = row.get("slice_index")
        try:
            image = read_image(row["image"], int(slice_index) if slice_index not in (None, "") else None)
            cache[key] = (thumbnail_jpeg(image), None)
        except (ValueError, OSError) as error:  # moved or deleted since the run: say so in its place
            cache[key] = (None, f"not readable: {error}")
    return cache[key]


def _picks(selections: dict) -> list[dict] | None:
    cache: dict = {}
    picks = []
    for method, selection in selections.items():
        if method == "full":
            continue
        rows = selection["rows"]
        items = []
        for row in rows[:MAX_THUMBNAILS]:
            picture, problem = _thumbnail(row, cache)
            items.append({"rank": int(row["rank"]), "name": Path(row.get("image", "")).name
                          + (f" [slice {row['slice_index']}]" if row.get("slice_index") else ""),
                          "path": row.get("image"), "site": row.get("site"), "picture": picture,
                          "problem": problem, "components": _components(row)})
        alpha = _number(rows[0].get("alpha")) if rows else None
        note = f"alpha {alpha:g}, beta {_number(rows[0].get('beta')):g}" if alpha is not None and \
            _number(rows[0].get("beta")) is not None else None
        picks.append({"method": method, "n_total": len(rows), "items": items, "note": note})
    return picks


def _alpha_curves(selections: dict) -> list[dict]:
    curves = []
    for method, selection in selections.items():
        points = [(_number(r["alpha"]), _number(r["coverage"])) for r in selection["curve"]]
        points = [(a, c if c is not None else float("nan")) for a, c in points if a is not None]
        if points:
            chosen = next((_number(r["alpha"]) for r in selection["curve"] if r.get("chosen") == "True"), None)
            curves.append({"method": method, "points": points, "chosen": chosen})
    return curves


def _sites(selections: dict, pool_sites: list[str] | None) -> dict | None:
    if pool_sites is None:
        return {"note": "The pool's sites are not recorded in this run folder (no embed/pool_index.csv)."}
    methods = {m: Counter(r.get("site") or "unknown" for r in s["rows"]) for m, s in selections.items() if m != "full"}
    pool = Counter(pool_sites)
    sites = sorted(pool, key=lambda s: (-pool[s], s))
    return {"sites": sites, "pool": dict(pool), "methods": {m: dict(c) for m, c in methods.items()},
            "note": "Images per site, and their share of the pool or of a method's picks." if methods else
                    "No method picked images."}


def _predictions(folder: Path, methods: list[str]) -> list[dict]:
    from xssr.report.pictures import overlay_png

    shown = []
    for method in methods:
        stage = folder / "evaluate" / method
        if not (stage / "metrics.json").is_file():
            continue
        if not (stage / EXAMPLES_FILE).is_file():
            shown.append({"method": method, "items": [], "note": f"No {EXAMPLES_FILE} (evaluated by an xssr before it "
                          f"kept examples; delete {stage} and run again to make it)."})
            continue
        try:
            examples = read_examples(stage / EXAMPLES_FILE)
        except (ValueError, OSError, KeyError) as error:
            raise ValueError(f"{stage / EXAMPLES_FILE}: not readable ({error}).") from None
        test = _read_rows(stage / "per_image.csv", ("index", "image")) if (stage / "per_image.csv").is_file() else []
        by_index = {int(r["index"]): r for r in test}
        size = examples["image"].shape[1]
        items = []
        for j, index in enumerate(examples["index"]):
            row = by_index.get(int(index), {})
            items.append({"kind": str(examples["kind"][j]), "dice": float(examples["dice"][j]),
                          "name": Path(row.get("image", f"test image {index}")).name, "path": row.get("image"),
                          "picture": overlay_png(examples["image"][j], examples["truth"][j],
                                                 examples["predicted"][j], scale=max(1, 128 // size))})
        shown.append({"method": method, "items": items,
                      "note": f"The {sum(k == 'best' for k in examples['kind'])} best and "
                              f"{sum(k == 'worst' for k in examples['kind'])} worst test images by Dice, at the "
                              f"model's input size ({size} px)."})
    return shown
