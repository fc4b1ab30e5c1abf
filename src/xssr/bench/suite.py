"""Benchmark suites: versioned TOML files that expand into a list of single runs.

A suite names its datasets (source / pool / test data specs, and settings of their own), the seeds, a protocol (run
settings shared by every run) and experiments (which methods at which budgets, optionally
with setting overrides under a variant name). One *run* is (dataset, method, budget,
variant, seed); its key hashes everything that can change its result, so a finished run is
found again and never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from xssr.config import RunConfig, apply_overrides, fingerprint_settings, read_toml
from xssr.selection.registry import method_names
from xssr.report.provenance import config_fingerprint


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    pool: str
    test: str
    settings: tuple[tuple[str, Any], ...] = ()  # settings of this dataset's runs (e.g. its anatomy's component count)


@dataclass(frozen=True)
class Experiment:
    table: str
    methods: tuple[str, ...]
    budgets: tuple[float, ...]
    datasets: tuple[str, ...]
    variant: str = ""
    overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """One benchmark run; ``config`` is the complete resolved configuration."""

    suite: str
    dataset: str
    method: str
    budget: float
    variant: str
    seed: int
    config: RunConfig = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return config_fingerprint({"method": self.method, "budget": self.budget,
                                   "config": fingerprint_settings(self.config)})

    @property
    def name(self) -> str:
        variant = f"__{self.variant}" if self.variant else ""
        return f"{self.dataset}__{self.method}__b{self.budget:g}{variant}__s{self.seed}"

    @property
    def group(self) -> tuple[str, str, int]:
        """Runs of one group share inputs and the MAE (same dataset, variant settings and seed)."""
        settings = fingerprint_settings(self.config)
        return self.dataset, config_fingerprint({k: v for k, v in settings.items()
                                                  if k in ("data", "pretrain", "seed")}), self.seed


@dataclass
class Suite:
    name: str
    description: str
    seeds: tuple[int, ...]
    protocol: dict[str, Any]
    datasets: dict[str, Dataset]
    experiments: list[Experiment]
    path: Path | None = None

    def runs(self, tables: tuple[str, ...] = ()) -> list[RunSpec]:
        """Every run of every experiment (of ``tables``, if given), de-duplicated (T2 and T5 share their 5 % runs)."""
        seen: dict[tuple, RunSpec] = {}
        for exp in self.experiments:
            if tables and exp.table not in tables:
                continue
            for dataset in exp.datasets:
                for method in exp.methods:
                    for budget in ((1.0,) if method == "full" else exp.budgets):
                        for seed in self.seeds:
                            spec = self._run(dataset, method, budget, exp, seed)
                            seen.setdefault((spec.dataset, spec.method, spec.budget, spec.variant, seed), spec)
        return list(seen.values())

    def filter(self, *, tables: Sequence[str] = (), datasets: Sequence[str] = (), methods: Sequence[str] = (),
               variants: Sequence[str] = (), seeds: Sequence[int] = ()) -> list[RunSpec]:
        """The runs of the given tables, datasets, methods, variants and seeds (empty: all); an
        unknown name is an error."""
        for option, given, known in (("--table", tables, {e.table for e in self.experiments}),
                                     ("--dataset", datasets, set(self.datasets)),
                                     ("--method", methods, {m for e in self.experiments for m in e.methods}),
                                     ("--variant", variants, {e.variant for e in self.experiments}),
                                     ("--seed", seeds, set(self.seeds))):
            unknown = sorted(set(given) - known)
            if unknown:
                raise ValueError(f"{option}: {', '.join(map(str, unknown))} not in suite {self.name!r}; it has: "
                                 f"{', '.join(map(str, sorted(known)))}")
        return [spec for spec in self.runs(tuple(tables))
                if (not datasets or spec.dataset in datasets) and (not methods or spec.method in methods)
                and (not variants or spec.variant in variants) and (not seeds or spec.seed in seeds)]

    def _run(self, dataset: str, method: str, budget: float, exp: Experiment, seed: int) -> RunSpec:
        d = self.datasets[dataset]
        overrides = {**self.protocol, **dict(d.settings), **dict(exp.overrides),
                     "data.source": d.source, "data.pool": d.pool, "data.test": d.test,
                     "select.methods": [method], "select.budget": budget, "seed": seed}
        config = apply_overrides(RunConfig(), overrides, where=f"suite {self.name!r} setting")
        if config.train.recipe == "auto":
            said = "is 'auto'" if "train.recipe" in overrides else "is not set, so it would be the default 'auto'"
            raise ValueError(f"dataset {dataset!r}, experiment {exp.table!r}: train.recipe {said}, which changes "
                             "with the validation verdict while run keys stay; name the recipe, e.g. "
                             '"train.recipe" = "fine-tune" under [protocol] (docs/recipes.md)')
        return RunSpec(self.name, dataset, method, float(budget), exp.variant, seed, config)


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; errors name the file and the entry."""
    path = Path(path)
    raw = read_toml(path, "suite file")
    try:
        return _parse(raw, path)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def _parse(raw: dict[str, Any], path: Path) -> Suite:
    datasets = {}
    for entry in raw["datasets"]:
        datasets[entry["name"]] = Dataset(entry["name"], entry["source"], entry["pool"], entry["test"],
                                          tuple(sorted(entry.get("settings", {}).items())))
    experiments = []
    for entry in raw["experiments"]:
        methods = tuple(entry["methods"])
        unknown = [m for m in methods if m not in method_names()]
        if unknown:
            raise ValueError(f"experiment {entry.get('table')!r}: unknown methods {unknown}")
        names = tuple(entry.get("datasets", list(datasets)))
        missing = [n for n in names if n not in datasets]
        if missing:
            raise ValueError(f"experiment {entry.get('table')!r}: unknown datasets {missing}")
        experiments.append(Experiment(
            table=str(entry["table"]), methods=methods, budgets=tuple(float(b) for b in entry.get("budgets", [0.05])),
            datasets=names, variant=str(entry.get("variant", "")),
            overrides=tuple(sorted(entry.get("overrides", {}).items())),
        ))
    overrides_of: dict[str, tuple] = {}
    for exp in experiments:
        # Runs are told apart by (dataset, method, budget, variant, seed): overrides without a
        # variant name of their own would be merged with (and lose to) the plain runs.
        if exp.overrides and not exp.variant:
            raise ValueError(f"experiment {exp.table!r}: 'overrides' need a 'variant' name")
        if overrides_of.setdefault(exp.variant, exp.overrides) != exp.overrides:
            raise ValueError(f"experiment {exp.table!r}: variant {exp.variant!r} is used by another "
                             "experiment with other overrides; give each set of overrides its own name")
    suite = Suite(
        name=str(raw["name"]), description=str(raw.get("description", "")),
        seeds=tuple(int(s) for s in raw["seeds"]), protocol=dict(raw.get("protocol", {})),
        datasets=datasets, experiments=experiments, path=path,
    )
    suite.runs()  # resolves every configuration now, so a bad setting fails before any training
    return suite


