"""Crash-resume: SIGKILL a real ``xssr run`` / ``xssr bench run`` mid-stage, run it again, and get
exactly what an uninterrupted run of the same command gets, with nothing half-written left behind.

Each command runs as a child process in its own session, so the kill takes down the whole process
group the way an OOM-killer or a pulled plug would: no ``finally`` blocks, no atexit, no flush.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from xssr.report.io import read_csv

WAIT_S = 120  # per wait; generous because a 2-core machine may be busy with other work
POLL_S = 0.02  # the stages below last seconds, so a 20 ms poll always lands inside them

# Sized so that each training stage runs long enough (1-3 s here) to be caught mid-way, while
# the whole file stays around a minute. With 8 source images and batch 32 the MAE makes one
# step per epoch; with 4 selected images and batch 8 the U-Net makes one step per epoch, so
# the loop logs "epoch k/MAE_EPOCHS" and "epoch k/UNET_STEPS": different totals tell the
# two training loops apart in the log.
MAE_EPOCHS = 200
UNET_STEPS = 300
RUN_SETTINGS = [
    "--image-size", "32", "--budget", "0.2", "--methods", "random,xssr", "--device", "cpu",
    "--set", f"pretrain.epochs={MAE_EPOCHS}", "--set", "pretrain.widths=4,8,8,16", "--set", "pretrain.patch_size=8",
    "--set", f"train.steps={UNET_STEPS}", "--set", "train.channels=4,8", "--set", "train.num_res_units=0",
    "--set", "select.k=3",
]
BENCH_MAE_EPOCHS = 100  # again one step per epoch; the totals differ so that the log tells the loops apart
BENCH_UNET_STEPS = 80
SEEDS = (0, 1)
BENCH_METHODS = ("xssr", "random")

TOLERANCE = 1e-6
# Wall-clock and provenance fields: they legitimately differ between two runs of the same command.
NOT_COMPARED = {"train_seconds", "stage_seconds", "timings", "environment", "git_commit", "command"}
STAGE_PARENTS = ("select", "train", "evaluate")  # these hold one stage folder per method
# For the kill-inside-a-write tests the kill point is exact, so the stages can be as short as possible.
QUICK = ["--set", "pretrain.epochs=2", "--set", "train.steps=2"]

# Runs the xssr CLI with os.replace wrapped so that the process SIGKILLs itself just before the
# first rename onto a file named sys.argv[1]: io.atomic_path has then written the whole temporary
# file but not renamed it, the one moment at which a crash strands that file.
KILL_AT_RENAME = """
import os, signal, sys
rename = os.replace
def replace(src, dst, *args, **kwargs):
    if os.path.basename(dst) == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst, *args, **kwargs)
os.replace = replace
from xssr.cli import main
main(args=sys.argv[2:], prog_name="xssr")
"""


# --------------------------------------------------------------------------- helpers


def _cli(*args: str) -> list[str]:
    # The interpreter running the tests, so the child sees the same installed xssr and torch.
    return [sys.executable, "-m", "xssr.cli", "-v", *args]


def _child_env() -> dict[str, str]:
    # One torch thread per child. On a 2-core machine shared with other work, two spinning
    # intra-op threads made these runs 4-7x slower (measured); every child gets the same
    # setting, so reference and resumed runs still compute the same way.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def _started(command: list[str], log: Path, cwd: Path):
    """Start ``command`` in a new session; whatever happens, its process group is gone afterwards."""
    with open(log, "wb") as sink:
        # A file, not a pipe: nobody reads a pipe while we poll, and a full pipe would stall the child.
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, env=_child_env(),
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # start_new_session: the group id is the child's pid
    except ProcessLookupError:
        pass
    process.wait(timeout=WAIT_S)


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_for(condition, process: subprocess.Popen, log: Path, what: str) -> None:
    """Poll ``condition`` until true; fail clearly if the child ends first or the wait times out."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the command ended (exit {process.returncode}) before {what}; if it simply finished, "
                        f"the stage was too short to catch: raise its epochs/steps.\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no sign of {what} after {WAIT_S} s.\n{_tail(log)}")
        time.sleep(POLL_S)


def _run_to_end(command: list[str], log: Path, cwd: Path, expect: int = 0) -> None:
    with _started(command, log, cwd) as process:
        try:
            process.wait(timeout=WAIT_S * 2)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(command[2:6])} did not finish in {WAIT_S * 2} s.\n{_tail(log)}")
    assert process.returncode == expect, f"exit {process.returncode}, expected {expect}:\n{_tail(log)}"


def _killed_at_rename(name: str, command: list[str]) -> list[str]:
    """``command`` (an xssr CLI call) run so that it SIGKILLs itself as it is about to rename onto ``name``."""
    assert command[1:3] == ["-m", "xssr.cli"]
    return [sys.executable, "-c", KILL_AT_RENAME, name, *command[3:]]


def _training_logged(log: Path, total: int) -> bool:
    """Whether the training loop has logged an epoch of a loop that runs ``total`` epochs."""
    return log.exists() and re.search(rf"epoch \d+/{total} loss", log.read_text(errors="replace")) is not None


def _running(stage: Path, log: Path, total: int):
    """A started-but-unfinished stage: ``Stage.start`` made the folder, ``Stage.finish`` has not yet
    written the manifest, and its training loop is under way (so the kill lands mid-training,
    not while the inputs are still being read)."""
    return lambda: stage.is_dir() and not (stage / "manifest.json").exists() and _training_logged(log, total)


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.NAME.XXXX.tmp``) or any other hidden file."""
    return sorted(p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp"))


def _stage_folders(run: Path) -> list[Path]:
    folders = [run / name for name in ("pretrain", "embed") if (run / name).exists()]
    for parent in STAGE_PARENTS:
        if (run / parent).exists():
            folders += sorted(p for p in (run / parent).iterdir() if p.is_dir())
    return folders


def _assert_clean_run_folder(run: Path) -> None:
    assert not _leftovers(run), f"partial or temporary files left: {_leftovers(run)}"
    unfinished = [p for p in _stage_folders(run) if not (p / "manifest.json").exists()]
    assert not unfinished, f"stage folders without a manifest (started, never finished): {unfinished}"


def _assert_close(actual, expected, where: str = "") -> None:
    """Equal structure; floats within TOLERANCE (NaN equals NaN); NOT_COMPARED keys skipped."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), \
            f"{where}: keys {sorted(actual) if isinstance(actual, dict) else actual!r} != {sorted(expected)}"
        for key in expected:
            if key not in NOT_COMPARED:
                _assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual} != {expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool) and isinstance(actual, (int, float)):
        same = (math.isnan(expected) and math.isnan(actual)) or math.isclose(actual, expected, rel_tol=0,
                                                                                abs_tol=TOLERANCE)
        assert same, f"{where}: {actual!r} != {expected!r} (tolerance {TOLERANCE})"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _outcome(run: Path) -> dict:
    """What a run decided: its metrics and, per method, the selected images in pick order."""
    methods = sorted(p.name for p in (run / "select").iterdir())
    return {
        "metrics": json.loads((run / "metrics.json").read_text()),
        "selected": {m: [row["key"] for row in read_csv(run / "select" / m / "selection.csv")] for m in methods},
        "stages": [str(p.relative_to(run)) for p in _stage_folders(run)],
    }


def _manifest_stamps(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("manifest.json")}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(synthetic_specs):
    return synthetic_specs


def _run_command(data: dict, out: Path, *extra: str) -> list[str]:
    return _cli("run", "--source", data["source"], "--pool", data["pool"], "--test", data["test"],
                *RUN_SETTINGS, *extra, "--out", str(out), "--no-progress")


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory):
    """The same command, never interrupted: what every resumed run must reproduce."""
    folder = tmp_path_factory.mktemp("reference_run")
    _run_to_end(_run_command(data, folder / "run"), folder / "log.txt", folder)
    _assert_clean_run_folder(folder / "run")
    return _outcome(folder / "run")


def _suite_file(folder: Path, data: dict) -> Path:
    path = folder / "suite.toml"
    path.write_text(f"""
name = "crash"
description = "crash-resume test"
seeds = {list(SEEDS)}

[protocol]
"train.recipe" = "supervised"
"data.image_size" = 32
"pretrain.epochs" = {BENCH_MAE_EPOCHS}
"pretrain.widths" = [4, 8, 8, 16]
"pretrain.patch_size" = 8
"train.steps" = {BENCH_UNET_STEPS}
"train.channels" = [4, 8]
"train.num_res_units" = 0
"select.k" = 3
device = "cpu"

[[datasets]]
name = "syn"
source = "{data['source']}"
pool = "{data['pool']}"
test = "{data['test']}"

[[experiments]]
table = "T2"
methods = {json.dumps(list(BENCH_METHODS))}
budgets = [4]
""")
    return path


@pytest.fixture(scope="module")
def suite(data, tmp_path_factory):
    # One suite file for the reference and the interrupted sweep: same data paths, so same run keys.
    return _suite_file(tmp_path_factory.mktemp("suite"), data)


def _bench_command(suite: Path, folder: Path) -> list[str]:
    return _cli("bench", "run", str(suite), "--results", str(folder / "results"), "--work", str(folder / "work"))


def _sweep_results(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "results" / "crash" / "runs").glob("*.json"))}


@pytest.fixture(scope="module")
def reference_sweep(suite, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference_sweep")
    _run_to_end(_bench_command(suite, folder), folder / "log.txt", folder)
    results = _sweep_results(folder)
    assert len(results) == len(SEEDS) * len(BENCH_METHODS), sorted(results)
    return results


# --------------------------------------------------------------------------- tests


def _kill_then_resume(data, tmp_path, stage: str, total: int) -> tuple[Path, list[str], dict, dict]:
    """Kill ``xssr run`` while ``stage`` trains; check it really was mid-stage; run it again to the end.

    Returns the run folder, the stage folders present at the kill, and the manifest stamps of the
    stages finished before the kill and after the re-run.
    """
    run = tmp_path / "run"
    command = _run_command(data, run)
    log = tmp_path / "killed.txt"
    with _started(command, log, tmp_path) as process:
        _wait_for(_running(run / stage, log, total), process, log, f"the {stage} stage training")
        _kill_group(process)
    assert process.returncode == -signal.SIGKILL
    # The kill must have interrupted the stage, or this test would prove nothing.
    assert (run / stage).is_dir() and not (run / stage / "manifest.json").exists(), \
        f"{stage} finished before the kill landed: make it longer.\n{_tail(log)}"
    assert not (run / "metrics.json").exists()
    at_kill = [str(p.relative_to(run)) for p in _stage_folders(run)]
    before = _manifest_stamps(run)

    _run_to_end(command, tmp_path / "resumed.txt", tmp_path)
    return run, at_kill, before, _manifest_stamps(run)


def test_sigkill_during_mae_pretraining_then_rerun_matches_an_uninterrupted_run(data, reference_run, tmp_path):
    run, at_kill, before, _ = _kill_then_resume(data, tmp_path, "pretrain", MAE_EPOCHS)
    assert at_kill == ["pretrain"] and before == {}  # killed in the first stage: nothing had finished

    _assert_clean_run_folder(run)
    resumed = _outcome(run)
    assert resumed["stages"] == reference_run["stages"]
    assert resumed["selected"] == reference_run["selected"]
    _assert_close(resumed["metrics"], reference_run["metrics"], "metrics.json")


def test_sigkill_during_unet_training_then_rerun_matches_an_uninterrupted_run(data, reference_run, tmp_path):
    # "random" is the first method, so its U-Net is the first one trained.
    run, at_kill, before, after = _kill_then_resume(data, tmp_path, "train/random", UNET_STEPS)
    assert "train/random" in at_kill and "train/random/manifest.json" not in before
    assert {"pretrain/manifest.json", "embed/manifest.json", "select/random/manifest.json"} <= set(before)

    # Resuming reuses what finished before the kill instead of redoing it.
    assert {k: after[k] for k in before} == before
    _assert_clean_run_folder(run)
    resumed = _outcome(run)
    assert resumed["stages"] == reference_run["stages"]
    assert resumed["selected"] == reference_run["selected"]
    _assert_close(resumed["metrics"], reference_run["metrics"], "metrics.json")


def test_two_sigkills_during_a_benchmark_sweep_then_rerun_matches_an_uninterrupted_sweep(suite, reference_sweep,
                                                                                       tmp_path):
    command = _bench_command(suite, tmp_path)
    runs = tmp_path / "results" / "crash" / "runs"
    # A fresh sweep runs group by group (seed), methods in suite order.
    first, second = (f"syn__{method}__b4__s{SEEDS[0]}.json" for method in BENCH_METHODS)

    # Crash 1, after the first run file: just as the second is renamed into place, which strands
    # its complete temporary file next to the committed results.
    _run_to_end(_killed_at_rename(second, command), tmp_path / "killed1.txt", tmp_path, expect=-signal.SIGKILL)
    # glob("*.json") skips ".NAME.json.XXXX.tmp": only renamed, complete run files count.
    assert [p.name for p in runs.glob("*.json")] == [first]
    assert [p.name.startswith(f".{second}.") for p in _leftovers(runs)] == [True]
    first_bytes = (runs / first).read_bytes()

    # Crash 2, mid-way through the next seed's MAE: a started, unfinished stage in the work folder.
    log = tmp_path / "killed2.txt"
    # MAEs live in the shared store by fingerprint; seed 0's is finished, so the one that starts
    # now is seed 1's.
    store_mae = tmp_path / "work" / "store" / "pretrain"
    with _started(command, log, tmp_path) as process:
        _wait_for(lambda: any(_running(stage, log, BENCH_MAE_EPOCHS)() for stage in store_mae.glob("*")),
                  process, log, f"the MAE of seed {SEEDS[1]} training")
        _kill_group(process)
    assert process.returncode == -signal.SIGKILL
    survived = {p.name: p.read_bytes() for p in runs.glob("*.json")}
    # (The resumed sweep takes seed 1's group first: groups follow the order of the unfinished runs.)
    assert first in survived and len(survived) < len(reference_sweep), \
        f"the kill landed after {sorted(survived)}: make the MAE of seed {SEEDS[1]} longer"
    assert sorted(not (p / "manifest.json").exists() for p in store_mae.iterdir() if p.is_dir()) == [False, True]
    stamps = {name: (runs / name).stat().st_mtime_ns for name in survived}

    _run_to_end(command, tmp_path / "resumed.txt", tmp_path)
    resumed = _sweep_results(tmp_path)
    assert sorted(resumed) == sorted(reference_sweep)
    for name, record in resumed.items():
        assert record["key"] == reference_sweep[name]["key"]
        _assert_close(record, reference_sweep[name], name)
    # Runs finished before a crash are kept as they were, not run again (a rerun would rewrite
    # the file, with other timings in it).
    assert (runs / first).read_bytes() == first_bytes
    assert {name: (runs / name).read_bytes() for name in survived} == survived
    assert {name: (runs / name).stat().st_mtime_ns for name in survived} == stamps
    progress = json.loads((tmp_path / "results" / "crash" / "progress.json").read_text())
    assert progress["finished"] == progress["total"] == len(reference_sweep)

    assert not _leftovers(tmp_path / "results"), _leftovers(tmp_path / "results")
    groups = list((tmp_path / "work" / "crash" / "syn").iterdir())
    assert len(groups) == len(SEEDS)
    for run_folder in (run for group in groups for run in group.iterdir()):
        _assert_clean_run_folder(run_folder)
    shared = [p for p in (tmp_path / "work" / "store").glob("*/*") if p.is_dir()]  # beside them: their .lock files
    kinds = [p.parent.name for p in shared]
    # an MAE and its embeddings per seed, and a U-Net per run (runs that train identically share one)
    assert kinds.count("pretrain") == kinds.count("embed") == len(SEEDS)
    assert 1 <= kinds.count("train") <= len(reference_sweep) and len(kinds) == 2 * len(SEEDS) + kinds.count("train")
    assert not _leftovers(tmp_path / "work" / "store")
    assert all((stage / "manifest.json").exists() for stage in shared)


def test_sigkill_between_writing_and_renaming_a_checkpoint_leaves_nothing_after_rerun(data, tmp_path):
    run = tmp_path / "run"
    command = _run_command(data, run, *QUICK)
    _run_to_end(_killed_at_rename("unet.pt", command), tmp_path / "killed.txt", tmp_path, expect=-signal.SIGKILL)
    # The crash strands the complete temporary checkpoint of the first U-Net: the source U-Net that
    # the default recipe (fine-tune, the tiny set has source masks) starts from.
    stranded = [str(p.relative_to(run)) for p in _leftovers(run)]
    assert len(stranded) == 1 and re.fullmatch(r"source-train/\.unet\.pt\.\w+\.tmp", stranded[0]), stranded

    _run_to_end(command, tmp_path / "resumed.txt", tmp_path)
    assert json.loads((run / "metrics.json").read_text()).keys() == {"random", "xssr", "source-only"}
    _assert_clean_run_folder(run)

