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
