"""The HTML report: what it shows, that run text cannot break out of it, and that it needs no network."""

import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from xssr.cli import main
from xssr.data.names import read_named_rows
from xssr.report import run_report
from xssr.report.examples import best_and_worst, read_examples, save_examples
from xssr.report.html import SECTIONS, render_report
from xssr.report.pictures import outline

EVIL_SITE = "<script>alert(1)</script>"  # a pool site of tests/report/conftest.py


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, page):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _page(run):
    return (run / "report.html").read_text(encoding="utf-8")


def test_run_writes_a_report_with_every_section(tiny_run):
    page = _page(tiny_run)
    parsed = _Elements(page)
    ids = [attrs.get("id") for tag, attrs in parsed.tags if tag == "section"]
    assert ids == [key for key, _ in SECTIONS]
    text = "".join(parsed.text)
    for _, heading in SECTIONS:
        assert heading in text
    # every pick of xssr and random as a thumbnail (4 of 20 each), the whole pool not
    cards = [a for t, a in parsed.tags if t == "div" and a.get("class") == "card"]
    assert len(cards) == 2 * 4
    assert sum(1 for t, a in parsed.tags if t == "img" and a.get("src", "").startswith("data:image/jpeg")) == 8
    # the map: PCA and t-SNE (28 points), one panel per selecting method
    assert "<h3>PCA</h3>" in page and "<h3>t-SNE</h3>" in page
    assert page.count("<svg") == 2 * 2 + 1  # two projections x (xssr, random) + xssr's alpha curve
    # the alpha curve marks the alpha that was kept
    chosen = json.loads((tiny_run / "select" / "xssr" / "manifest.json").read_text())["outputs"]["alpha"]
    assert f"chosen {chosen:.2f}" in page
    # XSSR's picks show their components; random's have none
    assert "density" in page and re.search(r"z [+-]\d\.\d\d<", page)
    # the Dice of every method, as metrics.json has it
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for method, m in metrics.items():
        assert f"{m['dice']['overall']['mean']:.4f}" in page, method
    # 3 best and 3 worst of the 6 test images, per evaluated model (3 methods, and the source
    # model alone, which the default recipe fine-tunes), as overlays
    shots = [a for t, a in parsed.tags if t == "div" and a.get("class") == "card shot"]
    assert "source-only" in metrics and len(shots) == 4 * 6
    assert text.count("best") >= 9 and text.count("worst") >= 9


def test_file_and_site_names_are_text_not_markup(tiny_run):
    page = _page(tiny_run)
    parsed = _Elements(page)
    assert not [t for t, _ in parsed.tags if t == "script"]
    assert not [a for _, a in parsed.tags if any(k.startswith("on") for k in a)]  # no event handler attribute
    assert all(a["src"].startswith("data:image/") for t, a in parsed.tags if t == "img")
    assert "&lt;img src=x onerror=alert(1)&gt;_" in page  # pool file names, escaped
    assert "=HYPERLINK(&quot;x&quot;)_" in page  # test file names, quotes escaped
    assert EVIL_SITE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    text = "".join(parsed.text)
    assert "<img src=x onerror=alert(1)>_" in text and EVIL_SITE in text  # and shown as the user named them


def test_every_embedded_picture_decodes(tiny_run):
    import base64
    import io

    from PIL import Image

    sources = [a["src"] for t, a in _Elements(_page(tiny_run)).tags if t == "img"]
    assert len(sources) == 8 + 24
    for src in sources:
        kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", src).groups()
        with Image.open(io.BytesIO(base64.b64decode(data))) as picture:
            assert picture.format.lower() == kind and min(picture.size) >= 32


def test_page_fetches_nothing(tiny_run):
    page = _page(tiny_run)
    parsed = _Elements(page)
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "xlink:href", "srcset", "action", "data"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (tag, name, value)
    assert not re.search(r"https?://", page)
    assert not re.search(r"url\(|@import", page)  # no CSS fetch either
    csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_report_command_writes_where_asked_and_leaves_no_temporary_file(tiny_run, tmp_path):
    out = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(main, ["report", str(tiny_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in result.output
    assert out.read_text() == _page(tiny_run)  # the same data gives the same page
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]


def test_a_failed_report_keeps_the_old_file(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("the old report")

    def broken(**kwargs):
        raise RuntimeError("failed while rendering")

    monkeypatch.setattr(run_report, "render_report", broken)
    with pytest.raises(RuntimeError):
        run_report.write_report(tiny_run, out)
    assert out.read_text() == "the old report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("make, reason", [
    (lambda p: p / "missing", "no such folder"),
    (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "is a file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "not an xssr run folder"),
])
def test_a_folder_that_is_not_a_run_is_named(tmp_path, make, reason):
    folder = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 2
    assert f"error: {folder}: {reason}" in result.output and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_a_corrupt_file_of_the_run_is_named(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "report.html").unlink()
    (run / "metrics.json").write_text("{not json")
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 2 and f"error: {run / 'metrics.json'}: not valid JSON" in result.output
    assert not (run / "report.html").exists()


def test_run_csvs_name_images_below_the_data_root_and_resolve_back(tiny_run):
    for csv_path in (tiny_run / "select" / "xssr" / "selection.csv", tiny_run / "embed" / "pool_index.csv",
                     tiny_run / "evaluate" / "xssr" / "per_image.csv"):
        written = run_report.read_csv(csv_path)
        root = json.loads((csv_path.parent / "manifest.json").read_text())["outputs"]["data_root"]
        assert all(not row["image"].startswith("/") and root not in row["key"] for row in written), csv_path
        for row, resolved in zip(written, read_named_rows(csv_path)):
            assert resolved["image"] == str(run_report.Path(root) / row["image"])
            assert run_report.Path(resolved["image"]).is_file()


def test_missing_pictures_and_old_evaluations_are_explained(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "evaluate" / "random" / "examples.npz").unlink()  # as evaluated before examples were kept
    picked = read_named_rows(run / "select" / "xssr" / "selection.csv")[0]["image"]
    moved = tmp_path / "moved.png"
    shutil.copy(picked, moved)
    try:
        (run_report.Path(picked)).unlink()  # the data moved since the run
        page = run_report.render_report(**run_report.gather(run))
    finally:
        shutil.copy(moved, picked)
    assert "not readable" in page
    assert "No examples.npz" in page
    assert page.count('class="card shot"') == 3 * 6  # the other models still show theirs


def test_t_sne_is_left_out_above_the_limit_and_the_page_says_so(tiny_run):
    page = render_report(**run_report.gather(tiny_run, tsne_max_points=10))
    assert "<h3>PCA</h3>" in page and "<h3>t-SNE</h3>" not in page
    assert "t-SNE left out: 28 points" in page


def test_seeds_run_shows_paired_intervals(tiny_run, tmp_path):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    per_seed = {}
    for seed, shift in ((0, 0.0), (1, 0.01), (2, -0.02)):
        per_seed[str(seed)] = {m: {**v, "dice": {**v["dice"], "overall": {**v["dice"]["overall"],
                                                                          "mean": v["dice"]["overall"]["mean"] + shift
                                                                          * (m == "xssr")}}}
                               for m, v in metrics.items()}
    (tmp_path / "seeds.json").write_text(json.dumps({"seeds": [0, 1, 2], "metrics": per_seed}))
    shutil.copytree(tiny_run, tmp_path / "seed-0")
    page = render_report(**run_report.gather(tmp_path))
    assert "vs random: paired difference [95 % CI]" in page and "(n=3)" in page
    assert "those of seed-0/" in page
    diff = np.array([0.0, 0.01, -0.02]) + metrics["xssr"]["dice"]["overall"]["mean"] \
        - metrics["random"]["dice"]["overall"]["mean"]
    assert f"{diff.mean():+.4f} [" in page


def test_an_empty_report_says_why_each_section_is_empty():
    page = render_report(title="<t>")
    assert "xssr report: &lt;t&gt;" in page
    for text in ("evaluate stage has not run", "No embeddings", "No selections", "No alpha curve",
                 "No pool sites"):
        assert text in page


# ------------------------------------------------------------------ the pieces
def test_best_and_worst_never_share_an_image():
    dice = np.array([0.5, 0.9, 0.1, np.nan, 0.7])
    best, worst = best_and_worst(dice, 3)
    assert best.tolist() == [1, 4, 0] and worst.tolist() == [3, 2]
    best, worst = best_and_worst(np.array([0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5]), 3)
    assert best.tolist() == [3, 2, 6] and worst.tolist() == [4, 0, 5]
    assert [a.tolist() for a in best_and_worst(np.array([0.4]), 3)] == [[0], []]


def test_examples_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
    masks = (rng.random((5, 1, 8, 8)) > 0.5).astype(np.uint8)
    predicted = (rng.random((5, 1, 8, 8)) > 0.5).astype(np.uint8)
    dice = np.array([0.3, 0.8, 0.5, 0.1, 0.9])
    examples = read_examples(save_examples(tmp_path / "examples.npz", images, masks, predicted, dice, n=2))
    assert examples["index"].tolist() == [4, 1, 3, 0] and examples["kind"].tolist() == ["best", "best", "worst", "worst"]
    assert examples["image"].shape == (4, 8, 8, 1) and examples["image"].dtype == np.uint8
    assert examples["image"][0].min() == 0 and examples["image"][0].max() == 255
    assert np.array_equal(examples["truth"][2], masks[3, 0] > 0)
    assert np.array_equal(examples["predicted"][3], predicted[0, 0] > 0)
    with pytest.raises(ValueError, match="one image, mask, prediction and Dice"):
        save_examples(tmp_path / "x.npz", images, masks, predicted, dice[:3])
    assert not (tmp_path / "x.npz").exists()


def test_outline_is_the_border_of_the_mask():
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    expected = mask.copy()
    expected[2, 2] = False
    assert np.array_equal(outline(mask), expected)


def test_a_report_that_fails_after_a_run_is_a_warning_not_a_failed_run(tmp_path, monkeypatch, caplog):
    from xssr import api

    def broken(run, out=None):
        raise ValueError(f"{run}: something unreadable")

    monkeypatch.setattr(run_report, "write_report", broken)
    with caplog.at_level("WARNING", logger="xssr.api"):
        assert api._report_after_run(tmp_path) is None
    assert f"{tmp_path}: something unreadable" in caplog.text and f"xssr report {tmp_path}" in caplog.text
