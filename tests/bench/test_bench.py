"""The benchmark harness on tiny synthetic data: NIfTI volumes in the suite format, caching, report."""

import json

import nibabel as nib
import numpy as np
import pytest

from xssr.bench import load_suite, render_suite, run_suite
from xssr.bench.runner import result_path
from xssr.data import make_synthetic_dataset

TINY_PROTOCOL = """
[protocol]
"train.recipe" = "supervised"
"data.image_size" = 32
"pretrain.epochs" = 1
"pretrain.widths" = [4, 8, 8, 16]
"pretrain.patch_size" = 8
"train.steps" = 3
"train.channels" = [4, 8]
"train.num_res_units" = 0
"select.k" = 3
device = "cpu"
"""


def _volumes(folder, n, seed, bright):
    """Write n small 3-D NIfTI volumes (32x32x4) with a box 'organ' and its mask."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        mask = np.zeros((32, 32, 4), np.uint8)
        r, c = rng.integers(4, 18, 2)
        mask[r : r + 10, c : c + 10, :] = 1
        image = rng.normal(0, 0.2, mask.shape).astype(np.float32) + bright * mask + 0.01 * i
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / "images" / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / "masks" / f"case{i}.nii.gz")
    return folder


def _suite_file(tmp_path, datasets_toml, experiments_toml, seeds="[0, 1]"):
    path = tmp_path / "suite.toml"
    path.write_text(f'name = "tiny"\ndescription = "test"\nseeds = {seeds}\n' + TINY_PROTOCOL
                    + datasets_toml + experiments_toml)
    return path


def _synthetic_datasets(folder) -> str:
    m = folder / "manifest.csv"
    return (f'[[datasets]]\nname = "syn"\nsource = "{m}#site=synthetic_source"\n'
            f'pool = "{m}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c"\n'
            f'test = "{m}#split=test"\n')


def test_volume_suite_runs_caches_and_reports(tmp_path):
    source = _volumes(tmp_path / "src", 2, 0, bright=1.0)
    pool = _volumes(tmp_path / "pool", 3, 1, bright=-1.0)
    test = _volumes(tmp_path / "test", 1, 2, bright=-1.0)
    datasets = f'[[datasets]]\nname = "vol"\nsource = "{source}"\npool = "{pool}"\ntest = "{test}"\n'
    experiments = ('[[experiments]]\ntable = "T2"\nmethods = ["full", "xssr", "random"]\nbudgets = [3]\n'
                   '[[experiments]]\ntable = "T5"\nmethods = ["xssr", "random"]\nbudgets = [3, 6]\n')
    suite = load_suite(_suite_file(tmp_path, datasets, experiments))
    assert len(suite.runs()) == 2 * (1 + 2 + 2)  # full once; the T2 budget-3 runs are shared with T5
    results, work = tmp_path / "results", tmp_path / "work"
    counts = run_suite(suite, results, work)
    assert counts == {"total": 10, "finished_before": 0, "ran": 10}

    record = json.loads(result_path(results, suite.runs()[1]).read_text())
    assert record["key"] == suite.runs()[1].key
    assert record["dice"]["overall"]["n"] == 4  # one test volume of 4 slices
    assert all(s["slice_index"] is not None for s in record["selected"])
    assert record["timings"]["unet_steps"] == 3
    full = [json.loads(result_path(results, s).read_text()) for s in suite.runs() if s.method == "full"]
    assert all(r["n_train"] == 12 for r in full)  # 3 volumes x 4 slices

    # A run file from another protocol (same name, other key) is left out of the tables.
    stale = result_path(results, suite.runs()[0])
    kept = stale.read_text()
    stale.write_text(kept.replace(f'"key": "{suite.runs()[0].key}"', '"key": "old-protocol"'))
    from xssr.bench.report import load_runs

    assert len(load_runs(results, suite)) == 9
    stale.write_text(kept)

    # Resuming finds every run finished and repeats nothing.
    assert run_suite(suite, results, work)["ran"] == 0
    progress = json.loads((results / "tiny" / "progress.json").read_text())
    assert progress["finished"] == progress["total"] == 10

    text = render_suite(suite, results, tmp_path / "report")
    assert "### T1" in text and "### T2" in text and "### T5" in text
    assert "Selection diagnostics" in text and "Measured cost" in text
    diagnostics = (tmp_path / "report" / "diagnostics.csv").read_text().splitlines()
    assert len(diagnostics) == 1 + 2  # one row per (dataset, budget): budgets 3 and 6
    xssr_run = next(s for s in suite.runs() if s.method == "xssr")
    xssr_record = json.loads(result_path(results, xssr_run).read_text())
    assert xssr_record["timings"]["embed_images_per_second"] > 0
    assert xssr_record["embedding"]["domain_auc"] > 0.5  # the tiny source is bright, the target dark
    assert xssr_record["selection"]["coverage"] > 0 and xssr_record["selection"]["alpha"] is not None
    assert (tmp_path / "report" / "T2.csv").exists() and (tmp_path / "report" / "T5.png").exists()
    t2 = (tmp_path / "report" / "T2.csv").read_text().splitlines()
    assert t2[0].startswith("dataset,method,seeds,n_train,dice,pct_full,delta_vs_random")
    xssr_row = next(line for line in t2 if ",xssr," in line)
    assert "[" in xssr_row  # a paired difference with its interval (two seeds)


def test_changed_setting_reruns_only_affected_runs(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "d", n_source=6, n_pool=8, n_test=3, size=32)
    datasets = _synthetic_datasets(folder)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random", "coreset"]\nbudgets = [2]\n'
    path = _suite_file(tmp_path, datasets, experiments, seeds="[0]")
    results, work = tmp_path / "results", tmp_path / "work"
    assert run_suite(load_suite(path), results, work)["ran"] == 2
    path.write_text(path.read_text().replace('"train.steps" = 3', '"train.steps" = 4'))
    changed = load_suite(path)
    counts = run_suite(changed, results, work, only=lambda s: s.method == "random")
    assert counts == {"total": 1, "finished_before": 0, "ran": 1}


def test_changed_input_image_reruns_its_runs(tmp_path):
    from PIL import Image

    folder = make_synthetic_dataset(tmp_path / "d", n_source=4, n_pool=4, n_test=2, size=32)
    datasets = _synthetic_datasets(folder)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [2]\n'
    suite = load_suite(_suite_file(tmp_path, datasets, experiments, seeds="[0]"))
    results, work = tmp_path / "results", tmp_path / "work"
    assert run_suite(suite, results, work)["ran"] == 1
    record = json.loads(result_path(results, suite.runs()[0]).read_text())
    assert len(record["inputs_sha1"]) > 8
    assert run_suite(suite, results, work)["ran"] == 0

    test_image = folder / "images" / "test_0000.png"
    pixels = np.asarray(Image.open(test_image))
    Image.fromarray(255 - pixels).save(test_image)  # same name and key, other content
    assert run_suite(suite, results, work)["ran"] == 1
    rerun = json.loads(result_path(results, suite.runs()[0]).read_text())
    assert rerun["inputs_sha1"] != record["inputs_sha1"]


def test_cli_records_the_command_whatever_the_global_flags(tmp_path):
    from click.testing import CliRunner

    from xssr.cli import main

    folder = make_synthetic_dataset(tmp_path / "d", n_source=4, n_pool=4, n_test=2, size=32)
    datasets = _synthetic_datasets(folder)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [2]\n'
    path = _suite_file(tmp_path, datasets, experiments, seeds="[0]")
    results = tmp_path / "results"
    outcome = CliRunner().invoke(main, ["-v", "bench", "run", str(path), "--results", str(results),
                                        "--work", str(tmp_path / "work"), "--table", "T2"])
    assert outcome.exit_code == 0, outcome.output
    record = json.loads(next((results / "tiny" / "runs").glob("*.json")).read_text())
    assert record["command"] == (f"xssr bench run {path} --results {results} --work {tmp_path / 'work'} "
                                 "--table T2")


def test_bad_suite_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nseeds = [0]\n[protocol]\n"train.recipe" = "supervised"\n[[datasets]]\nname = "a"\n'
                    'source = "s"\npool = "p"\ntest = "t"\n[[experiments]]\ntable = "T2"\nmethods = ["magic"]\n')
    with pytest.raises(ValueError, match=r"bad.toml.*magic"):
        load_suite(path)
    path.write_text('name = "x"\nseeds = [0]\n[protocol]\n"train.recipe" = "supervised"\n"train.bogus" = 1\n[[datasets]]\nname = "a"\n'
                    'source = "s"\npool = "p"\ntest = "t"\n[[experiments]]\ntable = "T2"\nmethods = ["random"]\n')
    with pytest.raises(ValueError, match="train.bogus"):
        load_suite(path)


def test_shipped_suites_load():
    from pathlib import Path

    suites = sorted(Path(__file__).parents[2].joinpath("benchmarks", "suites").glob("*.toml"))
    assert {p.stem for p in suites} >= {"cxr", "cxr-multisite", "fundus", "schedule"}
    for path in suites:
        suite = load_suite(path)
        assert len(suite.seeds) >= 3 and suite.runs()


def test_docs_block_is_replaced_not_duplicated(tmp_path):
    from xssr.bench.report import update_docs

    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\nprose stays\n")
    update_docs(doc, "cxr", "table v1")
    update_docs(doc, "fundus", "other")
    update_docs(doc, "cxr", "table v2")
    text = doc.read_text()
    assert text.count("BEGIN generated: cxr") == 1 and "table v2" in text and "table v1" not in text
    assert "prose stays" in text and "other" in text


def test_selection_cost_probe_reports_time_and_memory():
    from xssr.bench.cost import selection_cost

    row = selection_cost(300, "xssr", dim=16)
    assert row["n_selected"] == 15 and row["seconds"] > 0 and row["peak_rss_mb"] >= row["data_rss_mb"] > 0
    assert row["environment"]["cpus"] >= 1  # the machine is part of the measurement
    assert row["neighbour_seconds"] <= row["seconds"] and row["coverage"] > 0
    assert "error" in selection_cost(300, "no-such-method", dim=16)


def test_selection_cost_of_the_approximate_search_measures_its_recall():
    pytest.importorskip("faiss")
    from xssr.bench.cost import selection_cost

    row = selection_cost(2000, "xssr", dim=16, backend="faiss-ivf")
    assert row["backend"] == "faiss-ivf" and 0.5 < row["knn_recall"] <= 1.0


def test_arithmetic_limit_counts_searches_and_one_pool_read_per_pick():
    from xssr.bench.cost import arithmetic_limit

    rates = {"gemm_gflops": 100.0, "read_gbps": 10.0}
    bound = arithmetic_limit(100_000, 100_000, 256, 5000, rates)
    assert bound["search_seconds"] == pytest.approx(2 * 1e5 * 2e5 * 256 / 100e9)
    assert bound["greedy_seconds"] == pytest.approx(5000 * 1e5 * 256 * 8 / 10e9)


def test_bench_cost_writes_its_docs_block(tmp_path):
    from click.testing import CliRunner

    from xssr.cli import main

    docs = tmp_path / "bench.md"
    docs.write_text("# Benchmarks\n\nprose\n")
    args = ["bench", "cost", "--pool-sizes", "200", "--methods", "coreset", "--out", str(tmp_path / "c.json"),
            "--docs", str(docs)]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nprose\n") and "<!-- BEGIN generated: cost -->" in text
    assert "`xssr bench cost --docs" in text and "| coreset | auto | this | 200 |" in text
    assert CliRunner().invoke(main, args).exit_code == 0  # cached point: the block is replaced, not added
    assert docs.read_text().count("BEGIN generated: cost") == 1


def _fake_run(method, seed, picks, curve=None, dice=0.8):
    return {"dataset": "d", "method": method, "budget": 0.05, "variant": "", "seed": seed,
            "dice": {"overall": {"mean": dice}}, "embedding": {"domain_auc": 0.9},
            "selected": [{"case_id": c, "slice_index": None} for c in picks],
            "selection": {"alpha": 0.0, "coverage": 1.0 + dice, "alpha_curve": curve or []}}


def test_diagnostics_explain_the_chosen_alpha():
    from xssr.bench.report import diagnostics_table

    runs = [
        _fake_run("xssr", 0, ["a", "b"], [[0.0, 2.0], [0.5, 3.0], [1.0, 4.0]]),
        _fake_run("xssr", 1, ["a", "c"], [[0.0, 2.0], [0.5, 1.5], [1.0, 1.0]]),
        _fake_run("xssr-no-novelty", 0, ["b", "a"]),  # same set, other order
        _fake_run("xssr-no-novelty", 1, ["a", "d"]),
        _fake_run("random", 0, ["x", "y"]),
    ]
    (row,) = diagnostics_table(runs)
    assert row["coverage_max_over_min_alpha"] == "1.25 (1/2 > 1)"  # median of 2.0 and 0.5
    assert row["same_picks_as_no_novelty"] == "1/2"
    assert row["xssr_alphas"] == "0, 0"
    assert row["spearman_coverage_vs_dice"] == "–"  # 2-3 selections per seed rank nothing


def test_resumed_random_run_still_gets_coverage_and_progress_counts_the_whole_suite(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "d", n_source=4, n_pool=6, n_test=2, size=32)
    experiments = ('[[experiments]]\ntable = "T2"\nmethods = ["xssr", "random"]\nbudgets = [2]\n'
                   '[[experiments]]\ntable = "T5"\nmethods = ["random"]\nbudgets = [3]\n')
    suite = load_suite(_suite_file(tmp_path, _synthetic_datasets(folder), experiments, seeds="[0]"))
    results, work = tmp_path / "results", tmp_path / "work"
    assert run_suite(suite, results, work, tables=("T2",), max_runs=1)["ran"] == 1  # xssr only
    counts = run_suite(suite, results, work, tables=("T2",))  # a new sweep, as after an interruption
    assert counts == {"total": 2, "finished_before": 1, "ran": 1}
    random_run = next(s for s in suite.runs() if s.method == "random" and s.budget == 2)
    record = json.loads(result_path(results, random_run).read_text())
    assert record["selection"]["coverage"] is not None  # from the embeddings the xssr run left
    progress = json.loads((results / "tiny" / "progress.json").read_text())
    assert progress["total"] == 3 and progress["finished"] == 2  # the T5 run is still to do


@pytest.mark.parametrize("experiments, message", [
    ('[[experiments]]\ntable = "V"\nmethods = ["random"]\n[experiments.overrides]\n"train.steps" = 5\n',
     "need a 'variant'"),
    ('[[experiments]]\ntable = "V"\nmethods = ["random"]\nvariant = "a"\n[experiments.overrides]\n'
     '"train.steps" = 5\n[[experiments]]\ntable = "W"\nmethods = ["random"]\nvariant = "a"\n'
     '[experiments.overrides]\n"train.steps" = 6\n', "other overrides"),
])
def test_suite_rejects_overrides_that_would_merge_runs(tmp_path, experiments, message):
    folder = make_synthetic_dataset(tmp_path / "d", n_source=2, n_pool=2, n_test=1, size=32)
    path = _suite_file(tmp_path, _synthetic_datasets(folder), experiments)
    with pytest.raises(ValueError, match=message):
        load_suite(path)


@pytest.mark.parametrize("option, value, known", [("--table", "T9", "T2"), ("--dataset", "nope", "syn"),
                                                  ("--method", "kmeans", "random")])
def test_unknown_table_is_an_error_that_lists_the_known_ones(tmp_path, option, value, known):
    from click.testing import CliRunner

    from xssr.cli import main

    folder = make_synthetic_dataset(tmp_path / "d", n_source=2, n_pool=2, n_test=1, size=32)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [1]\n'
    path = _suite_file(tmp_path, _synthetic_datasets(folder), experiments)
    outcome = CliRunner().invoke(main, ["bench", "run", str(path), option, value, "--results", str(tmp_path / "r")])
    assert outcome.exit_code == 2 and f"{value} not in suite 'tiny'; it has: {known}" in outcome.output


def test_selection_cost_reports_a_timeout_as_an_error_row():
    from xssr.bench.cost import selection_cost

    row = selection_cost(1000, "xssr", timeout=0.01)
    assert row["method"] == "xssr" and "no result within" in row["error"][0]


def test_selection_only_variant_is_paired_with_the_plain_random_arm():
    from xssr.bench.report import variant_table
    from xssr.bench.suite import Experiment

    runs = [{**_fake_run("xssr", s, ["a"], dice=0.7 + 0.01 * s), "variant": "alpha0.5",
             "timings": {"unet_steps": 10, "unet_train_seconds": 1.0}} for s in range(3)]
    runs += [_fake_run("random", s, ["b"], dice=0.6 + 0.01 * s) for s in range(3)]
    fixed_alpha = Experiment("A", ("xssr",), (0.05,), ("d",), "alpha0.5", (("select.alpha", 0.5),))
    (row,) = variant_table(runs, [fixed_alpha])
    assert row["delta_vs_random"].startswith("+0.1000 [") and row["delta_vs_random"].endswith("(n=3)")
    # Another embedder does not change what random picks or how it trains either.
    embedder = Experiment("A", ("xssr",), (0.05,), ("d",), "alpha0.5", (("embed.model", "source-unet"),))
    (row,) = variant_table(runs, [embedder])
    assert row["delta_vs_random"].endswith("(n=3)")
    # A variant that trains differently is not comparable with the plain random arm.
    other_training = Experiment("A", ("xssr",), (0.05,), ("d",), "alpha0.5", (("train.steps", 10),))
    (row,) = variant_table(runs, [other_training])
    assert row["delta_vs_random"] == "–"


def test_every_table_of_a_dataset_with_a_source_only_arm_is_compared_with_it_at_any_budget():
    from xssr.bench.report import variant_table
    from xssr.bench.suite import Experiment

    timings = {"unet_steps": 10, "unet_train_seconds": 1.0}
    source_only = [{**_fake_run("random", s, ["b"], dice=0.80 + 0.01 * s), "variant": "source-only",
                    "timings": timings} for s in range(3)]
    bigger = [{**_fake_run("random", s, ["a"], dice=0.85 + 0.01 * s), "variant": "fine-tune", "budget": 0.2,
               "timings": timings} for s in range(3)]
    at_20_percent = Experiment("R3", ("random",), (0.2,), ("d",), "fine-tune", (("train.recipe", "fine-tune"),))
    # the source-only arm sits in another table (R1) at 5 %: the suite names its dataset
    (row,) = variant_table(source_only + bigger, [at_20_percent], {"d"})
    assert row["delta_vs_source_only"].startswith("+0.0500 [") and row["delta_vs_source_only"].endswith("(n=3)")
    # a dataset the suite trains no source-only model for gets no such column
    (row,) = variant_table(source_only + bigger, [at_20_percent])
    assert "delta_vs_source_only" not in row


def test_budget_plot_takes_image_counts_and_is_written_atomically(tmp_path):
    from xssr.bench.report import _plot_budgets

    runs = [{**_fake_run(m, s, ["a"], dice=0.5 + 0.1 * s), "budget": b} for m in ("xssr", "random")
            for s in range(2) for b in (3, 6)]
    path = tmp_path / "T5.png"
    _plot_budgets(runs, ["d"], ["xssr", "random"], [3, 6], path)  # counts, not shares of the pool
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary file left behind


def test_docs_block_links_report_figures_relative_to_the_docs_file(tmp_path):
    from xssr.bench.report import update_docs

    docs = tmp_path / "docs" / "b.md"
    update_docs(docs, "cxr", "### T5\n\n![T5: Dice](T5.png)", figures=tmp_path / "results" / "cxr" / "report")
    assert "![T5: Dice](../results/cxr/report/T5.png)" in docs.read_text()


def _site_run(method, seed, per_site, picked):
    return {"dataset": "ms", "method": method, "budget": 1.0 if method == "full" else 0.05, "variant": "",
            "seed": seed, "dice": {"per_site": {s: {"mean": v} for s, v in per_site.items()}},
            "selected_sites": picked}


def test_site_table_gives_each_site_its_share_of_full_data_and_paired_delta():
    from xssr.bench.report import site_table

    runs = [
        _site_run("full", 0, {"a": 0.9, "b": 0.8}, {"a": 6, "b": 2}),
        _site_run("full", 1, {"a": 0.9, "b": 0.8}, {"a": 6, "b": 2}),
        _site_run("xssr", 0, {"a": 0.81, "b": 0.4}, {"a": 1}),
        _site_run("xssr", 1, {"a": 0.81, "b": 0.6}, {"a": 1}),
        _site_run("random", 0, {"a": 0.72, "b": 0.5}, {"b": 1}),
        _site_run("random", 1, {"a": 0.72, "b": 0.5}, {"b": 1}),
    ]
    rows = {(r["method"], r["site"]): r for r in site_table(runs, "ms", ["full", "xssr", "random"], 0.05)}
    assert rows["xssr", "a"]["pct_full"] == "90.0%" and rows["xssr", "b"]["pct_full"] == "62.5%"
    assert rows["full", "b"]["pct_full"] == "100.0%" and rows["random", "a"]["pct_full"] == "80.0%"
    assert rows["xssr", "a"]["delta_vs_random"].startswith("+0.0900")
    assert rows["xssr", "b"]["picked_from_site"] == "0.0" and rows["random", "b"]["picked_from_site"] == "1.0"
    no_full = site_table([r for r in runs if r["method"] != "full"], "ms", ["xssr"], 0.05)
    assert {r["pct_full"] for r in no_full} == {"–"}


def test_a_recipe_suite_records_its_recipe_compares_with_plain_and_filters_by_variant_and_seed(tmp_path):
    folder = make_synthetic_dataset(tmp_path / "d", n_source=6, n_pool=8, n_test=3, size=32)
    datasets = _synthetic_datasets(folder) + 'settings = { "train.keep_components" = 1 }\n'
    experiments = ('[[experiments]]\ntable = "R"\nvariant = "plain"\nmethods = ["random"]\nbudgets = [2]\n'
                   'overrides = { "train.keep_components" = 0 }\n'
                   '[[experiments]]\ntable = "R"\nvariant = "fine-tune"\nmethods = ["random"]\nbudgets = [2]\n'
                   'overrides = { "train.recipe" = "fine-tune" }\n'
                   '[[experiments]]\ntable = "R"\nvariant = "source-only"\nmethods = ["random"]\nbudgets = [2]\n'
                   'overrides = { "train.recipe" = "source-only" }\n')
    suite = load_suite(_suite_file(tmp_path, datasets, experiments))
    specs = {s.name: s for s in suite.runs()}
    assert specs["syn__random__b2__fine-tune__s0"].config.train.keep_components == 1  # the dataset's setting
    assert specs["syn__random__b2__plain__s0"].config.train.keep_components == 0  # the experiment's wins
    assert [s.name for s in suite.filter(variants=["fine-tune"], seeds=[1])] == ["syn__random__b2__fine-tune__s1"]
    with pytest.raises(ValueError, match="--seed: 7 not in suite"):
        suite.filter(seeds=[7])
    results, work = tmp_path / "results", tmp_path / "work"
    assert run_suite(suite, results, work)["ran"] == 6
    record = json.loads(result_path(results, specs["syn__random__b2__fine-tune__s0"]).read_text())
    assert record["recipe"] == "fine-tune" and record["timings"]["source_train_seconds"] > 0
    assert record["timings"]["unet_precision"] in ("bf16", "fp32")
    # one source U-Net per seed, shared by nothing else here; one U-Net per run
    assert len(list((work / "store" / "source-train").glob("*/unet.pt"))) == 2
    rows = (tmp_path / "report" / "R.csv")
    render_suite(suite, results, tmp_path / "report")
    lines = rows.read_text().splitlines()
    assert "delta_vs_plain" in lines[0] and "source_train_seconds" in lines[0]
    fine_tune = next(line for line in lines if ",fine-tune," in line)
    assert fine_tune.count("(n=2)") == 2  # paired with plain (same selection and seeds) and with source-only
    assert "delta_vs_source_only" in lines[0]


def test_a_users_own_suite_never_writes_into_the_projects_benchmark_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from xssr.cli import main

    folder = make_synthetic_dataset(tmp_path / "d", n_source=2, n_pool=4, n_test=1, size=32)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [1]\n'
    mine = tmp_path / "mine"
    mine.mkdir()
    path = _suite_file(mine, _synthetic_datasets(folder), experiments, seeds="[0]")
    project = tmp_path / "project"
    (project / "benchmarks").mkdir(parents=True)
    monkeypatch.chdir(project)  # as if run from the project's checkout
    outcome = CliRunner().invoke(main, ["bench", "run", str(path)])
    assert outcome.exit_code == 0, outcome.output
    assert (mine / "results" / "tiny" / "runs").is_dir() and (mine / "cache").is_dir()
    assert not any((project / "benchmarks").iterdir())
    outcome = CliRunner().invoke(main, ["bench", "report", str(path)])
    assert outcome.exit_code == 0 and (mine / "results" / "tiny" / "report" / "tables.md").exists()
    # a suite that lives in a checkout's benchmarks/suites keeps the committed folder beside it
    (project / "benchmarks" / "suites").mkdir()
    ours = project / "benchmarks" / "suites" / "tiny.toml"
    ours.write_text(path.read_text())
    outcome = CliRunner().invoke(main, ["bench", "run", "tiny"])
    assert outcome.exit_code == 0, outcome.output
    assert (project / "benchmarks" / "results" / "tiny" / "runs").is_dir()


def _grouped_suite(tmp_path):
    """Two datasets x three seeds; a variant that changes the MAE makes groups of its own, one that
    changes only the U-Net shares the plain runs' group: 12 groups, of 7 or 2 runs."""
    folder = make_synthetic_dataset(tmp_path / "d", n_source=2, n_pool=4, n_test=1, size=32)
    datasets = _synthetic_datasets(folder) + _synthetic_datasets(folder).replace('"syn"', '"syn2"')
    experiments = ('[[experiments]]\ntable = "T2"\nmethods = ["random", "xssr", "coreset"]\nbudgets = [1, 2]\n'
                   '[[experiments]]\ntable = "V"\nvariant = "steps"\nmethods = ["random"]\nbudgets = [1]\n'
                   'overrides = { "train.steps" = 4 }\n'
                   '[[experiments]]\ntable = "W"\nvariant = "mae"\nmethods = ["xssr"]\nbudgets = [1, 2]\n'
                   'overrides = { "pretrain.epochs" = 2 }\n')
    return _suite_file(tmp_path, datasets, experiments, seeds="[0, 1, 2]")


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 20])
def test_shards_are_disjoint_cover_the_suite_keep_groups_whole_and_are_stable(tmp_path, count):
    from xssr.bench.runner import partition

    specs = load_suite(_grouped_suite(tmp_path)).runs()
    assert len(specs) == 2 * 3 * (6 + 1 + 2) and len({s.group for s in specs}) == 12
    parts = partition(specs, count)
    names = [s.name for part in parts for s in part]
    assert len(parts) == count and sorted(names) == sorted(s.name for s in specs)  # disjoint, and all of them
    owner = {s.group: i for i, part in enumerate(parts) for s in part}
    assert all(owner[s.group] == i for i, part in enumerate(parts) for s in part)  # no group is split
    sizes = [len(part) for part in parts]
    if count <= 12:  # as many groups as parts or more: greedy keeps parts within one group of each other
        assert min(sizes) > 0 and max(sizes) - min(sizes) <= 7
    # The same suite, loaded afresh, splits the same way (every machine of a job array agrees).
    again = partition(load_suite(_grouped_suite(tmp_path)).runs(), count)
    assert [[s.name for s in part] for part in again] == [[s.name for s in part] for part in parts]


def test_shards_run_their_own_runs_and_write_their_own_progress(tmp_path):
    from click.testing import CliRunner

    from xssr.bench.runner import partition
    from xssr.cli import main

    folder = make_synthetic_dataset(tmp_path / "d", n_source=2, n_pool=4, n_test=1, size=32)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [1, 2]\n'
    path = _suite_file(tmp_path, _synthetic_datasets(folder), experiments)
    suite = load_suite(path)
    results = tmp_path / "results"
    runs = results / "tiny" / "runs"
    expected = [{s.name for s in part} for part in partition(suite.runs(), 2)]
    assert [len(names) for names in expected] == [2, 2]  # one seed's two runs each
    for index in (2, 1):  # any order: a job array starts its tasks as it likes
        args = ["bench", "run", str(path), "--shard", f"{index}/2", "--results", str(results),
                "--work", str(tmp_path / f"work{index}")]  # one scratch folder per machine
        outcome = CliRunner().invoke(main, args)
        assert outcome.exit_code == 0, outcome.output
        assert f"tiny (shard {index}/2): 2 run now" in outcome.output
        progress = json.loads((results / "tiny" / f"progress-shard-{index}-of-2.json").read_text())
        assert progress["shard"] == f"{index}/2" and progress["finished"] == progress["total"] == 2
        assert progress["suite_total"] == 4
        record = json.loads((runs / f"{sorted(expected[index - 1])[0]}.json").read_text())
        assert record["command"].endswith(f"--shard {index}/2")
    assert {p.stem for p in runs.glob("*.json")} == expected[0] | expected[1]
    assert progress["suite_finished"] == 4  # shard 1 ran last and saw shard 2's result files
    assert not (results / "tiny" / "progress.json").exists()  # nobody overwrote anybody's
    text = render_suite(suite, results, tmp_path / "report")
    assert "Finished runs: 4 of 4." in text  # the report counts result files, whoever wrote them
    outcome = CliRunner().invoke(main, args)  # a re-run of shard 1 finds its runs finished
    assert outcome.exit_code == 0 and "0 run now, 2 were already finished, 2 in total" in outcome.output


@pytest.mark.parametrize("value", ["0/2", "3/2", "a/b", "2", "1/0", "-1/2", "1/2/3", "1.5/2", ""])
def test_bad_shard_is_rejected_naming_the_option_and_nothing_is_written(tmp_path, value):
    from click.testing import CliRunner

    from xssr.cli import main

    folder = make_synthetic_dataset(tmp_path / "d", n_source=2, n_pool=2, n_test=1, size=32)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [1]\n'
    path = _suite_file(tmp_path, _synthetic_datasets(folder), experiments)
    outcome = CliRunner().invoke(main, ["bench", "run", str(path), "--shard", value, "--results",
                                        str(tmp_path / "r"), "--work", str(tmp_path / "w")])
    assert outcome.exit_code == 2
    assert "Invalid value for '--shard'" in outcome.output and f"got {value!r}" in outcome.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def test_selection_cost_can_measure_another_checkout():
    from pathlib import Path

    from xssr.bench.cost import selection_cost

    src = Path(__file__).resolve().parents[2] / "src"
    row = selection_cost(300, "coreset", dim=16, code=src)
    assert row["n_selected"] == 15 and len(row["code_commit"]) in (40, len("unknown"))


def test_bench_advice_checks_the_learning_curve_against_the_next_budget(tmp_path):
    from click.testing import CliRunner

    from xssr.cli import main

    data = make_synthetic_dataset(tmp_path / "syn", n_source=6, n_pool=20, n_test=4, size=32)
    experiments = '[[experiments]]\ntable = "T5"\nmethods = ["random"]\nbudgets = [12, 16]\n'
    path = _suite_file(tmp_path, _synthetic_datasets(data), experiments, seeds="[0]")
    results, work, docs = tmp_path / "results", tmp_path / "work", tmp_path / "docs.md"
    args = ["bench", "advice", str(path), "--results", str(results), "--work", str(work)]
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 2 and "the committed run to compare with is missing" in missing.output
    other = CliRunner().invoke(main, [*args, "--set", "seed=3"])
    assert other.exit_code == 2 and "--set seed: only training settings" in other.output

    run_suite(load_suite(path), results, work)
    result = CliRunner().invoke(main, [*args, "--docs", str(docs)])
    assert result.exit_code == 0, result.output
    row_path = results / "advice" / "tiny__syn__random__b12__s0.json"
    row = json.loads(row_path.read_text())
    runs = {b: json.loads((results / "tiny" / "runs" / f"syn__random__b{b}__s0.json").read_text()) for b in (12, 16)}
    assert row["n_labeled"] == 12 and row["n_next"] == 16 and row["advice"]["u_nets_trained"] == 12
    assert row["measured_gain"] == runs[16]["dice"]["overall"]["mean"] - runs[12]["dice"]["overall"]["mean"]
    assert row["run_keys"] == [runs[12]["key"], runs[16]["key"]]
    assert row["error"] == row["predicted_gain"] - row["measured_gain"]
    assert "| syn | random | 12 → 16 | 0 |" in result.output and "1 checks: mean absolute error" in result.output
    assert row["overrides"] == {} and "| – |" in result.output
    assert "BEGIN generated: advice-tiny" in docs.read_text()
    # Done checks are read back, not made again.
    written = row_path.stat().st_mtime_ns
    assert CliRunner().invoke(main, args).output == result.output and row_path.stat().st_mtime_ns == written

    # A committed run from another protocol is not compared with.
    stale = results / "tiny" / "runs" / "syn__random__b16__s0.json"
    stale.write_text(stale.read_text().replace(runs[16]["key"], "old-protocol"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "its key differs" in result.output


def _recipe_run(variant, dataset, seed, dice, seconds):
    return {"variant": variant, "dataset": dataset, "seed": seed, "dice": {"overall": {"mean": dice}},
            "timings": {"unet_train_seconds": seconds}}


def test_recipe_rule_keeps_the_cheaper_recipe_within_the_tolerance_and_waits_for_every_seed():
    from xssr.bench.choose import recipe_choices, recipe_scores

    runs = []
    for seed in (0, 1):
        for dataset, shift in (("a", 0.0), ("b", 0.02)):
            runs += [_recipe_run("mean-teacher", dataset, seed, 0.950 + shift, 600),
                     _recipe_run("fine-tune", dataset, seed, 0.947 + shift, 300),  # 0.003 below: cheaper wins
                     _recipe_run("joint", dataset, seed, 0.930 + shift, 350),
                     _recipe_run("supervised", dataset, seed, 0.900 + shift, 280),
                     _recipe_run("mean-teacher-scratch", dataset, seed, 0.910 + shift, 500),  # 0.01 above: kept
                     _recipe_run("source-only", dataset, seed, 0.990, 0),  # ignores annotations: never a candidate
                     _recipe_run("plain", dataset, seed, 0.999, 1)]  # the reference, not a candidate
    recipes = {r: r for r in ["mean-teacher", "fine-tune", "joint", "supervised", "mean-teacher-scratch", "source-only"]}
    recipes["plain"] = "supervised"
    masks, model_only, neither = recipe_choices(recipe_scores(runs, ["a", "b"], [0, 1]), recipes)
    assert (masks.best, masks.chosen) == ("mean-teacher", "fine-tune") and "within 0.005" in masks.reason
    assert model_only.chosen == "fine-tune" and "joint" not in model_only.candidates
    assert neither.chosen == "mean-teacher-scratch" and neither.candidates == ("supervised", "mean-teacher-scratch")
    assert "plain" not in masks.candidates and "source-only" not in masks.candidates

    # One missing seed of one candidate: no verdict yet for the choices that include it.
    partial = [r for r in runs if not (r["variant"] == "supervised" and r["seed"] == 1 and r["dataset"] == "b")]
    masks, _, neither = recipe_choices(recipe_scores(partial, ["a", "b"], [0, 1]), recipes)
    assert masks.chosen is None and "not yet: supervised" in masks.reason and neither.chosen is None


def test_bench_choose_names_a_table_that_compares_no_recipes(tmp_path):
    from click.testing import CliRunner

    from xssr.cli import main

    data = make_synthetic_dataset(tmp_path / "syn", n_source=4, n_pool=6, n_test=2, size=32)
    experiments = '[[experiments]]\ntable = "T2"\nmethods = ["random"]\nbudgets = [2]\n'
    path = _suite_file(tmp_path, _synthetic_datasets(data), experiments, seeds="[0]")
    for table, message in (("Z", "--table Z: not in suite 'tiny'; it has: T2"), ("T2", "compares no recipes")):
        result = CliRunner().invoke(main, ["bench", "choose", str(path), "--table", table, "--results", str(tmp_path)])
        assert result.exit_code == 2 and message in result.output, result.output
