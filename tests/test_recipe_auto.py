"""`--recipe auto`: the recipe chosen on validation data for what the team has (source masks, only a
source model, or neither), read from the file `xssr bench choose --write-default` writes."""

import json

import pytest
import torch
from click.testing import CliRunner

from xssr.bench.choose import Choice, write_default_choices
from xssr.cli import main
from xssr.config import RunConfig, apply_overrides
from xssr.data import make_synthetic_dataset
from xssr.models import build_unet
from xssr.pipeline import recipe_choice

CHOICES = {"suite": "recipes-val", "recipes": {"source_masks": "fine-tune", "source_model": "mean-teacher",
                                               "none": "mean-teacher-scratch"},
           "settings": {"source_masks": {"train.augment": "flip", "train.loss": "bce"}}}
TINY = ["--image-size", "32", "--device", "cpu", "--set", "train.steps=3", "--set", "train.channels=4,8",
        "--set", "train.num_res_units=0", "--no-progress", "--methods", "random", "--budget", "3"]


@pytest.fixture
def data(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "data", n_source=4, n_pool=10, n_test=3, size=32)
    manifest = folder / "manifest.csv"
    return folder, {"data.source": f"{manifest}#site=synthetic_source",
                    "data.pool": f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b",
                    "data.test": f"{manifest}#split=test", "train.recipe": "auto"}


def _config(settings):
    return apply_overrides(RunConfig(), settings)


def test_auto_reads_what_the_team_has(data, tmp_path, monkeypatch):
    folder, settings = data
    monkeypatch.setattr(recipe_choice, "default_choices", lambda: CHOICES)
    chosen = recipe_choice.resolve_recipe(_config(settings)).train
    assert (chosen.recipe, chosen.augment, chosen.loss) == ("fine-tune", "flip", "bce")
    # an ingredient the user moved from its default stays as the user set it
    assert recipe_choice.resolve_recipe(_config({**settings, "train.augment": "none"})).train.augment == "none"
    weights = tmp_path / "mine.pt"
    torch.save(build_unet(1, (4, 8), 0).state_dict(), weights)
    with_model = _config({**settings, "train.source_weights": str(weights)})
    assert recipe_choice.resolve_recipe(with_model).train.recipe == "mean-teacher"
    (folder / "masks" / "source_0001.png").unlink()  # one source mask missing: not a team with source masks
    assert recipe_choice.resolve_recipe(_config(settings)).train.recipe == "mean-teacher-scratch"
    assert recipe_choice.resolve_recipe(_config({**settings, "train.recipe": "joint"})).train.recipe == "joint"


def _run_auto(settings, out):
    return CliRunner().invoke(main, ["run", "--source", settings["data.source"], "--pool", settings["data.pool"],
                                     "--test", settings["data.test"], "--recipe", "auto", *TINY, "--out", str(out)])


def test_a_run_with_auto_records_and_says_the_recipe_it_used(data, tmp_path, monkeypatch):
    _, settings = data
    monkeypatch.setattr(recipe_choice, "default_choices", lambda: CHOICES)
    out = tmp_path / "run"
    result = _run_auto(settings, out)
    assert result.exit_code == 0, result.output
    assert "recipe auto -> fine-tune, augment=flip, loss=bce: all 4 source images have masks" in result.output
    assert json.loads((out / "config.json").read_text())["train"]["recipe"] == "fine-tune"
    assert json.loads((out / "metrics.json").read_text())["random"]["recipe"] == "fine-tune"


def test_auto_without_a_verdict_is_a_clear_error(data, tmp_path, monkeypatch):
    _, settings = data
    monkeypatch.setattr(recipe_choice, "default_choices", lambda: None)
    out = tmp_path / "run"
    result = _run_auto(settings, out)
    assert result.exit_code == 2 and "no chosen default yet" in result.output and not out.exists()


def test_the_default_file_is_written_only_from_a_full_verdict(tmp_path):
    from pathlib import Path

    from xssr.bench import load_suite

    suite = load_suite(Path(__file__).parents[1] / "benchmarks" / "suites" / "recipes-val.toml")
    done = [Choice("teams with source masks", ("fine-tune",), "mean-teacher", "fine-tune", "cheaper"),
            Choice("teams with only a source model (--source-weights)", ("fine-tune",), "fine-tune", "fine-tune", "best"),
            Choice("teams with neither", ("supervised",), "supervised", "supervised", "best")]
    path = write_default_choices(done, suite, "A", "verdict text", tmp_path / "default.json")
    written = json.loads(path.read_text())
    assert written["recipes"] == {"source_masks": "fine-tune", "source_model": "fine-tune", "none": "supervised"}
    assert written["rule_2_applied"] is False and written["ingredients"] == {}
    assert written["settings"]["none"] == {"train.augment": "standard", "train.loss": "dice-bce",
                                           "train.lr_schedule": "cosine", "train.tta": True}
    pending = done[:2] + [Choice("teams with neither", ("supervised",), None, None, "not yet: supervised")]
    with pytest.raises(ValueError, match="no verdict yet for teams with neither"):
        write_default_choices(pending, suite, "A", "", tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()


def test_a_suite_cannot_use_auto(tmp_path):
    from xssr.bench import load_suite

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nseeds = [0]\n[[datasets]]\nname = "d"\nsource = "a"\npool = "b"\ntest = "c"\n'
                    '[[experiments]]\ntable = "T"\nvariant = "v"\nmethods = ["random"]\n'
                    'overrides = { "train.recipe" = "auto" }\n')
    with pytest.raises(ValueError, match="train.recipe is 'auto', which changes with the validation verdict"):
        load_suite(path)
    # Not naming one at all means the default, auto: the error says how to name it.
    path.write_text(path.read_text().replace('\noverrides = { "train.recipe" = "auto" }', ""))
    with pytest.raises(ValueError, match='is not set.*"train.recipe" = "fine-tune" under \\[protocol\\]'):
        load_suite(path)


def _validation_runs(changes: dict[str, float], missing: tuple = ()):
    """Fine-tune runs of recipes-val table A (0.90 on cxr-val, 0.95 on fundus-val) and one table B run
    per ablation variant, dataset and seed, that much better or worse."""
    runs = []
    for seed in (0, 1, 2):
        for dataset, dice in (("cxr-val", 0.90), ("fundus-val", 0.95)):
            runs.append({"variant": "fine-tune", "dataset": dataset, "seed": seed, "dice": {"overall": {"mean": dice}}})
            runs += [{"variant": variant, "dataset": dataset, "seed": seed,
                      "dice": {"overall": {"mean": dice + change + 0.001 * (seed - 1)}}}
                     for variant, change in changes.items() if (variant, dataset, seed) not in missing]
    return runs


def test_rule_two_keeps_an_ingredient_only_if_removing_it_lowers_validation_dice(tmp_path):
    from pathlib import Path

    from xssr.bench import load_suite
    from xssr.bench.choose import ingredient_summary, ingredient_verdicts

    suite = load_suite(Path(__file__).parents[1] / "benchmarks" / "suites" / "recipes-val.toml")
    changes = {"fine-tune-no-augment": -0.02, "fine-tune-bce": +0.01, "fine-tune-constant-lr": 0.0,
               "fine-tune-no-tta": -0.001, "fine-tune-all-components": -0.03}
    nothing = ingredient_verdicts(_validation_runs({}), suite)  # no ablation run yet: each listed, none decided
    assert len(nothing) == 5 and all(v.keep is None and not v.with_it for v in nothing)
    runs = _validation_runs(changes, missing=(("fine-tune-all-components", "fundus-val", 2),))
    verdicts = {v.setting: v for v in ingredient_verdicts(runs, suite)}
    assert {s: v.keep for s, v in verdicts.items()} == {
        "train.augment": True, "train.loss": False, "train.lr_schedule": False,  # a tie drops it
        "train.tta": True, "train.keep_components": None}  # a seed is missing: no verdict yet
    assert (verdicts["train.augment"].kept, verdicts["train.augment"].removed) == ("standard", "none")
    assert verdicts["train.keep_components"].kept == (2, 1)  # per anatomy: lungs, optic disc
    assert verdicts["train.loss"].change == pytest.approx(0.01)
    assert verdicts["train.augment"].with_it == {"cxr-val": pytest.approx(0.90), "fundus-val": pytest.approx(0.95)}

    choices = [Choice("teams with source masks", ("fine-tune",), "mean-teacher", "fine-tune", "cheaper"),
               Choice("teams with only a source model (--source-weights)", ("fine-tune",), "fine-tune", "fine-tune", "best"),
               Choice("teams with neither", ("supervised",), "supervised", "supervised", "best")]
    text, listed = ingredient_summary(runs, suite, "B", "A", choices)
    assert "29 of 30 ablation runs finished" in text and "| train.loss | dice-bce → bce |" in text
    with pytest.raises(ValueError, match="no verdict yet for train.keep_components"):
        write_default_choices(choices, suite, "A", text, tmp_path / "default.json", ingredients=listed)

    # Complete: the dropped ingredients are set back in every situation's settings.
    _, listed = ingredient_summary(_validation_runs(changes), suite, "B", "A", choices)
    written = json.loads(write_default_choices(choices, suite, "A", text, tmp_path / "default.json",
                                               ingredients=listed).read_text())
    assert written["settings"]["none"] == {"train.augment": "standard", "train.loss": "bce",
                                           "train.lr_schedule": "constant", "train.tta": True}
    assert written["ingredients"]["train.keep_components"]["kept"] is True and written["rule_2_applied"] is True

    # Table B ablates fine-tune: a verdict for another recipe needs its own ablations.
    other = [Choice("teams with source masks", ("joint",), "joint", "joint", "best")] + choices[1:]
    with pytest.raises(ValueError, match="table B ablates fine-tune, but table A chose joint"):
        ingredient_summary(runs, suite, "B", "A", other)


def test_an_ablation_must_differ_from_a_compared_recipe_in_one_setting(tmp_path):
    from xssr.bench import load_suite
    from xssr.bench.choose import ablations

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nseeds = [0]\n[[datasets]]\nname = "d"\nsource = "a"\npool = "b"\ntest = "c"\n'
                    '[[experiments]]\ntable = "A"\nvariant = "fine-tune"\nmethods = ["random"]\n'
                    'overrides = { "train.recipe" = "fine-tune" }\n'
                    '[[experiments]]\ntable = "B"\nvariant = "two-at-once"\nmethods = ["random"]\n'
                    'overrides = { "train.recipe" = "fine-tune", "train.tta" = false, "train.loss" = "bce" }\n')
    with pytest.raises(ValueError, match="'two-at-once': it must differ from one variant of table A in exactly one"):
        ablations(load_suite(path), "B", "A")
    path.write_text(path.read_text().replace(', "train.loss" = "bce"', ""))
    assert ablations(load_suite(path), "B", "A") == {"two-at-once": ("fine-tune", "train.tta", True, False)}


def test_the_training_defaults_are_the_committed_validation_verdict():
    """TrainConfig's ingredient defaults are what default.json (written by `xssr bench choose
    recipes-val --write-default`) chose, so a run that names its recipe trains as auto would."""
    import dataclasses

    from xssr.config import TrainConfig
    from xssr.train.recipes import recipe_names

    choices = recipe_choice.default_choices()
    assert choices is not None and set(choices["recipes"]) == set(recipe_choice.SITUATIONS)
    assert set(choices["recipes"].values()) <= set(recipe_names())
    defaults = dataclasses.asdict(TrainConfig())
    assert defaults["recipe"] == recipe_choice.AUTO
    for situation in recipe_choice.SITUATIONS:
        assert {k: defaults[k.split(".", 1)[1]] for k in choices["settings"][situation]} == choices["settings"][situation]
