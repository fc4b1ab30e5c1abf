"""Synthetic demo data: deterministic, valid, labelled, and shifted between domains."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from PIL import Image

from xssr.data import check_inputs, load_records, make_synthetic_dataset
from xssr.data.synthetic import TARGET_SITES


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kwargs = dict(n_source=5, n_pool=6, n_test=4, size=32)
    a = _files(make_synthetic_dataset(tmp_path / "a", seed=1, **kwargs))
    b = _files(make_synthetic_dataset(tmp_path / "b", seed=1, **kwargs))
    c = _files(make_synthetic_dataset(tmp_path / "c", seed=2, **kwargs))
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert not [name for name in a if name.name.endswith(".tmp")]


def test_defaults_fast_valid_and_labelled(tmp_path):
    start = time.perf_counter()
    root = make_synthetic_dataset(tmp_path / "demo")
    assert time.perf_counter() - start < 2.0
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    source = load_records(f"{root}#site=synthetic_source")
    pool = load_records(f"{root}#site={','.join(TARGET_SITES)}&split=train")
    test = load_records(f"{root}#split=test")
    assert (len(source), len(pool), len(test)) == (60, 60, 30)
    assert {r.split for r in source} == {"train"}
    assert {r.site for r in test} <= set(TARGET_SITES)
    summary = check_inputs({"source": source, "pool": pool, "test": test}, {"source", "test"})
    assert summary.shapes == {(64, 64)} and summary.channel_kinds == {"gray"}
    for records in (pool, test):
        counts = Counter(r.site for r in records)
        a, b, c = (counts[s] for s in TARGET_SITES)
        assert a > b > c > 0
        assert a == round(0.6 * len(records))


def test_masks_binary_and_domains_differ(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", n_source=10, n_pool=20, n_test=0, size=48, seed=5)
    contrast: dict[str, list[float]] = {}
    for record in load_records(str(root)):
        image = np.asarray(Image.open(record.image), dtype=np.float32)
        mask = np.asarray(Image.open(record.mask))
        assert set(np.unique(mask)) == {0, 255}
        inside = mask > 0
        contrast.setdefault(record.site, []).append(image[inside].mean() - image[~inside].mean())
    # Source organ is bright; style b is inverted; style a is much lower in contrast.
    assert min(contrast["synthetic_source"]) > 60
    assert max(contrast["synthetic_target_b"]) < 0
    assert np.mean(contrast["synthetic_target_a"]) < 0.6 * np.mean(contrast["synthetic_source"])
