"""Two gloo processes under torchrun give the run one process gives (xssr.train.distributed).

The end-to-end test launches ``python -m torch.distributed.run --standalone --nproc_per_node=2
-m xssr run`` on tiny synthetic data and compares every trained model, the embeddings, the
selection and the Dice with a one-process run of the same command. The sizes are chosen so that
the shares are uneven (a batch of 3 splits 2 + 1) and once empty (a last batch of 1 splits 1 + 0).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xssr.cli import main
from xssr.config import TrainConfig
from xssr.report.io import read_csv
from xssr.train import distributed, load_unet, predict_probabilities

TINY = [
    "--image-size", "32", "--methods", "xssr", "--recipe", "fine-tune", "--budget", "0.2", "--device", "cpu",
    "--set", "pretrain.epochs=2", "--set", "pretrain.batch_size=3", "--set", "pretrain.widths=4,8,8,16",
    "--set", "pretrain.patch_size=8", "--set", "pretrain.precision=fp32",
    # 8 source images in batches of 7: the second batch has 1 image, so process 1's share is empty
    "--set", "train.epochs=2", "--set", "train.steps=0", "--set", "train.batch_size=7",
    "--set", "train.channels=4,8", "--set", "train.num_res_units=1", "--set", "train.precision=fp32",
    "--set", "select.k=3",
]
TRAIN = TrainConfig(channels=(4, 8), num_res_units=1, precision="fp32")
RTOL = 1e-4
# The U-Net (instance norm) agrees to float rounding. The MAE's batch norm has its statistics
# over all processes (CPUSyncBatchNorm), computed another way than torch's fused kernel: on 2x2
# bottleneck maps and 3 images both carry float32 gradient errors of about 1e-5 (measured against
# float64), and Adam, whose steps are about the learning rate (1e-3) whatever the gradient's size,
# turns such differences on near-zero gradients into weight differences up to ~2e-4. So most MAE
# weights must agree tightly and none by more than half a learning rate; without synchronised
# batch norm they differ by ~2e-2.
UNET_ATOL, EMBEDDING_ATOL = 1e-6, 1e-5
MAE_BULK_ATOL, MAE_BULK_SHARE, MAE_ATOL = 1e-5, 0.99, 5e-4


def _cancelled_biases(state: dict) -> set[str]:
    """Biases of the convolutions that instance norm (no affine) follows: the norm subtracts them
    again, so their exact gradient is 0 and what they get is rounding noise, which Adam turns into
    steps of about the learning rate. They differ from run to run (another process or thread
    count), and nothing the network computes depends on them."""
    model = load_unet(state, 1, TRAIN)
    names = set()
    for name, module in model.named_modules():
        norm = getattr(getattr(module, "adn", None), "N", None)
        if isinstance(norm, torch.nn.InstanceNorm2d) and not norm.affine and module.conv.bias is not None:
            names.add(f"{name}.conv.bias")
    return names


def _max_difference(a: dict, b: dict, atol: float, skip=()) -> float:
    """Assert every tensor of ``b`` is within rtol/atol of ``a``; returns the largest difference."""
    assert a.keys() == b.keys()
    worst = 0.0
    for name in a:
        if name in skip or not a[name].is_floating_point():
            continue
        np.testing.assert_allclose(b[name].numpy(), a[name].numpy(), rtol=RTOL, atol=atol, err_msg=name)
        worst = max(worst, float((a[name] - b[name]).abs().max()))
    return worst


def _share_close(a: dict, b: dict, atol: float) -> float:
    """The share of all floating-point weights within rtol/atol."""
    close = total = 0
    for name in a:
        if a[name].is_floating_point():
            close += int(torch.isclose(b[name], a[name], rtol=RTOL, atol=atol).sum())
            total += a[name].numel()
    return close / total


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_two_gloo_processes_train_and_embed_as_one(synthetic_specs, tmp_path):
    data = [item for group, spec in synthetic_specs.items() for item in (f"--{group}", spec)]
    one, two = tmp_path / "one", tmp_path / "two"
    result = CliRunner().invoke(main, ["run", *data, *TINY, "--out", str(one), "--no-progress"])
    assert result.exit_code == 0, result.output

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1")
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "xssr",
         "run", *data, *TINY, "--out", str(two), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    # Rank 0 speaks for both: one results table, one set of stage lines; the other wrote nothing.
    assert launched.stdout.count("results in") == 1, launched.stdout
    assert launched.stderr.count("pretrain: running") == 1, launched.stderr
    assert _files(two) == _files(one)

    load = lambda path: torch.load(path, map_location="cpu", weights_only=True)  # noqa: E731
    mae_one, mae_two = load(one / "pretrain" / "mae.pt"), load(two / "pretrain" / "mae.pt")
    worst = {"mae": _max_difference(mae_one, mae_two, MAE_ATOL)}
    assert _share_close(mae_one, mae_two, MAE_BULK_ATOL) >= MAE_BULK_SHARE
    for group, n in (("source", 8), ("pool", 20)):
        a, b = np.load(one / "embed" / f"{group}.npy"), np.load(two / "embed" / f"{group}.npy")
        assert a.shape == b.shape == (n, 16)
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=EMBEDDING_ATOL)  # row by row, in record order
        worst[f"{group}.npy"] = float(np.abs(a - b).max())
    picks = [[row["index"] for row in read_csv(run / "select" / "xssr" / "selection.csv")] for run in (one, two)]
    assert picks[0] == picks[1]  # the same images, in the same order (their scores agree to float rounding)
    for stage in ("source-train", "train/xssr"):
        a, b = load(one / stage / "unet.pt"), load(two / stage / "unet.pt")
        worst[stage] = _max_difference(a, b, UNET_ATOL, skip=_cancelled_biases(a))
    test_images = _test_images(synthetic_specs)
    pa, pb = (predict_probabilities(load_unet(load(run / "train" / "xssr" / "unet.pt"), 1, TRAIN), test_images,
                                    device=torch.device("cpu"), precision="fp32") for run in (one, two))
    np.testing.assert_allclose(pb, pa, rtol=RTOL, atol=1e-5)
    worst["probabilities"] = float(np.abs(pa - pb).max())
    metrics = [json.loads((run / "metrics.json").read_text())["xssr"]["dice"]["overall"]["mean"] for run in (one, two)]
    assert metrics[0] == pytest.approx(metrics[1], abs=1e-4)
    print("largest differences, 2 processes vs 1:", worst)


def _test_images(specs):
    from xssr.config import DataConfig, RunConfig
    from xssr.pipeline import Inputs

    config = RunConfig(data=DataConfig(source=specs["source"], pool=specs["pool"], test=specs["test"], image_size=32))
    inputs = Inputs(config)
    inputs.check(["test"], ["test"])
    return inputs.arrays("test", with_masks=False)[0]


def test_shares_cover_the_batch_in_order_and_weigh_it_as_one(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 10):
        values = rng.random(n)
        parts, weights = [], []
        for r in range(3):
            monkeypatch.setenv("RANK", str(r))
            (share,), weight = distributed.batch_share([values])
            parts.append(share)
            weights.append(weight)
        np.testing.assert_array_equal(np.concatenate(parts), values)  # end to end, in order
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        # DDP averages the 3 gradients: sum(weight * mean over the share) / 3 = mean over the batch
        means = [p.mean() if len(p) else 0.0 for p in parts]
        assert sum(w * m for w, m in zip(weights, means)) / 3 == pytest.approx(values.mean())
        assert all(w == 0 for w, p in zip(weights, parts) if len(p) == 0)


def test_without_torchrun_nothing_is_distributed(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.agree("x") == "x" and distributed.gather(5) == [5]
    assert distributed.share(4) == slice(0, 4)
    assert distributed.device(torch.device("cuda")) == torch.device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not distributed.active()
