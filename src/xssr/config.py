"""Run configuration: dataclasses with the defaults, loaded from TOML and overridden by flags.

Defaults follow XSSR §3–§4.4 where the paper states a value (U-Net: BCE, AdamW, batch 8,
100 epochs; 5 % budget; binarisation at 0.5). Where it is silent (input size, learning
rates, MAE widths and masking, k, beta) the value chosen here is marked "ours" and
explained in docs/method.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xssr.selection.registry import method_names


@dataclass
class DataConfig:
    source: str | None = None  # data spec of the unlabeled source images (needed by xssr and pretraining)
    pool: str | None = None  # data spec of the unlabeled target pool to choose from
    test: str | None = None  # data spec of the annotated target test images
    data_root: str | None = None  # where "@name" specs point; default XSSR_DATA_ROOT or ../shared/data
    image_size: int = 128  # ours: the paper's input size is lost from the text; 128 fits a CPU
    channels: int | None = None  # 1 or 3; None infers from the images (3 if any is RGB)
    normalize: str = "minmax"  # per-image intensity scaling: minmax, percentile or zscore


@dataclass
class PretrainConfig:
    epochs: int = 20  # ours: fits the 15-minute CPU budget on 1,338 source X-rays at 128 px
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    mask_ratio: float = 0.6  # ours: fraction of patches hidden
    patch_size: int = 16
    widths: tuple[int, ...] = (32, 64, 128, 256)  # four stride-2 blocks; the last is the embedding size
    loss_on: str = "all"  # Eq. 2 scores every pixel; "masked" scores hidden pixels only
    train_on: str = "source"  # "source" (paper) or "source+pool"
    # MedSASS (embed.model = "medsass"; seed paper 004): how each unlabeled image is pseudo-labelled,
    # and the loss its U-Net is pretrained with (the paper's choices are the defaults)
    pseudo_labels: str = "otsu"  # or "adaptive-mean", "adaptive-gaussian"
    ssl_loss: str = "focal-tversky"  # or "tversky", "focal"
    precision: str = "auto"  # auto = bf16 where the hardware computes it natively, else fp32 (see train.loop)


@dataclass
class EmbedConfig:
    model: str = "mae"  # a name in xssr.embedding: "mae" (the paper's; settings in [pretrain]) or "precomputed"
    pool_file: str | None = None  # precomputed: (n_pool, d) .npy
    source_file: str | None = None  # precomputed: (n_source, d) .npy (XSSR's novelty needs it)
    pool_index: str | None = None  # precomputed: CSV with an 'image' column naming each row's image
    source_index: str | None = None


@dataclass
class SelectConfig:
    methods: tuple[str, ...] = ("xssr", "coreset", "random", "full")
    budget: float = 0.05  # a fraction of the pool in (0, 1), or a whole count >= 1 (see resolve_budget)
    alpha: float | str = "auto"
    alpha_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    beta: float = 0.5  # ours
    k: int = 10  # ours: neighbours for density
    metric: str = "euclidean"
    # A later round: images already annotated (a data spec; a round folder's manifest.csv#paths=any
    # counts its rows with a mask). They are never picked again, and XSSR, CoreSet and uncertainty
    # measure diversity against them.
    labeled: str | None = None
    # How alpha = "auto" is calibrated: "coverage" (the paper's Eq. 9) or "shift-weighted-coverage"
    # (each pool image weighted by its distance to the source; docs/method.md says why)
    alpha_criterion: str = "coverage"
    # Nearest-neighbour search for density, novelty and typicality: "auto" (exact, FAISS when
    # installed and the pool is large), "numpy", "faiss", or "faiss-ivf" (approximate, for
    # pools too large for exact search; recall measured in docs/benchmarks.md)
    backend: str = "auto"


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-3  # ours: the paper's value is lost from the text
    weight_decay: float = 1e-4
    min_steps: int = 0  # extend tiny training sets to at least this many optimiser steps
    # Exactly this many optimiser steps whatever the set size (overrides the two above; 0 = use them).
    # 1,500 was chosen on validation data (benchmark suite `schedule`): the paper's 100 epochs are
    # only 300 steps for 22 images and 100 for 5, and scored lower there.
    steps: int = 1500
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_res_units: int = 2
    precision: str = "auto"  # auto = bf16 where the hardware computes it natively, else fp32 (see train.loop)
    threshold: float = 0.5
    # How the U-Net is trained: a name in xssr.train.recipes, or "auto": the recipe chosen on
    # validation data (suite recipes-val) for what the run has (docs/recipes.md). The paper's
    # recipe is "supervised" with every ingredient below off.
    recipe: str = "auto"
    # Ingredients every recipe shares. Their defaults are the validation verdict (recipes-val,
    # rule 2; tests/test_recipe_auto.py checks them against default.json); docs/recipes.md says
    # what each one measured.
    augment: str = "standard"  # "none", "flip" (horizontal) or "standard" (flip, affine, intensity, noise, blur)
    loss: str = "dice-bce"  # "bce" (Eq. 10) or "dice-bce" (Dice + binary cross-entropy, MONAI DiceCELoss)
    lr_schedule: str = "constant"  # or "cosine" (annealed to 0 over the run); rule 2 dropped cosine
    tta: bool = True  # average the prediction with that of the horizontally flipped image
    # Keep only the N largest connected components of a prediction (0 = all). It depends on the
    # anatomy (2 lungs, 1 optic disc), so the presets set it, not this default.
    keep_components: int = 0
    # Recipes that start from a source model: a state dict of this U-Net the user already runs;
    # without it the model is trained here on the source images and masks.
    source_weights: str | None = None
    joint_target_fraction: float = 0.5  # joint: share of every batch drawn from the annotated target images
    ema_decay: float = 0.99  # mean teacher: the teacher is this exponential moving average of the student
    consistency_weight: float = 1.0  # mean teacher: weight of the unlabeled consistency loss after ramp-up
    consistency_rampup: float = 0.3  # mean teacher: share of the steps over which that weight ramps up
    pseudo_threshold: float = 0.0  # mean teacher: > 0.5 uses confident teacher pixels as pseudo-labels


#: The paper's training (XSSR, Eq. 10): the supervised recipe with none of the shared ingredients.
#: The defaults were this until the recipes-val verdict; the committed suites pin it.
PAPER_TRAINING: dict[str, Any] = {"recipe": "supervised", "augment": "none", "loss": "bce",
                                  "lr_schedule": "constant", "tta": False}


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: str = "auto"  # auto = cuda when present, else cpu

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Every setting that run keys and stage fingerprints covered when committed runs were first
#: recorded (key policy v1). These always enter a fingerprint, as they did then. Never add a
#: name here: that would change every key.
KEY_V1_SETTINGS = frozenset({
    "data.source", "data.pool", "data.test", "data.data_root", "data.image_size", "data.channels",
    "data.normalize",
    "pretrain.epochs", "pretrain.batch_size", "pretrain.lr", "pretrain.weight_decay", "pretrain.mask_ratio",
    "pretrain.patch_size", "pretrain.widths", "pretrain.loss_on", "pretrain.train_on", "pretrain.precision",
    "select.methods", "select.budget", "select.alpha", "select.alpha_grid", "select.beta", "select.k",
    "select.metric",
    "train.epochs", "train.batch_size", "train.lr", "train.weight_decay", "train.min_steps", "train.steps",
    "train.channels", "train.num_res_units", "train.precision", "train.threshold",
    "seed", "device",
})

#: Every setting added after v1, with the default it had when it was added. It enters a
#: fingerprint only when a run moves it away from that value, so adding a setting leaves every
#: committed run's key (and every cached stage) valid. If a default is ever changed in the
#: dataclass, keep the old value here: runs at the new default then get new keys, as they must.
#: A new setting must be listed (tests/bench/test_run_keys.py checks).
KEY_ADDED_DEFAULTS: dict[str, Any] = {
    "pretrain.pseudo_labels": "otsu", "pretrain.ssl_loss": "focal-tversky",
    "select.labeled": None, "select.alpha_criterion": "coverage", "select.backend": "auto",
    "embed.model": "mae", "embed.pool_file": None, "embed.source_file": None, "embed.pool_index": None,
    "embed.source_index": None,
    "train.recipe": "supervised", "train.augment": "none", "train.loss": "bce", "train.lr_schedule": "constant",
    "train.tta": False, "train.keep_components": 0, "train.source_weights": None,
    "train.joint_target_fraction": 0.5, "train.ema_decay": 0.99, "train.consistency_weight": 1.0,
    "train.consistency_rampup": 0.3, "train.pseudo_threshold": 0.0,
}

#: Settings that change only how a trained model's predictions are read, not the model itself:
#: they are left out of the training stages' fingerprints, so changing them re-evaluates only.
PREDICTION_SETTINGS = ("threshold", "tta", "keep_components")


def fingerprint_settings(config: RunConfig) -> dict[str, Any]:
    """The settings of ``config`` that benchmark run keys and stage fingerprints hash."""
    return key_settings(config.to_dict())


def key_settings(config: dict[str, Any], added_defaults: dict[str, Any] = KEY_ADDED_DEFAULTS) -> dict[str, Any]:
    """The part of a resolved configuration (``RunConfig.to_dict()``) that a fingerprint hashes.

    v1 settings are always kept; a later one is left out while it equals its value in
    ``added_defaults``. A section with nothing left, outside v1, is left out whole.
    """
    v1_sections = {name.split(".")[0] for name in KEY_V1_SETTINGS}

    def keyed(setting: str, value: Any) -> bool:
        if setting in KEY_V1_SETTINGS or setting not in added_defaults:
            return True
        return _comparable(value) != _comparable(added_defaults[setting])

    kept: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict):
            section = {field_name: v for field_name, v in value.items() if keyed(f"{name}.{field_name}", v)}
            if section or name in v1_sections:
                kept[name] = section
        elif keyed(name, value):
            kept[name] = value
    return kept


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_SECTIONS = {"data": DataConfig, "pretrain": PretrainConfig, "embed": EmbedConfig, "select": SelectConfig,
             "train": TrainConfig}


def _coerce(cls: type, name: str, value: Any, where: str) -> Any:
    """Turn TOML/CLI values into the field's type, with an error naming the setting."""
    if name == "budget" and isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)  # "--budget 22" is a count, "--budget 0.05" a fraction
    if name == "alpha" and isinstance(value, str) and value != "auto":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: expected 'auto' or a number, got {value!r}.") from None
    default = next(f for f in dataclasses.fields(cls) if f.name == name).default
    default = default() if callable(default) else default
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}.")
        kind = type(default[0]) if default else str
        try:
            return tuple(kind(v.strip()) if isinstance(v, str) else kind(v) for v in value)
        except ValueError:
            raise ValueError(f"{where}: expected a list of {kind.__name__}, got {value!r}.") from None
    if isinstance(default, bool) and isinstance(value, str):
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if value.strip().lower() not in words:
            raise ValueError(f"{where}: expected true or false, got {value!r}.")
        return words[value.strip().lower()]
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}.") from None
        return int(number) if number.is_integer() and (isinstance(default, int) or name == "budget") else number
    if isinstance(value, str) and value.lower() in ("none", "") and default is None:
        return None
    if isinstance(value, str) and default is None and name == "channels":
        return int(value)
    return value


def apply_overrides(config: RunConfig, overrides: dict[str, Any], where: str = "setting") -> RunConfig:
    """Apply ``{"section.name": value}`` (or top-level ``"seed"``) overrides, returning a new config."""
    data = config.to_dict()
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        if len(parts) == 1 and parts[0] in ("seed", "device"):
            try:
                data[parts[0]] = int(value) if parts[0] == "seed" else str(value)
            except ValueError:
                raise ValueError(f"{where} seed: expected an integer, got {value!r}.") from None
            continue
        if len(parts) != 2 or parts[0] not in _SECTIONS:
            raise ValueError(
                f"Unknown {where} {dotted!r}: expected 'seed', 'device' or SECTION.NAME with SECTION one of "
                f"{', '.join(_SECTIONS)}."
            )
        section, name = parts
        names = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        if name not in names:
            raise ValueError(f"Unknown {where} {dotted!r}: [{section}] has {', '.join(names)}.")
        data[section][name] = _coerce(_SECTIONS[section], name, value, f"{where} {dotted}")
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> RunConfig:
    unknown = set(data) - set(_SECTIONS) - {"seed", "device"}
    if unknown:
        raise ValueError(f"Unknown configuration keys {sorted(unknown)}; expected {sorted(_SECTIONS)}, seed, device.")
    config = RunConfig(seed=int(data.get("seed", 0)), device=str(data.get("device", "auto")))
    for section, cls in _SECTIONS.items():
        values = dict(data.get(section, {}))
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(values) - known
        if extra:
            raise ValueError(f"Unknown keys in [{section}]: {sorted(extra)}; valid keys: {sorted(known)}.")
        coerced = {k: _coerce(cls, k, v, f"[{section}] {k}") for k, v in values.items()}
        setattr(config, section, cls(**coerced))
    check_config(config)
    return config


def read_toml(path: str | Path, what: str = "configuration file") -> dict[str, Any]:
    """Parse a TOML file; errors name the file and say what was wrong."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} not found.") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error}).") from None


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML run configuration; relative data specs stay relative to the caller's directory."""
    path = Path(path)
    data = read_toml(path)
    try:
        return from_dict(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def check_config(config: RunConfig) -> None:
    """Reject settings that cannot work, before anything runs."""
    problems = []
    d, p, s, t = config.data, config.pretrain, config.select, config.train
    if d.image_size < 16 or d.image_size % 16:
        problems.append(f"data.image_size must be a multiple of 16 and >= 16, got {d.image_size}")
    if d.channels not in (None, 1, 3):
        problems.append(f"data.channels must be 1, 3 or unset, got {d.channels}")
    if d.normalize not in ("minmax", "percentile", "zscore"):
        problems.append(f"data.normalize must be minmax, percentile or zscore, got {d.normalize!r}")
    if p.patch_size < 1 or d.image_size % p.patch_size:
        problems.append(f"pretrain.patch_size must be >= 1 and divide data.image_size {d.image_size}, got {p.patch_size}")
    # The U-Net halves the image once per level after the first; its bottleneck needs at least 2x2 pixels.
    smallest = 2 * 2 ** (len(t.channels) - 1)
    if d.image_size < smallest:
        problems.append(f"data.image_size must be >= {smallest} for a U-Net with {len(t.channels)} levels, "
                        f"got {d.image_size}")
    if len(p.widths) != 4:
        problems.append(f"pretrain.widths must have 4 entries (one per stride-2 block), got {list(p.widths)}")
    if p.loss_on not in ("all", "masked"):
        problems.append(f"pretrain.loss_on must be 'all' or 'masked', got {p.loss_on!r}")
    for name, value in (("pretrain.precision", p.precision), ("train.precision", t.precision)):
        if value not in ("auto", "bf16", "fp32"):
            problems.append(f"{name} must be 'auto', 'bf16' or 'fp32', got {value!r}")
    for name, value in (("train.steps", t.steps), ("train.min_steps", t.min_steps)):
        if value < 0:
            problems.append(f"{name} must be >= 0, got {value}")
    if s.k < 1:
        problems.append(f"select.k must be >= 1, got {s.k}")
    if not s.alpha_grid or any(not 0 <= a <= 1 for a in s.alpha_grid):
        problems.append(f"select.alpha_grid must be a non-empty list of numbers in [0, 1], got {list(s.alpha_grid)}")
    if not 0 <= p.mask_ratio < 1:
        problems.append(f"pretrain.mask_ratio must be in [0, 1), got {p.mask_ratio}")
    if p.train_on not in ("source", "source+pool"):
        problems.append(f"pretrain.train_on must be 'source' or 'source+pool', got {p.train_on!r}")
    for name, value in (("pretrain.epochs", p.epochs), ("train.epochs", t.epochs)):
        if value < 1:
            problems.append(f"{name} must be >= 1, got {value}")
    for name, value in (("pretrain.batch_size", p.batch_size), ("train.batch_size", t.batch_size)):
        if value < 1:
            problems.append(f"{name} must be >= 1, got {value}")
    unknown = [m for m in s.methods if m not in method_names()]
    if unknown or not s.methods:
        problems.append(f"select.methods must be a non-empty list from {', '.join(method_names())}, "
                        f"got {list(s.methods)}")
    from xssr.train.recipes import recipe_names

    from xssr.embedding import embedder_names

    if config.embed.model not in embedder_names():
        problems.append(f"embed.model must be one of {', '.join(embedder_names())}, got {config.embed.model!r}")
    if t.recipe not in (*recipe_names(), "auto"):
        problems.append(f"train.recipe must be one of {', '.join(recipe_names())} or auto, got {t.recipe!r}")
    from xssr.selection.neighbors import BACKENDS

    for name, value, valid in (("select.alpha_criterion", s.alpha_criterion, ("coverage", "shift-weighted-coverage")),
                               ("select.backend", s.backend, BACKENDS),
                               ("pretrain.pseudo_labels", p.pseudo_labels, ("otsu", "adaptive-mean", "adaptive-gaussian")),
                               ("pretrain.ssl_loss", p.ssl_loss, ("focal-tversky", "tversky", "focal")),
                               ("train.augment", t.augment, ("none", "flip", "standard")),
                               ("train.loss", t.loss, ("bce", "dice-bce")),
                               ("train.lr_schedule", t.lr_schedule, ("constant", "cosine"))):
        if value not in valid:
            problems.append(f"{name} must be one of {', '.join(valid)}, got {value!r}")
    if not isinstance(t.tta, bool):
        problems.append(f"train.tta must be true or false, got {t.tta!r}")
    if not isinstance(t.keep_components, int) or t.keep_components < 0:
        problems.append(f"train.keep_components must be a whole number >= 0, got {t.keep_components!r}")
    for name, value in (("train.joint_target_fraction", t.joint_target_fraction), ("train.ema_decay", t.ema_decay),
                        ("train.consistency_rampup", t.consistency_rampup)):
        if not 0 <= value <= 1:
            problems.append(f"{name} must be in [0, 1], got {value}")
    if t.consistency_weight < 0:
        problems.append(f"train.consistency_weight must be >= 0, got {t.consistency_weight}")
    if t.pseudo_threshold != 0 and not 0.5 < t.pseudo_threshold < 1:
        problems.append(f"train.pseudo_threshold must be 0 (off) or in (0.5, 1), got {t.pseudo_threshold}")
    budget_ok = isinstance(s.budget, (int, float)) and (0 < s.budget < 1 or float(s.budget).is_integer() and s.budget >= 1)
    if not budget_ok:
        problems.append(f"select.budget must be a fraction in (0, 1) or a whole count >= 1, got {s.budget!r}")
    if s.alpha != "auto" and not (isinstance(s.alpha, (int, float)) and 0 <= s.alpha <= 1):
        problems.append(f"select.alpha must be 'auto' or a number in [0, 1], got {s.alpha!r}")
    if not 0 <= s.beta <= 1:
        problems.append(f"select.beta must be in [0, 1], got {s.beta}")
    if not 0 < t.threshold < 1:
        problems.append(f"train.threshold must be in (0, 1), got {t.threshold}")
    if config.device not in ("auto", "cpu", "cuda") and not config.device.startswith("cuda:"):
        problems.append(f"device must be auto, cpu or cuda[:N], got {config.device!r}")
    if problems:
        raise ValueError("Invalid configuration:\n  " + "\n  ".join(problems))


def demo_config(manifest: Path, seed: int = 0) -> RunConfig:
    """Settings sized for the synthetic demo: 64 px, short MAE training, 300 U-Net steps per arm."""
    m = str(manifest)
    return RunConfig(
        data=DataConfig(source=f"{m}#site=synthetic_source", pool=f"{m}#split=train&site="
                        "synthetic_target_a,synthetic_target_b,synthetic_target_c",
                        test=f"{m}#split=test", image_size=64),
        pretrain=PretrainConfig(epochs=15, batch_size=16),
        select=SelectConfig(budget=0.1),
        # 300 steps for every arm: the demo must finish in minutes on a CPU without native bf16 too
        train=TrainConfig(steps=300),
        seed=seed,
    )
