"""Committed benchmark runs are hours of compute: a code change must never orphan them silently."""

import json
from pathlib import Path

import pytest

from xssr.bench import load_suite
from xssr.config import KEY_ADDED_DEFAULTS, KEY_V1_SETTINGS, key_settings
from xssr.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted((ROOT / "benchmarks" / "suites").glob("*.toml"))


@pytest.mark.parametrize("suite_file", SUITES, ids=lambda p: p.stem)
def test_every_committed_run_is_still_matched_by_its_suite(suite_file):
    suite = load_suite(suite_file)
    keys = {spec.key for spec in suite.runs()}
    files = sorted((ROOT / "benchmarks" / "results" / suite.name / "runs").glob("*.json"))
    orphaned = [f.name for f in files if json.loads(f.read_text())["key"] not in keys]
    assert not orphaned, (f"{len(orphaned)} of {len(files)} committed runs of {suite.name!r} no longer match "
                          f"their suite (a setting or the key changed): {orphaned[:5]}")


def test_v1_settings_are_exactly_the_settings_keys_were_made_from():
    # If this fails, a setting was renamed or removed: committed keys depend on the old name.
    names = set()
    for section, value in RunConfig().to_dict().items():
        names |= {f"{section}.{name}" for name in value} if isinstance(value, dict) else {section}
    assert KEY_V1_SETTINGS <= names


def test_every_setting_after_v1_is_listed_with_its_default():
    config = RunConfig().to_dict()
    names = {f"{section}.{name}": v for section, value in config.items() if isinstance(value, dict)
             for name, v in value.items()}
    added = set(names) - KEY_V1_SETTINGS
    assert added == set(KEY_ADDED_DEFAULTS), "list every new setting in config.KEY_ADDED_DEFAULTS"
    # A mismatch here means a default changed: keep the value it was added with in
    # KEY_ADDED_DEFAULTS (runs at the new default must get new keys) and say so here.
    assert {n: names[n] for n in added} == {**KEY_ADDED_DEFAULTS, **CHANGED_DEFAULTS}


#: Defaults changed since their settings were added: the recipe and ingredients chosen on validation
#: data (suite recipes-val, docs/recipes.md). Runs at these values get keys of their own.
CHANGED_DEFAULTS = {"train.recipe": "auto", "train.augment": "standard", "train.loss": "dice-bce",
                    "train.tta": True}  # lr_schedule: rule 2 kept its first default, constant


def test_a_new_setting_at_its_default_leaves_the_key_unchanged():
    config = RunConfig().to_dict()
    for dotted, value in KEY_ADDED_DEFAULTS.items():  # the defaults the settings were added with
        section, name = dotted.split(".")
        config[section][name] = value
    v1 = {name: value for name, value in config.items()
          if not isinstance(value, dict) or any(k.startswith(name + ".") for k in KEY_V1_SETTINGS)}
    v1 = {name: ({k: v for k, v in value.items() if f"{name}.{k}" in KEY_V1_SETTINGS} if isinstance(value, dict)
                 else value) for name, value in v1.items()}
    assert key_settings(config) == v1  # today's defaults hash exactly as v1 did
    grown = {**config, "train": {**config["train"], "extra": 1}}
    assert key_settings(grown, {**KEY_ADDED_DEFAULTS, "train.extra": 1}) == v1
    moved = {**config, "train": {**config["train"], "recipe": "mean-teacher"}}
    assert key_settings(moved)["train"]["recipe"] == "mean-teacher"
    # A changed default still changes keys: compared with the default the setting was added with.
    assert key_settings(config, {**KEY_ADDED_DEFAULTS, "train.recipe": "older"})["train"]["recipe"] == "supervised"
    today = key_settings(RunConfig().to_dict())["train"]
    assert {k: today[k] for k in ("recipe", "augment", "loss", "tta")} == {
        k.split(".")[1]: v for k, v in CHANGED_DEFAULTS.items()}
    assert "lr_schedule" not in today  # back at the value it was added with
    # A v1 setting stays in the key even at its default, as it always was.
    assert key_settings(config)["train"]["epochs"] == config["train"]["epochs"]


def test_run_files_left_out_of_the_tables_are_reported(tmp_path, caplog):
    from xssr.bench.report import load_runs

    suite = load_suite(SUITES[0])
    runs = tmp_path / suite.name / "runs"
    runs.mkdir(parents=True)
    spec = suite.runs()[0]
    (runs / "current.json").write_text(json.dumps({"key": spec.key}))
    (runs / "old-protocol.json").write_text(json.dumps({"key": "0123456789abcdef"}))
    with caplog.at_level("WARNING"):
        kept = load_runs(tmp_path, suite)
    assert kept == [{"key": spec.key}]
    assert "1 of 2 run files" in caplog.text and "left out" in caplog.text
