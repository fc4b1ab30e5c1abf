import pytest

from xssr.config import RunConfig, apply_overrides, load_config


def test_toml_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('seed = 3\n[select]\nmethods = ["xssr", "random"]\nbudget = 22\n[train]\nepochs = 5\n')
    config = load_config(path)
    assert config.seed == 3 and config.select.methods == ("xssr", "random") and config.select.budget == 22
    config = apply_overrides(config, {"train.epochs": "7", "select.alpha": "0.3", "select.methods": "full"})
    assert config.train.epochs == 7 and config.select.alpha == 0.3 and config.select.methods == ("full",)
    assert apply_overrides(config, {"select.alpha": "auto"}).select.alpha == "auto"


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepoch = 5\n")
    with pytest.raises(ValueError, match=r"c.toml.*epoch"):
        load_config(path)
    with pytest.raises(ValueError, match="train.bogus"):
        apply_overrides(RunConfig(), {"train.bogus": 1})


def test_impossible_settings_are_listed_together():
    with pytest.raises(ValueError) as info:
        apply_overrides(RunConfig(), {"data.image_size": "100", "select.beta": "2", "select.methods": "magic"})
    message = str(info.value)
    assert "image_size" in message and "beta" in message and "magic" in message


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="nope.toml"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("setting, value, named", [
    ("train.steps", "-5", "train.steps"),
    ("pretrain.patch_size", "0", "patch_size"),
    ("data.image_size", "16", "image_size"),
    ("select.budget", "1.5", "budget"),
    ("train.precision", "fp16", "train.precision"),
    ("select.k", "0", "select.k"),
    ("select.alpha_grid", "0.5,2", "alpha_grid"),
    ("pretrain.widths", "8,16", "widths"),
    ("seed", "abc", "seed"),
])
def test_settings_that_cannot_work_fail_before_anything_runs(setting, value, named):
    with pytest.raises(ValueError, match=named):
        apply_overrides(RunConfig(), {setting: value})


def test_list_settings_tolerate_spaces():
    assert apply_overrides(RunConfig(), {"select.methods": "xssr, coreset"}).select.methods == ("xssr", "coreset")


def test_select_backend_is_checked_and_enters_the_selection_only_when_moved():
    import pytest

    from xssr.config import RunConfig, apply_overrides
    from xssr.selection.registry import get_method

    with pytest.raises(ValueError, match="select.backend must be one of"):
        apply_overrides(RunConfig(), {"select.backend": "annoy"})
    default = get_method("xssr").select_kwargs(RunConfig().select)
    assert "backend" not in default  # cached selections keep their keys
    moved = apply_overrides(RunConfig(), {"select.backend": "faiss-ivf"}).select
    assert get_method("xssr").select_kwargs(moved)["backend"] == "faiss-ivf"
    assert get_method("coreset").select_kwargs(moved)["backend"] == "faiss-ivf"
