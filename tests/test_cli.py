"""End-to-end tests of the command line on tiny data the tests make themselves."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xssr.cli import main
from xssr.data import make_synthetic_dataset

# Small enough for a few seconds on a 2-core CPU, but every stage runs for real.
TINY = [
    "--image-size", "32",
    "--set", "pretrain.epochs=1", "--set", "pretrain.widths=4,8,8,16", "--set", "pretrain.patch_size=8",
    "--set", "train.epochs=1", "--set", "train.steps=0", "--set", "train.channels=4,8", "--set", "train.num_res_units=0",
    "--set", "select.k=3", "--device", "cpu",
]


@pytest.fixture(scope="module")
def tiny_data(synthetic_specs):
    return {f"--{group}": spec for group, spec in synthetic_specs.items()}


def _args(data):
    return [item for pair in data.items() for item in pair]


def test_run_writes_every_output_and_reuses_finished_stages(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["run", *_args(tiny_data), *TINY, "--budget", "0.2", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for method in ("xssr", "coreset", "random", "full"):
        assert method in result.output
    n_pool = 20
    metrics = json.loads((out / "metrics.json").read_text())
    # The default recipe fine-tunes a source U-Net (the tiny set has source masks): it is measured alone too.
    assert set(metrics) == {"xssr", "coreset", "random", "full", "source-only"}
    assert metrics["xssr"]["recipe"] == "fine-tune" and metrics["source-only"]["n_train"] == 0
    assert metrics["full"]["n_train"] == n_pool and metrics["xssr"]["n_train"] == 4
    for m in metrics.values():
        assert 0.0 <= m["dice"]["overall"]["mean"] <= 1.0 and m["dice"]["overall"]["n"] == 6
    rows = (out / "select" / "xssr" / "selection.csv").read_text().splitlines()
    assert rows[0].startswith("rank,index,case_id,site,image") and len(rows) == 1 + 4
    curve = (out / "select" / "xssr" / "alpha_curve.csv").read_text().splitlines()
    assert len(curve) == 1 + 11 and sum(line.endswith("True") for line in curve) == 1
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["seed"] == 0 and "torch" in manifest["environment"]["packages"]
    assert len(manifest["inputs"]["pool"]) == n_pool and all(len(r["sha1"]) == 40 for r in manifest["inputs"]["pool"])
    assert (out / "pretrain" / "mae.pt").exists() and (out / "embed" / "pool.npy").exists()

    # Same configuration again: every stage is reused, nothing is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    # A changed U-Net setting retrains but keeps the MAE and the selections.
    changed = CliRunner().invoke(main, [*args, "--set", "train.lr=0.01", "--methods", "random"])
    assert changed.exit_code == 0, changed.output
    assert (out / "pretrain" / "mae.pt").stat().st_mtime_ns == stamps[out / "pretrain" / "mae.pt"]
    assert (out / "train" / "random" / "unet.pt").stat().st_mtime_ns != stamps[out / "train" / "random" / "unet.pt"]


def test_bad_inputs_are_all_reported_and_nothing_is_written(tmp_path):
    folder = tmp_path / "pool"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    good = (np.arange(32 * 32).reshape(32, 32) % 255).astype(np.uint8)
    for i in range(3):
        Image.fromarray(good + i).save(folder / "images" / f"ok{i}.png")
        Image.fromarray(((good > 100) * 255).astype(np.uint8)).save(folder / "masks" / f"ok{i}.png")
    (folder / "images" / "broken.png").write_bytes(b"not a png at all")
    Image.fromarray(good).save(folder / "images" / "grey_mask.png")
    Image.fromarray(good).save(folder / "masks" / "grey_mask.png")  # 255 grey levels: not a binary mask
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--pool", str(folder), "--test", str(folder), "--methods", "random",
                                       *TINY, "--out", str(out)])
    assert result.exit_code == 2
    assert "broken.png" in result.output and "grey_mask.png" in result.output
    assert "binary" in result.output
    assert not out.exists()


def test_missing_source_for_xssr_is_named(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["select", "--pool", tiny_data["--pool"], *TINY, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "data.source" in result.output
    assert not (tmp_path / "o").exists()


def test_select_from_precomputed_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pool.npy", rng.normal(size=(50, 8)).astype(np.float32))
    np.save(tmp_path / "source.npy", rng.normal(size=(30, 8)).astype(np.float32))
    out = tmp_path / "sel"
    result = CliRunner().invoke(main, ["select", "--pool-embeddings", str(tmp_path / "pool.npy"),
                                       "--source-embeddings", str(tmp_path / "source.npy"),
                                       "--budget", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = (out / "selection.csv").read_text().splitlines()
    assert len(lines) == 6 and (out / "alpha_curve.csv").exists()
    indices = [int(line.split(",")[1]) for line in lines[1:]]
    assert len(set(indices)) == 5 and all(0 <= i < 50 for i in indices)


def test_bad_embeddings_file_is_named(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(10))
    result = CliRunner().invoke(main, ["select", "--pool-embeddings", str(tmp_path / "flat.npy"),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "flat.npy" in result.output and "2-D" in result.output
    assert not (tmp_path / "o").exists()


def test_validate_reports_counts_and_writes_nothing(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", *_args(tiny_data), *TINY])
    assert result.exit_code == 0, result.output
    assert "all inputs OK" in result.output
    assert list(tmp_path.iterdir()) == []


def test_asking_for_cuda_without_one_is_a_clear_error(tiny_data, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(main, ["pretrain", *_args(tiny_data), *TINY[:-2], "--device", "cuda",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "CUDA" in result.output


def test_selection_code_never_imports_torch():
    code = "import sys, xssr.selection, xssr.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "xssr" in result.output and "random" in result.output


@pytest.mark.slow
def test_select_on_10k_embeddings_is_fast_and_bounded(tmp_path):
    """The issue's scale target: 10,000 pool x 10,000 source x 256, auto alpha, < 30 s and < 2 GB."""
    import resource
    import time

    rng = np.random.default_rng(0)
    np.save(tmp_path / "pool.npy", rng.standard_normal((10_000, 256), dtype=np.float32))
    np.save(tmp_path / "source.npy", rng.standard_normal((10_000, 256), dtype=np.float32) + 0.1)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xssr.cli", "select", "--pool-embeddings", str(tmp_path / "pool.npy"),
                    "--source-embeddings", str(tmp_path / "source.npy"), "--out", str(tmp_path / "sel")], check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert (tmp_path / "sel" / "selection.csv").read_text().count("\n") == 1 + 500
    assert seconds < 30, f"took {seconds:.1f} s"
    assert peak_mb < 2048, f"peak memory {peak_mb:.0f} MB"


def test_train_needs_masks_only_for_the_selected_images(tmp_path):
    """A team annotates just the selected images; training must not ask for the rest."""
    folder = make_synthetic_dataset(tmp_path / "d", n_source=6, n_pool=10, n_test=4, size=32)
    manifest = folder / "manifest.csv"
    lines = manifest.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    pool_rows = [r for r in rows if ",train" in r and "synthetic_target" in r]
    random_args = ["--pool", f"{manifest}#split=train&site=synthetic_target_a,synthetic_target_b,synthetic_target_c",
                   "--methods", "random", "--budget", "3", *TINY]
    out = tmp_path / "run"
    picked = CliRunner().invoke(main, ["select", *random_args, "--out", str(out)])
    assert picked.exit_code == 0, picked.output
    chosen = {line.split(",")[2] for line in (out / "select" / "random" / "selection.csv").read_text().splitlines()[1:]}
    # Drop the masks of every pool image that was not selected.
    kept = [r if r.split(",")[3] in chosen or r not in pool_rows else ",".join([r.split(",")[0], "", *r.split(",")[2:]])
            for r in rows]
    manifest.write_text("\n".join([header, *kept]) + "\n")
    selection_stamp = (out / "select" / "random" / "selection.csv").stat().st_mtime_ns
    trained = CliRunner().invoke(main, ["train", *random_args, "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    # Changing masks must not redo the selection the annotators worked from.
    assert (out / "select" / "random" / "selection.csv").stat().st_mtime_ns == selection_stamp
    assert (out / "train" / "random" / "unet.pt").exists()

    # Remove one selected image's mask: training names it and writes no model.
    victim = sorted(chosen)[0]
    manifest.write_text("\n".join([header, *[
        ",".join([r.split(",")[0], "", *r.split(",")[2:]]) if r.split(",")[3] == victim else r for r in kept
    ]]) + "\n")
    again = CliRunner().invoke(main, ["train", *random_args, "--set", "train.lr=0.01", "--out", str(out)])
    assert again.exit_code == 2 and victim in again.output and "no mask" in again.output
    kept_manifest = json.loads((out / "train" / "random" / "manifest.json").read_text())
    assert kept_manifest["inputs"]["train"]["lr"] == pytest.approx(1e-3)  # the earlier model is untouched


def test_a_spec_matching_nothing_is_named_with_other_problems(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["validate", "--source", tiny_data["--source"].replace("synthetic_source", "typo"),
                                       "--pool", tiny_data["--pool"] + "&n=999", "--stage", "select", *TINY])
    assert result.exit_code == 2
    assert "source: no images match" in result.output and "typo" in result.output
    assert "data.pool" in result.output and "n=999" in result.output


def test_outputs_are_readable_by_others(tiny_data, tmp_path):
    import os
    import stat

    out = tmp_path / "sel"
    result = CliRunner().invoke(main, ["select", *_args(tiny_data), *TINY, "--methods", "random", "--out", str(out)])
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((out / "select" / "random" / "selection.csv").stat().st_mode)
    assert mode == 0o666 & ~umask


def test_verbose_output_has_no_library_import_noise(tmp_path):
    """-v shows xssr's log; faiss's report of a failed AVX2 import (INFO) read like an error."""
    import subprocess
    import sys

    import numpy as np

    np.save(tmp_path / "pool.npy", np.random.default_rng(0).random((30, 4)).astype(np.float32))
    code = ("import sys; from xssr.cli import main; "
            "main(['-v', 'select', '--pool-embeddings', sys.argv[1], '--alpha', '0', '--budget', '3', "
            "'--out', sys.argv[2]])")
    done = subprocess.run([sys.executable, "-c", code,
                           str(tmp_path / "pool.npy"), str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "faiss" not in done.stderr and "ModuleNotFoundError" not in done.stderr
