"""Command line: parses flags into a RunConfig and calls xssr.api. No logic of its own."""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import logging
import sys
from pathlib import Path

import click

from xssr import api
from xssr.config import RunConfig, apply_overrides, check_config, load_config
from xssr.selection.registry import method_names
from xssr.train import distributed
from xssr.train.recipes import recipe_names

PRESETS = ("cxr", "fundus")


def _config_options(func):
    """Options every pipeline subcommand shares; they override --config/--preset values."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML run configuration."),
        click.option("--preset", type=click.Choice(PRESETS), help="A built-in configuration for the shared real data."),
        click.option("--source", help="Source images: folder, manifest CSV, or '@dataset', with '#key=value&...' filters."),
        click.option("--pool", help="Unlabeled target pool to choose from (same syntax)."),
        click.option("--test", help="Annotated target test images (same syntax)."),
        click.option("--data-root", type=click.Path(file_okay=False), help="Where '@name' specs point (default: $XSSR_DATA_ROOT or ../shared/data)."),
        click.option("--methods", help="Comma list from: " + ", ".join(method_names()) + "."),
        click.option("--recipe", help="How the U-Net is trained: " + ", ".join(recipe_names())
                     + ", or auto (the one chosen on validation data for what you have; docs/recipes.md)."),
        click.option("--source-weights", type=click.Path(dir_okay=False),
                     help="A state dict of the source U-Net you already run (recipes that start from the source)."),
        click.option("--labeled", help="A later round: images already annotated (a round's manifest.csv#paths=any, "
                                       "or any data spec); they are not picked again."),
        click.option("--budget", type=float, help="A fraction of the pool below 1 (0.05 = 5 %) or a whole number of images (22)."),
        click.option("--image-size", type=int, help="Square side in pixels the images are resized to."),
        click.option("--seed", type=int, help="One seed for everything random (default 0)."),
        click.option("--device", help="auto (default: cuda when present), cpu or cuda."),
        click.option("--set", "settings", multiple=True, metavar="SECTION.NAME=VALUE", help="Any other setting, e.g. --set train.epochs=50."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _build_config(config_path, preset, source, pool, test, data_root, methods, recipe, source_weights, labeled,
                  budget, image_size, seed, device, settings) -> RunConfig:
    if config_path and preset:
        raise click.UsageError("Give --config or --preset, not both.")
    if config_path:
        config = load_config(config_path)
    elif preset:
        with importlib.resources.as_file(importlib.resources.files("xssr") / "presets" / f"{preset}.toml") as path:
            config = load_config(path)
    else:
        config = RunConfig()
    overrides = {
        "data.source": source, "data.pool": pool, "data.test": test, "data.data_root": data_root,
        "select.methods": methods, "train.recipe": recipe, "train.source_weights": source_weights,
        "select.labeled": labeled,
        "select.budget": budget, "data.image_size": image_size,
        "seed": seed, "device": device,
    }
    for item in settings:
        if "=" not in item:
            raise click.UsageError(f"--set expects SECTION.NAME=VALUE, got {item!r}.")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    config = apply_overrides(config, overrides, where="option")
    check_config(config)
    return config


def _errors_to_exit(func):
    """Turn input, configuration and file-system errors into a readable message and exit code 2.

    A user's mistake (a bad file, a setting, a folder that cannot be written) never shows a
    traceback; a bug still does. TypeError is a user's too: the parameter checks raise it, as
    scikit-learn's do, for an input of the wrong kind (a `.npy` of strings given as embeddings).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError) as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            click.echo(f"error: {where}{error.strerror or error}", err=True)
            sys.exit(2)

    return wrapper


def _show_progress(no_progress: bool) -> bool:
    return not no_progress and sys.stderr.isatty() and distributed.is_main()


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="xssr")
def main(verbose: int) -> None:
    """xssr: choose which target-domain images to annotate, train a U-Net on them, measure Dice."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if not distributed.is_main():
        # torchrun starts this command once per process: rank 0 speaks for all of them, the
        # others say only what goes wrong (warnings and errors, on stderr).
        level = logging.WARNING
        sys.stdout = open(os.devnull, "w")  # for the life of the process
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # -v is for xssr's own log; other libraries' info lines (faiss reports a failed import of its
    # AVX2 build at INFO before loading the generic one) read like errors. -vv shows everything.
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    if distributed.is_main():
        _show_stage_lines()


_QUIET_LIBRARIES = ("faiss", "faiss.loader", "PIL", "matplotlib", "monai", "nibabel", "pydicom", "urllib3")


def _show_stage_lines() -> None:
    """One plain line per stage on stderr at every verbosity, terminal or log file."""
    from xssr.pipeline.stage import stage_log

    for handler in list(stage_log.handlers):  # main() runs once per invocation in tests
        stage_log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    stage_log.addHandler(handler)
    stage_log.setLevel(logging.INFO)
    stage_log.propagate = False


no_progress_option = click.option("--no-progress", is_flag=True, help="Hide progress bars.")
out_option = click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")


@main.command()
@_config_options
@click.option("--stage", type=click.Choice(["pretrain", "embed", "select", "train", "run"]), default="run",
              show_default=True, help="Check the inputs this stage needs.")
@_errors_to_exit
def validate(stage, **options) -> None:
    """Check every input image and mask; list all problems at once. Writes nothing."""
    summary = api.validate(_build_config(**options), stage=stage)
    click.echo(summary.describe())
    click.echo("all inputs OK")


@main.command()
@_config_options
@out_option
@no_progress_option
@_errors_to_exit
def pretrain(out, no_progress, **options) -> None:
    """Stage 1: train the masked autoencoder on the source images."""
    path = api.pretrain(_build_config(**options), out, progress=_show_progress(no_progress))
    click.echo(f"MAE checkpoint: {path}")


@main.command()
@_config_options
@out_option
@no_progress_option
@_errors_to_exit
def embed(out, no_progress, **options) -> None:
    """Stage 1: embed source and pool images with the MAE (trains it first if needed)."""
    paths = api.embed(_build_config(**options), out, progress=_show_progress(no_progress))
    for group, path in paths.items():
        click.echo(f"{group} embeddings: {path}")


@main.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("labeled")
@click.option("--next", "next_batch", type=int, required=True, help="How many more images you could annotate.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for advice.json, curve.csv and the trained curve points (resumable).")
@click.option("--folds", type=int, default=3, show_default=True)
@click.option("--sizes", "n_sizes", type=int, default=4, show_default=True,
              help="Training sizes per fold (the curve has 3 parameters: 4 sizes leave one to check the fit).")
@click.option("--set", "settings", multiple=True, metavar="SECTION.NAME=VALUE",
              help="Override a setting of RUN for the curve, e.g. --set train.steps=500 (cheaper, less exact).")
@_errors_to_exit
def advise(run, labeled, next_batch, out, folds, n_sizes, settings) -> None:
    """Estimate how much Dice the next NEXT annotations would add.

    LABELED names the images annotated so far, e.g. ROUND/manifest.csv#paths=any (the rows with a
    mask count). RUN's recipe and settings train folds x sizes U-Nets on nested subsets of them;
    a learning curve fitted to their held-out Dice gives the gain and a 95 % interval.
    """
    from xssr.pipeline.advice import advice_text

    for item in settings:
        if "=" not in item:
            raise click.UsageError(f"--set expects SECTION.NAME=VALUE, got {item!r}.")
    advice = api.advise(run, labeled, next_batch, out, settings=settings, folds=folds, n_sizes=n_sizes,
                        progress=click.echo)
    click.echo(advice_text(advice))
    click.echo(f"advice: {Path(out) / 'advice.json'}")


@main.command("embed-images")
@click.argument("run", type=click.Path(file_okay=False))
@click.argument("images")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for embeddings.npy, index.csv and manifest.json (not inside RUN's embed/).")
@click.option("--device", help="auto (default: the run's setting), cpu or cuda.")
@_errors_to_exit
def embed_images(run, images, out, device) -> None:
    """Embed IMAGES (any data spec) with the model RUN fitted, into a folder of their own.

    The rows line up with index.csv; use them with --set embed.model=precomputed
    --set embed.pool_file=OUT/embeddings.npy --set embed.pool_index=OUT/index.csv.
    """
    folder = api.embed_images(run, images, out, device=device)
    click.echo(f"embeddings: {folder / 'embeddings.npy'} (rows as in {folder / 'index.csv'})")


@main.command()
@_config_options
@out_option
@no_progress_option
@click.option("--pool-embeddings", type=click.Path(),
              help="Select from this (n_pool, d) .npy instead of running the MAE.")
@click.option("--source-embeddings", type=click.Path(),
              help="(n_source, d) .npy of source embeddings (for novelty).")
@click.option("--method", default="xssr", show_default=True, help="With --pool-embeddings: the method to run.")
@click.option("--alpha", default=None, help="'auto' (default) or a fixed novelty weight in [0, 1].")
@click.option("--beta", type=float, default=None, help="Density weight in [0, 1] (default 0.5).")
@_errors_to_exit
def select(out, no_progress, pool_embeddings, source_embeddings, method, alpha, beta, **options) -> None:
    """Stage 2: rank the target pool and write the images to annotate as CSV."""
    extra = list(options.pop("settings"))
    if alpha is not None:
        extra.append(f"select.alpha={alpha}")
    if beta is not None:
        extra.append(f"select.beta={beta}")
    config = _build_config(settings=tuple(extra), **options)
    if source_embeddings and not pool_embeddings:
        raise click.UsageError("--source-embeddings needs --pool-embeddings.")
    if pool_embeddings:
        result, path = api.select_embedding_files(pool_embeddings, source_embeddings, out, config, method=method)
        click.echo(f"{method}: {len(result.indices)} selected" +
                   (f", alpha={result.alpha:g}" if result.alpha is not None else ""))
        click.echo(f"to annotate: {path}")
        return
    for method_name, path in api.select(config, out, progress=_show_progress(no_progress)).items():
        click.echo(f"to annotate ({method_name}): {path}")


def _echo_selections(result: api.RunResult) -> None:
    for method, path in result.selections.items():
        if method != "full":
            click.echo(f"to annotate ({method}): {path}")


@main.command()
@_config_options
@out_option
@no_progress_option
@_errors_to_exit
def train(out, no_progress, **options) -> None:
    """Stage 3: train a U-Net on each method's selected images (their masks must exist)."""
    for method, path in api.train(_build_config(**options), out, progress=_show_progress(no_progress)).items():
        click.echo(f"{method}: {path}")


@main.command()
@_config_options
@out_option
@no_progress_option
@_errors_to_exit
def evaluate(out, no_progress, **options) -> None:
    """Test Dice of each method's U-Net on the annotated target test images."""
    metrics = api.evaluate(_build_config(**options), out, progress=_show_progress(no_progress))
    click.echo(api.RunResult(out=Path(out), metrics=metrics).table())


@main.command()
@_config_options
@out_option
@no_progress_option
@click.option("--seeds", help="Comma list (0,1,2): run once per seed and compare the methods with paired intervals.")
@_errors_to_exit
def run(out, no_progress, seeds, **options) -> None:
    """The whole pipeline for every method: pretrain, embed, select, train, evaluate."""
    if seeds:
        try:
            chosen = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise click.UsageError(f"--seeds expects whole numbers separated by commas, got {seeds!r}.") from None
        api.run_seeds(_build_config(**options), out, chosen, progress=_show_progress(no_progress))
        from xssr.report.io import read_json

        click.echo(read_json(Path(out) / "seeds.json")["summary"])
        click.echo(f"results in {out} (one folder per seed, seeds.json)")
        if (Path(out) / "report.html").is_file():
            click.echo(f"report: {Path(out) / 'report.html'}")
        return
    result = api.run(_build_config(**options), out, progress=_show_progress(no_progress))
    click.echo(result.table())
    _echo_selections(result)
    click.echo(f"results in {result.out}")
    if result.report:
        click.echo(f"report: {result.report}")


@main.command()
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="The HTML file to write (default: RUN/report.html).")
@_errors_to_exit
def report(run, out) -> None:
    """One self-contained HTML page of a run folder: map, picks, alpha curve, sites, Dice, predictions."""
    click.echo(f"report: {api.report(run, out)}")


@main.command("export")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--method", default="xssr", show_default=True, help="Whose selection in RUN.")
@click.option("--to", "to", type=click.Choice(["label-studio", "cvat", "nnunet"]), required=True)
@click.option("--out", required=True, type=click.Path(),
              help="label-studio: the task JSON to write; cvat: the list of images for the task; nnunet: the "
                   "nnUNet_raw folder to write the dataset into.")
@click.option("--image-url-prefix", default="", help="label-studio: put before each image path, e.g. /data/local-files/?d=")
@click.option("--model", type=click.Path(dir_okay=False),
              help="label-studio, cvat: an xssr unet.pt whose predictions become pre-annotations.")
@click.option("--round", "round_", type=click.Path(file_okay=False), help="nnunet: the round folder whose masks to export.")
@click.option("--dataset-id", type=int, default=501, show_default=True, help="nnunet: DatasetXXX number.")
@click.option("--name", default="xssr", show_default=True, help="nnunet: the dataset's name.")
@click.option("--label", default="foreground", show_default=True, help="The structure's name (lung, optic disc, ...).")
@_errors_to_exit
def export(run, method, to, out, image_url_prefix, model, round_, dataset_id, name, label) -> None:
    """Hand a selection to Label Studio (tasks, optionally pre-annotated) or to nnU-Net (after import)."""
    if to == "label-studio":
        path = api.export_selection(run, method, to, out, image_url_prefix=image_url_prefix, model=model, label=label)
        click.echo(f"tasks: {path}\nlabelling config: {path.with_suffix('.labeling.xml')}")
    elif to == "cvat":
        path = api.export_selection(run, method, to, out, model=model, label=label)
        click.echo(f"images for the CVAT task: {path}" + (f"\npre-annotations to upload (Segmentation mask 1.1): "
                                                         f"{path.with_suffix('.masks.zip')}" if model else ""))
    else:
        path = api.export_selection(run, method, to, out, round=round_, dataset_id=dataset_id, name=name, label=label)
        click.echo(f"nnU-Net dataset: {path}")


@main.command("import")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--method", default="xssr", show_default=True, help="Whose selection in RUN the masks belong to.")
@click.option("--from", "source", type=click.Choice(["label-studio", "cvat", "folder"]), required=True)
@click.argument("path", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The round folder to write.")
@click.option("--allow-empty", is_flag=True, help="Accept empty masks (images without the structure).")
@click.option("--label", help="label-studio: take only this label's regions.")
@_errors_to_exit
def import_(run, method, source, path, out, allow_empty, label) -> None:
    """Bring finished masks back: checked against the selection, written as a round's manifest."""
    manifest = api.import_masks(run, method, source, path, out, allow_empty=allow_empty, label=label)
    click.echo(f"round manifest: {manifest}\ntrain on it with: xssr train ... --pool '{manifest}#paths=any'")


@main.command()
@out_option
@click.option("--seed", type=int, default=0, show_default=True)
@no_progress_option
@_errors_to_exit
def demo(out, seed, no_progress) -> None:
    """Whole pipeline on a small built-in SYNTHETIC two-domain set (no real data needed)."""
    click.echo("Running on SYNTHETIC demo data (generated, not medical images).")
    result = api.demo(out, seed=seed, progress=_show_progress(no_progress))
    click.echo(result.table())
    _echo_selections(result)
    click.echo(f"results in {result.out} (synthetic data)")
    if result.report:
        click.echo(f"report: {result.report}")


@main.group()
def bench() -> None:
    """Benchmarks: resumable multi-seed suites, their tables, and selection cost."""


def _suite_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    return Path("benchmarks") / "suites" / f"{name}.toml"


def _default_folder(suite: str, given: str | None, project: str, beside: str) -> str:
    """A suite in a checkout's benchmarks/suites keeps its results in benchmarks/<project> (the
    committed folder); a suite file of the user's own keeps them in <its folder>/<beside>, never
    in the project's benchmarks."""
    if given:
        return given
    folder = _suite_path(suite).resolve().parent
    chosen = folder.parent / project if folder.name == "suites" and folder.parent.name == "benchmarks" \
        else folder / beside  # benchmarks/suites of a checkout, or a suite file of the user's own
    # Relative to where the command runs when inside it: run records keep no machine's paths.
    return os.path.relpath(chosen) if chosen.is_relative_to(Path.cwd()) else str(chosen)


results_option = click.option("--results", type=click.Path(file_okay=False),
                              help="Where run results are cached. Default: benchmarks/results for the project's "
                                   "suites (committed); SUITE_FOLDER/results for a suite file of your own.")


def _parse_shard(ctx, param, value):
    """--shard I/N -> Shard, or a usage error that names the option."""
    if value is None:
        return None
    from xssr.bench.runner import Shard

    try:
        return Shard.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


@bench.command("run")
@click.argument("suite")
@results_option
@click.option("--work", type=click.Path(file_okay=False),
              help="Scratch space for models and embeddings. Default: benchmarks/cache (not committed) for the "
                   "project's suites, SUITE_FOLDER/cache for your own.")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets of the suite.")
@click.option("--method", "methods", multiple=True, help="Only these methods.")
@click.option("--table", "tables", multiple=True, help="Only runs of these experiments (e.g. T2).")
@click.option("--variant", "variants", multiple=True, help="Only runs of these variants ('' = plain runs).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Only these seeds.")
@click.option("--max-runs", type=int, help="Stop after this many new runs.")
@click.option("--shard", metavar="I/N", callback=_parse_shard,
              help="Run only part I of N of the (filtered) runs, e.g. 2/4: one job of a job array. Runs that "
                   "share an MAE stay in one part; the parts share only the results folder.")
@_errors_to_exit
def bench_run(suite, results, work, datasets, methods, tables, variants, seeds, max_runs, shard) -> None:
    """Run the unfinished runs of SUITE (a name in benchmarks/suites or a .toml path)."""
    from xssr.bench import load_suite, run_suite

    results = _default_folder(suite, results, "results", "results")
    work = _default_folder(suite, work, "cache", "cache")

    loaded = load_suite(_suite_path(suite))
    chosen = {spec.key for spec in loaded.filter(tables=tables, datasets=datasets, methods=methods,
                                                 variants=variants, seeds=seeds)}
    command = " ".join(["xssr bench run", suite] + [f"--results {results}", f"--work {work}"]
                       + [f"--dataset {d}" for d in datasets] + [f"--method {m}" for m in methods]
                       + [f"--table {t}" for t in tables] + [f"--variant {v}" for v in variants]
                       + [f"--seed {s}" for s in seeds] + ([f"--shard {shard}"] if shard else []))
    counts = run_suite(loaded, results, work, only=lambda spec: spec.key in chosen, tables=tuple(tables),
                       max_runs=max_runs, command=command, shard=shard)
    part = f" (shard {shard})" if shard else ""
    click.echo(f"{loaded.name}{part}: {counts['ran']} run now, {counts['finished_before']} were already finished, "
               f"{counts['total']} in total")


@bench.command("report")
@click.argument("suite")
@results_option
@click.option("--out", type=click.Path(file_okay=False), help="Default: RESULTS/SUITE/report.")
@click.option("--docs", type=click.Path(dir_okay=False), help="Also replace this suite's generated block in this Markdown file.")
@_errors_to_exit
def bench_report(suite, results, out, docs) -> None:
    """Tables (Markdown + CSV) and plots of SUITE's finished runs."""
    from xssr.bench import load_suite, render_suite
    from xssr.bench.report import update_docs

    loaded = load_suite(_suite_path(suite))
    results = _default_folder(suite, results, "results", "results")
    out = out or Path(results) / loaded.name / "report"
    text = render_suite(loaded, results, out)
    if docs:
        update_docs(docs, loaded.name, text, figures=out)
    click.echo(text)


@bench.command("choose")
@click.argument("suite")
@results_option
@click.option("--table", default="A", show_default=True, help="The experiments that compare the recipes.")
@click.option("--ingredients", default="B", show_default=True,
              help="The experiments that remove one ingredient each from the chosen recipe (skipped when the "
                   "suite has no such table).")
@click.option("--docs", type=click.Path(dir_okay=False), help="Also replace the choice block in this Markdown file.")
@click.option("--write-default", is_flag=True,
              help="Write the verdict as the choices of --recipe auto (xssr/train/recipes/default.json); "
                   "refused until every choice and ingredient has one.")
@_errors_to_exit
def bench_choose(suite, results, table, ingredients, docs, write_default) -> None:
    """Apply the rules of SUITE (recipes-val) to its finished validation runs: the default recipe for
    teams with source masks, with only a source model, and with neither (rule 1), then which shared
    ingredients the default keeps (rule 2)."""
    from xssr.bench import load_suite
    from xssr.bench.choose import ingredient_summary, summary, write_default_choices
    from xssr.bench.report import load_runs, update_docs

    loaded = load_suite(_suite_path(suite))
    results = _default_folder(suite, results, "results", "results")
    runs = load_runs(results, loaded)
    text, choices = summary(runs, loaded, table)
    command = f"xssr bench choose {suite} --table {table}"
    verdicts = None
    if ingredients in {e.table for e in loaded.experiments}:
        ingredient_text, verdicts = ingredient_summary(runs, loaded, ingredients, table, choices)
        text += f"\nIngredients (table {ingredients}, rule 2):\n\n{ingredient_text}"
        command += f" --ingredients {ingredients}"
    if docs:
        update_docs(docs, f"choice-{loaded.name}", text, command=command)
    click.echo(text)
    if write_default:
        written = write_default_choices(choices, loaded, table, text, ingredients=verdicts,
                                        ingredients_table=ingredients)
        click.echo(f"--recipe auto now reads: {written}")


@bench.command("advice")
@click.argument("suite")
@results_option
@click.option("--work", type=click.Path(file_okay=False), help="Scratch space (default as for bench run).")
@click.option("--table", "tables", multiple=True, default=("T5",), show_default=True,
              help="Experiments whose budget sweeps to check against.")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets.")
@click.option("--method", "methods", multiple=True, default=("random",), show_default=True)
@click.option("--budget", "budgets", multiple=True, type=float, help="Only advise at these budgets.")
@click.option("--seed", "seeds", multiple=True, type=int, help="Only these seeds.")
@click.option("--set", "settings", multiple=True, metavar="SECTION.NAME=VALUE",
              help="Change a training setting of the advice only, e.g. train.precision=fp32 where the committed "
                   "runs used bf16 on hardware that has it; recorded in each row.")
@click.option("--docs", type=click.Path(dir_okay=False), help="Also replace the advice block in this Markdown file.")
@_errors_to_exit
def bench_advice(suite, results, work, tables, datasets, methods, budgets, seeds, settings, docs) -> None:
    """Check `xssr advise` against SUITE's committed budget sweep: at each budget, the learning curve
    on the run's own picks predicts the gain of the next budget, which the next run measured."""
    from xssr.bench import load_suite
    from xssr.bench.advice import advice_table, check_advice
    from xssr.bench.report import update_docs

    loaded = load_suite(_suite_path(suite))
    results = _default_folder(suite, results, "results", "results")
    work = _default_folder(suite, work, "cache", "cache")
    specs = [s for s in loaded.filter(tables=tables, datasets=datasets, methods=methods, seeds=seeds)
             if not budgets or s.budget in budgets]
    overrides = {}
    for item in settings:
        if "=" not in item:
            raise click.UsageError(f"--set expects SECTION.NAME=VALUE, got {item!r}.")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    rows = check_advice(loaded, specs, Path(results), Path(work), overrides=overrides)
    text = advice_table(rows)
    if docs:
        update_docs(docs, f"advice-{loaded.name}", text,
                    command=f"xssr bench advice {suite} " + " ".join(
                        [f"--table {t}" for t in tables] + [f"--method {m}" for m in methods]
                        + [f"--budget {b:g}" for b in budgets] + [f"--set {s}" for s in settings]))
    click.echo(text)


@bench.command("cost")
@click.option("--pool-sizes", default="1000,10000,100000", show_default=True)
@click.option("--methods", "method_names", default="xssr,coreset,typiclust,probcover", show_default=True)
@click.option("--backend", type=click.Choice(["auto", "numpy", "faiss", "faiss-ivf"]), default="auto", show_default=True,
              help="Neighbour search (faiss-ivf: approximate; its rows also measure recall).")
@click.option("--code", type=click.Path(exists=True, file_okay=False),
              help="Measure another checkout's selection code instead: its src folder (e.g. of a git worktree of an "
                   "older commit), for before/after rows on the same machine. Use its own --out.")
@click.option("--out", default="benchmarks/results/cost/selection.json", show_default=True,
              type=click.Path(dir_okay=False))
@click.option("--docs", type=click.Path(dir_okay=False), help="Also replace the cost block in this Markdown file.")
@click.option("--with", "others", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Also show the rows of these result files (e.g. --code measurements) in the table.")
@_errors_to_exit
def bench_cost(pool_sizes, method_names, backend, code, out, docs, others) -> None:
    """Selection seconds and peak memory against pool size (synthetic 256-d embeddings)."""
    from xssr.bench.cost import run_selection_cost
    from xssr.bench.report import render_selection_cost, update_docs

    rows = run_selection_cost(out, [int(x) for x in pool_sizes.split(",")], method_names.split(","),
                              backend=backend, code=code, on_row=lambda row: click.echo(json.dumps(row)))
    from xssr.report.io import read_json

    rows = rows + [row for other in others for row in read_json(other)]

    text = render_selection_cost(rows)
    if docs:
        update_docs(docs, "cost", text, command=" ".join(["xssr bench cost"] + [f"--with {o}" for o in others]))
    click.echo(text)


@bench.command("peers")
@click.option("--pool-sizes", default="10000,20000", show_default=True)
@click.option("--dim", type=int, default=128, show_default=True, help="Embedding dimensions.")
@click.option("--picks", type=int, default=500, show_default=True, help="Images each contender selects.")
@click.option("--contenders", default="all", show_default=True,
              help="Comma list of library:algorithm names (xssr:typiclust, skactiveml:probcover, naive:xssr, ...).")
@click.option("--out", default="benchmarks/results/cost/peers.json", show_default=True,
              type=click.Path(dir_okay=False))
@click.option("--docs", type=click.Path(dir_okay=False), help="Also replace the peers block in this Markdown file.")
@_errors_to_exit
def bench_peers(pool_sizes, dim, picks, contenders, out, docs) -> None:
    """xssr's TypiClust, ProbCover and XSSR beside scikit-activeml's and a naive numpy XSSR: seconds,
    peak memory and agreement of the picks, on the same synthetic embeddings (needs the 'peers' extra)."""
    from xssr.bench.peers import CONTENDERS, run_peers
    from xssr.bench.report import render_peers, update_docs

    try:
        sizes = [int(x) for x in pool_sizes.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected whole numbers separated by commas, got {pool_sizes!r}",
                                 param_hint="'--pool-sizes'") from None
    chosen = CONTENDERS if contenders == "all" else [c.strip() for c in contenders.split(",") if c.strip()]
    rows = run_peers(out, sizes, chosen, dim=dim, picks=picks,
                     on_row=lambda row: click.echo(json.dumps({k: v for k, v in row.items() if k != "indices"})))
    text = render_peers(rows)
    if docs:
        update_docs(docs, "peers", text, command="xssr bench peers")
    click.echo(text)


if __name__ == "__main__":
    main()
