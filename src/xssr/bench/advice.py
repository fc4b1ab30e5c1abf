"""How close `xssr advise` comes: its predicted gain against the committed budget sweeps.

For a suite run at budget b (say T5's random 22 of 453 chest X-rays, seed s), the run's own picks
are the annotated images; ``advise`` fits its learning curve on them, with the run's recipe and
settings, and predicts the Dice that annotating up to the next budget b' of the same experiment
adds. The committed runs measured that on the test images: Dice(b', s) - Dice(b, s). One result
file per (dataset, method, budget, seed) in RESULTS/advice/, resumable like the suites (the curve
points are cached in WORK).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xssr.bench.runner import result_path
from xssr.bench.suite import RunSpec, Suite
from xssr.data import InputError
from xssr.pipeline import Inputs
from xssr.report.io import read_json, write_json

logger = logging.getLogger(__name__)
FOLDER = "advice"


def _record_id(record) -> tuple[str, str, Any]:
    return record.case_id, record.site, record.slice_index


def _pair(suite: Suite, results: Path, spec: RunSpec) -> tuple[dict, dict, RunSpec] | None:
    """The committed runs at ``spec``'s budget and at the next budget of its experiment (None when
    there is no larger budget); a missing run, or one from another protocol (its key differs), is an error."""
    budgets = sorted({b for e in suite.experiments for b in e.budgets
                      if spec.dataset in e.datasets and spec.method in e.methods and e.variant == spec.variant})
    later = [b for b in budgets if b > spec.budget]
    if not later:
        return None
    following = next(s for s in suite.runs() if (s.dataset, s.method, s.variant, s.seed, s.budget)
                     == (spec.dataset, spec.method, spec.variant, spec.seed, later[0]))
    records = []
    for run in (spec, following):
        path = result_path(results, run)
        if not path.is_file():
            raise ValueError(f"{path}: the committed run to compare with is missing; run xssr bench run "
                             f"{suite.name} first")
        record = read_json(path)
        if record.get("key") != run.key:
            raise ValueError(f"{path}: made with other settings than the suite's current definition (its key "
                             f"differs); run xssr bench run {suite.name} to make it again")
        records.append(record)
    return records[0], records[1], following


def _picked_records(pool, selected: list[dict], label: str):
    """The pool records of a committed run's picks, matched by (case id, site, slice)."""
    by_id: dict[tuple, object] = {}
    for record in pool:
        if by_id.setdefault(_record_id(record), record) is not record:
            raise InputError([(label, f"two pool images share case id {record.case_id!r} at site "
                               f"{record.site!r}: the run's picks cannot be matched to images")])
    missing = [s["case_id"] for s in selected if (s["case_id"], s["site"], s["slice_index"]) not in by_id]
    if missing:
        raise InputError([(label, f"{len(missing)} pick(s) are no longer in the pool (first: {missing[0]})")])
    return [by_id[(s["case_id"], s["site"], s["slice_index"])] for s in selected]


def check_advice(suite: Suite, specs: Sequence[RunSpec], results: Path, work: Path, *,
                 folds: int = 3, n_sizes: int = 4, overrides: dict[str, str] | None = None) -> list[dict]:
    """Advise at each spec's budget and compare with the committed runs; returns the rows written.

    ``overrides`` change the advice's training settings only (``{"train.precision": "fp32"}`` where
    the committed runs were made in bf16 on hardware that has it); each row records them."""
    from xssr.config import apply_overrides
    from xssr.pipeline.advice import advise
    from xssr.pipeline.recipe_choice import resolve_recipe

    overrides = dict(overrides or {})
    other = sorted(k for k in overrides if not (k.startswith("train.") or k == "device"))
    if other:
        raise ValueError(f"--set {', '.join(other)}: only training settings (train.*, device) may change for the "
                         "check; the data, selection and seed are those of the committed runs it compares with")

    rows = []
    inputs_of: dict[tuple, Inputs] = {}
    for spec in specs:
        out_path = Path(results) / FOLDER / f"{suite.name}__{spec.name}.json"
        pair = _pair(suite, Path(results), spec)
        if pair is None:
            logger.info("%s: no larger budget to compare with; skipped", spec.name)
            continue
        now, later, following = pair
        if out_path.is_file():
            done = read_json(out_path)
            if done.get("run_keys") == [spec.key, following.key] and done.get("overrides", {}) == overrides:
                rows.append(done)
                continue  # else made from runs of another protocol: check again
        if later["n_train"] <= now["n_train"]:
            logger.info("%s: the next budget has no more images (%d); skipped", spec.name, later["n_train"])
            continue
        where = (spec.config.data.pool, spec.config.data.data_root)
        if where not in inputs_of:
            inputs_of[where] = Inputs(spec.config)
            inputs_of[where].check(["pool"], ["pool"])
        picked = _picked_records(inputs_of[where].records["pool"], now["selected"], str(result_path(results, spec)))
        folder = Path(work) / FOLDER / suite.name / spec.name
        config = apply_overrides(spec.config, overrides, where="--set") if overrides else spec.config
        config = resolve_recipe(config)
        advice = advise(config, folder / "run", picked, later["n_train"] - now["n_train"], folder,
                        folds=folds, n_sizes=n_sizes, store=Path(work) / "store",
                        progress=lambda line, name=spec.name: logger.info("%s: %s", name, line))
        measured = later["dice"]["overall"]["mean"] - now["dice"]["overall"]["mean"]
        low, high = advice["gain_interval_95"]
        row = {"suite": suite.name, "run": spec.name, "next_run": following.name, "run_keys": [spec.key, following.key],
               "overrides": overrides,
               "dataset": spec.dataset,
               "method": spec.method, "budget": spec.budget, "next_budget": following.budget, "seed": spec.seed,
               "n_labeled": now["n_train"], "n_next": later["n_train"],
               "predicted_gain": advice["gain"], "predicted_interval_95": [low, high],
               "predicted_dice_now": advice["dice_now"], "predicted_dice_next": advice["dice_next"],
               "measured_dice_now": now["dice"]["overall"]["mean"], "measured_dice_next": later["dice"]["overall"]["mean"],
               "measured_gain": measured, "error": advice["gain"] - measured, "covered": bool(low <= measured <= high),
               "advice": advice}
        write_json(out_path, row)
        rows.append(row)
    return rows


def advice_table(rows: list[dict]) -> str:
    """Markdown: one line per checked run, then the mean absolute error and the interval's coverage."""
    lines = ["| dataset | method | budget → next | seed | predicted gain [95 %] | measured gain | error | advice settings |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["method"], r["budget"], r["seed"])):
        low, high = r["predicted_interval_95"]
        lines.append(f"| {r['dataset']} | {r['method']} | {r['n_labeled']} → {r['n_next']} | {r['seed']} | "
                     f"{r['predicted_gain']:+.4f} [{low:+.4f}, {high:+.4f}] | {r['measured_gain']:+.4f} | "
                     f"{r['error']:+.4f} | {', '.join(f'{k}={v}' for k, v in r.get('overrides', {}).items()) or '–'} |")
    if rows:
        errors = np.array([r["error"] for r in rows])
        covered = sum(r["covered"] for r in rows)
        lines.append("")
        lines.append(f"{len(rows)} checks: mean absolute error {np.abs(errors).mean():.4f} Dice, mean error "
                     f"{errors.mean():+.4f}; the measured gain fell inside the predicted interval in {covered} of "
                     f"{len(rows)}.")
    return "\n".join(lines) + "\n"
