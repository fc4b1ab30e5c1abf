"""One self-contained HTML page from plain data: no file I/O, no network, no script.

Figures are inline SVG written here (a scatter, a line, bars: nothing a plotting library is
needed for, and text stays text); pictures arrive as PNG bytes and are embedded as ``data:``
URIs. Every piece of text that comes from a run (file names, sites, methods, settings) goes
through :func:`html.escape`, and the page's Content-Security-Policy forbids scripts and any
resource that is not embedded, so a file named ``<img src=x onerror=...>.png`` shows as text
and the page opens offline.

:func:`render_report` takes the sections as lists and dicts (``xssr.report.run_report``
gathers them from a run folder); a section given as None, or with a ``note`` and no data,
says why it is empty.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Iterable, Sequence

#: Section ids and headings, in page order. The browser test looks for these headings.
SECTIONS = (
    ("run", "Run"),
    ("dice", "Test Dice"),
    ("map", "Embedding map"),
    ("picks", "Picks"),
    ("alpha", "Alpha and coverage"),
    ("sites", "Sites"),
    ("predictions", "Predictions"),
)

SOURCE_COLOUR, POOL_COLOUR, PICK_COLOUR = "#9aa3ad", "#8ab8e6", "#d62728"
TRUTH_COLOUR, PREDICTION_COLOUR = "#2ca02c", "#d62728"  # also used by the overlays (run_report)

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 20px 40px;color:#1f2328;line-height:1.4}
h1{font-size:1.5em;margin:18px 0 4px}h2{font-size:1.2em;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}h3{font-size:1em;margin:14px 0 6px}
table{border-collapse:collapse;font-size:.9em}th,td{padding:3px 8px;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#57606a;font-size:.9em;margin:4px 0}.notes li{color:#57606a}
.row{display:flex;flex-wrap:wrap;gap:12px}.panel{border:1px solid #d0d7de;border-radius:6px;padding:6px}
.panel h3{margin:0 0 4px;font-size:.9em}
.card{width:150px;font-size:.72em;border:1px solid #d0d7de;border-radius:6px;padding:4px;overflow:hidden}
.card img{display:block;width:132px;height:132px;object-fit:contain;background:#000}
.card .name{overflow-wrap:anywhere;color:#57606a}.card table{font-size:1em}
.card td{padding:0 2px;border:0;white-space:nowrap}
.missing{width:132px;height:132px;background:#f6f8fa;color:#57606a;display:flex;align-items:center;
justify-content:center;text-align:center;font-size:.9em}
.shot{width:172px;font-size:.75em}.shot img{display:block;width:164px;height:164px;object-fit:contain;background:#000}
.bar{height:9px;border-radius:2px;display:inline-block;vertical-align:middle;margin-right:6px}
.legend span{display:inline-block;margin-right:14px;font-size:.85em}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:4px;vertical-align:middle}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:400px}
"""


def e(value: Any) -> str:
    """Text from a run, made safe for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 4, signed: bool = False) -> str:
    """A number for the page; None and NaN show as an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:+d}" if signed else str(value)
    return f"{float(value):+.{digits}f}" if signed else f"{float(value):.{digits}f}"


def data_uri(picture: bytes) -> str:
    """A PNG or JPEG (told apart by their first bytes) as a ``data:`` URI."""
    if picture[:8] == b"\x89PNG\r\n\x1a\n":
        mime = "image/png"
    elif picture[:3] == b"\xff\xd8\xff":
        mime = "image/jpeg"
    else:
        raise ValueError("Expected PNG or JPEG bytes for a picture of the report.")
    return f"data:{mime};base64," + base64.b64encode(picture).decode("ascii")


def _note(text: str | None) -> str:
    return f'<p class="note">{e(text)}</p>' if text else ""


def _section(key: str, body: str) -> str:
    heading = dict(SECTIONS)[key]
    return f'<section id="{key}"><h2>{e(heading)}</h2>\n{body}\n</section>'


# ------------------------------------------------------------------ figures (inline SVG)
def _scale(values: Iterable[float], lo_px: float, hi_px: float):
    values = [v for v in values if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    return lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)


def _dots(points: Sequence[Sequence[float]], sx, sy, colour: str, size: float, opacity: float) -> str:
    """Many small dots as one path of zero-length round-capped strokes (a few bytes per point)."""
    if not len(points):
        return ""
    d = "".join(f"M{sx(x):.1f} {sy(y):.1f}h0" for x, y in points)
    return (f'<path d="{d}" stroke="{colour}" stroke-width="{size}" stroke-linecap="round" '
            f'stroke-opacity="{opacity}" fill="none"/>')


def scatter_svg(source, pool, picks: Sequence[dict], extent: Sequence[float], size: int = 300) -> str:
    """Source and pool as small dots, ``picks`` ({"x", "y", "rank", "label"}) as numbered red dots.

    ``extent`` = (x_min, x_max, y_min, y_max), shared by the panels of one projection.
    """
    pad = 10
    sx = _scale(extent[:2], pad, size - pad)
    sy = _scale(extent[2:], size - pad, pad)  # y grows upwards
    parts = [f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}" role="img">',
             f'<rect width="{size}" height="{size}" fill="#fff"/>',
             _dots(source if source is not None else [], sx, sy, SOURCE_COLOUR, 4, 0.6),
             _dots(pool, sx, sy, POOL_COLOUR, 4.5, 0.85)]
    for pick in sorted(picks, key=lambda p: -p["rank"]):  # first picks drawn last, on top
        x, y = sx(pick["x"]), sy(pick["y"])
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{PICK_COLOUR}" stroke="#fff" '
                     f'stroke-width="1"><title>#{int(pick["rank"])} {e(pick.get("label"))}</title></circle>')
        if pick["rank"] <= 10:
            parts.append(f'<text x="{x + 5:.1f}" y="{y - 4:.1f}" font-size="9" fill="#000">{int(pick["rank"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_svg(points: Sequence[Sequence[float]], chosen: float | None, *, x_label: str, y_label: str,
             width: int = 360, height: int = 220) -> str:
    """A line through ``points`` (x, y) with the ``chosen`` x marked, and min / max ticks on each axis."""
    left, right, top, bottom = 56, 12, 12, 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    sx = _scale(xs, left, width - right)
    sy = _scale(ys, height - bottom, top)
    finite_y = [y for y in ys if math.isfinite(y)] or [0.0]
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#57606a"/>']
    for x in (min(xs), max(xs)):
        parts.append(f'<text x="{sx(x):.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                     f'{fmt(x, 2)}</text>')
    for y in (min(finite_y), max(finite_y)):  # 3 significant digits: coverage may be 0.00001 or 40
        parts.append(f'<text x="{left - 4}" y="{sy(y) + 3:.1f}" font-size="10" text-anchor="end">{y:.3g}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" font-size="11" '
                 f'text-anchor="middle">{e(x_label)}</text>')
    parts.append(f'<text x="12" y="{(top + height - bottom) / 2:.0f}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">{e(y_label)}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f} {sy(y):.1f}"
                    for i, (x, y) in enumerate(p for p in points if math.isfinite(p[1])))
    parts.append(f'<path d="{path}" fill="none" stroke="#0969da" stroke-width="2"/>')
    for x, y in points:
        if not math.isfinite(y):
            continue
        mark = chosen is not None and math.isclose(x, chosen)
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{5 if mark else 2.5}" '
                     f'fill="{PICK_COLOUR if mark else "#0969da"}"><title>{e(x_label)} {fmt(x, 2)}: '
                     f'{e(y_label)} {y:.4g}</title></circle>')
        if mark:
            parts.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 7:.1f}" font-size="11" fill="{PICK_COLOUR}">'
                         f'chosen {fmt(x, 2)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------ sections
def _run_section(facts: Sequence[tuple[str, str]], notes: Sequence[str], config_text: str | None) -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    body = f"<table>{rows}</table>"
    if notes:
        body += '<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"
    if config_text:
        body += f"<details><summary>Configuration</summary><pre>{e(config_text)}</pre></details>"
    return _section("run", body)


def _dice_section(dice: dict | None) -> str:
    if not dice or not dice.get("rows"):
        return _section("dice", _note((dice or {}).get("note") or "No test Dice: the evaluate stage has not run."))
    rows = dice["rows"]
    if dice.get("kind") == "seeds":
        head = ("<tr><th>method</th><th>recipe</th><th class=n>annotated</th><th class=n>seeds</th>"
                "<th class=n>test Dice (mean \u00b1 std over seeds)</th><th class=n>% of full</th>"
                "<th class=n>vs random: paired difference [95 % CI]</th></tr>")
        body = []
        for r in rows:
            d = r.get("versus_random")
            versus = "\u2013" if d is None else (f"{fmt(d['mean'], signed=True)} [{fmt(d['ci_low'], signed=True)}, "
                                                 f"{fmt(d['ci_high'], signed=True)}] (n={d['n']})")
            body.append(f"<tr><td>{e(r['method'])}</td><td>{e(r.get('recipe'))}</td><td class=n>{fmt(r.get('n_train'))}"
                        f"</td><td class=n>{r['seeds']}</td><td class=n>{fmt(r['mean'])} \u00b1 {fmt(r['std'])}</td>"
                        f"<td class=n>{_share(r.get('share'))}</td><td class=n>{e(versus)}</td></tr>")
    else:
        sites = dice.get("sites") or []
        with_source = any(r.get("share_source") is not None for r in rows)
        head = ("<tr><th>method</th><th>recipe</th><th class=n>annotated</th>"
                "<th class=n>test Dice (mean \u00b1 std over test images)</th><th class=n>test images</th>"
                "<th class=n>% of full</th>" + ("<th class=n>% of source-only</th>" if with_source else "")
                + "".join(f"<th class=n>{e(s)}</th>" for s in sites) + "</tr>")
        body = []
        for r in rows:
            per_site = "".join(f"<td class=n>{fmt(r['per_site'].get(s, {}).get('mean'))}</td>" for s in sites)
            source = f"<td class=n>{_share(r.get('share_source'))}</td>" if with_source else ""
            body.append(f"<tr><td>{e(r['method'])}</td><td>{e(r.get('recipe'))}</td><td class=n>{fmt(r.get('n_train'))}"
                        f"</td><td class=n>{fmt(r['mean'])} \u00b1 {fmt(r['std'])}</td><td class=n>{fmt(r.get('n'))}</td>"
                        f"<td class=n>{_share(r.get('share'))}</td>{source}{per_site}</tr>")
    return _section("dice", f"<table>{head}{''.join(body)}</table>" + _note(dice.get("note")))


def _share(value: float | None) -> str:
    return "\u2013" if value is None else f"{100 * value:.1f} %"


def _map_section(maps: Sequence[dict] | None, note: str | None) -> str:
    if not maps:
        return _section("map", _note(note or "No embeddings in this run folder."))
    legend = ('<p class="legend">'
              f'<span><i class="dot" style="background:{SOURCE_COLOUR}"></i>source</span>'
              f'<span><i class="dot" style="background:{POOL_COLOUR}"></i>pool</span>'
              f'<span><i class="dot" style="background:{PICK_COLOUR}"></i>picks (numbered in pick order; '
              'hover for the file)</span></p>')
    blocks = [legend]
    for projection in maps:
        panels = []
        for method, picks in projection["picks"].items():
            svg = scatter_svg(projection.get("source"), projection["pool"], picks, projection["extent"])
            panels.append(f'<div class="panel"><h3>{e(method)}</h3>{svg}</div>')
        blocks.append(f"<h3>{e(projection['name'])}</h3>" + _note(projection.get("note"))
                      + f'<div class="row">{"".join(panels)}</div>')
    return _section("map", "".join(blocks) + _note(note))


def _card(item: dict) -> str:
    if item.get("picture"):
        picture = f'<img src="{data_uri(item["picture"])}" alt="{e(item.get("name"))}">'
    else:
        picture = f'<div class="missing">{e(item.get("problem") or "no picture")}</div>'
    components = "".join("<tr><td>" + e(name) + "</td>" + "".join(f"<td class=n>{e(v)}</td>" for v in values)
                         + "</tr>" for name, *values in item.get("components", []))
    return (f'<div class="card" title="{e(item.get("path"))}">{picture}<b>#{int(item["rank"])}</b> '
            f'<span class="name">{e(item.get("name"))}</span><br>{e(item.get("site"))}'
            + (f"<table>{components}</table>" if components else "") + "</div>")


def _picks_section(picks: Sequence[dict] | None, note: str | None) -> str:
    if not picks:
        return _section("picks", _note(note or "No selections in this run folder."))
    blocks = []
    for method in picks:
        items = method["items"]
        shown = f"the first {len(items)} of {method['n_total']}" if len(items) < method["n_total"] else \
            f"all {method['n_total']}"
        blocks.append(f"<h3>{e(method['method'])}</h3>"
                      + _note(f"{shown} picks in rank order" + (f"; {method['note']}" if method.get("note") else ""))
                      + f'<div class="row">{"".join(_card(i) for i in items)}</div>')
    return _section("picks", _note(note) + "".join(blocks))


def _alpha_section(curves: Sequence[dict] | None, note: str | None) -> str:
    if not curves:
        return _section("alpha", _note(note or "No alpha curve: no method calibrated alpha (alpha = \"auto\")."))
    note = note or ("Coverage is the mean distance from each pool image to its nearest pick in the embedding "
                    "(lower covers the pool better); alpha = \"auto\" keeps the alpha of the lowest.")
    panels = [f'<div class="panel"><h3>{e(c["method"])}</h3>'
              + line_svg(c["points"], c.get("chosen"), x_label="alpha (novelty weight)",
                         y_label="coverage (Eq. 9)") + "</div>" for c in curves]
    return _section("alpha", _note(note) + f'<div class="row">{"".join(panels)}</div>')


def _sites_section(sites: dict | None) -> str:
    if not sites or not sites.get("methods"):
        return _section("sites", _note((sites or {}).get("note") or "No pool sites in this run folder."))
    methods = list(sites["methods"])
    pool_total = sum(sites["pool"].values()) or 1
    head = "<tr><th>site</th><th>pool</th>" + "".join(f"<th>{e(m)}</th>" for m in methods) + "</tr>"
    rows = []
    for site in sites["sites"]:
        n_pool = sites["pool"].get(site, 0)
        cells = [_share_cell(n_pool, pool_total, POOL_COLOUR)]
        for m in methods:
            counts = sites["methods"][m]
            cells.append(_share_cell(counts.get(site, 0), sum(counts.values()) or 1, PICK_COLOUR))
        rows.append(f"<tr><td>{e(site)}</td>{''.join(cells)}</tr>")
    return _section("sites", f"<table>{head}{''.join(rows)}</table>" + _note(sites.get("note")))


def _share_cell(n: int, total: int, colour: str) -> str:
    share = n / total
    return (f'<td><span class="bar" style="width:{100 * share:.1f}px;background:{colour}"></span>'
            f"{n} ({100 * share:.0f} %)</td>")


def _predictions_section(predictions: Sequence[dict] | None, note: str | None) -> str:
    if not predictions:
        return _section("predictions", _note(note or "No predictions: the evaluate stage has not run."))
    legend = ('<p class="legend">'
              f'<span><i class="dot" style="background:{TRUTH_COLOUR}"></i>annotation (outline)</span>'
              f'<span><i class="dot" style="background:{PREDICTION_COLOUR}"></i>prediction (outline and tint)</span></p>')
    blocks = [legend, _note(note)]
    for method in predictions:
        if not method.get("items"):
            blocks.append(f"<h3>{e(method['method'])}</h3>" + _note(method.get("note")))
            continue
        shots = "".join(
            f'<div class="card shot" title="{e(i.get("path"))}"><img src="{data_uri(i["picture"])}" alt="{e(i.get("name"))}">'
            f'<b>{e(i["kind"])}</b> Dice {fmt(i["dice"], 3)}<br><span class="name">{e(i.get("name"))}</span></div>'
            for i in method["items"])
        blocks.append(f"<h3>{e(method['method'])}</h3>" + _note(method.get("note")) + f'<div class="row">{shots}</div>')
    return _section("predictions", "".join(blocks))


def render_report(
    *,
    title: str,
    facts: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    config_text: str | None = None,
    dice: dict | None = None,
    maps: Sequence[dict] | None = None,
    map_note: str | None = None,
    picks: Sequence[dict] | None = None,
    picks_note: str | None = None,
    alpha_curves: Sequence[dict] | None = None,
    alpha_note: str | None = None,
    sites: dict | None = None,
    predictions: Sequence[dict] | None = None,
    predictions_note: str | None = None,
) -> str:
    """The whole page as one string.

    Parameters
    ----------
    title : the page title (a run folder's name, say).
    facts : (label, value) pairs shown first; ``notes``: remarks under them; ``config_text``: the
        configuration, shown folded.
    dice : ``{"kind": "run" | "seeds", "rows": [...], "sites": [...], "note": str}``; rows as
        :func:`xssr.report.run_text.metrics_rows` / ``seeds_rows`` make them (``versus_random`` a
        dict with ``mean``, ``ci_low``, ``ci_high``, ``n``).
    maps : one dict per projection: ``name``, ``source`` (n_source, 2) or None, ``pool`` (n_pool, 2),
        ``extent`` (x_min, x_max, y_min, y_max), ``picks`` {method: [{"x", "y", "rank", "label"}]},
        ``note``.
    picks : per method ``{"method", "n_total", "items": [{"rank", "name", "path", "site", "picture"
        (PNG or JPEG bytes, or None), "problem", "components": [(label, text, ...)]}], "note"}``.
    alpha_curves : per method ``{"method", "points": [(alpha, coverage)], "chosen"}``.
    sites : ``{"sites": [...], "pool": {site: n}, "methods": {method: {site: n}}, "note"}``.
    predictions : per method ``{"method", "items": [{"kind", "dice", "name", "path", "picture"}], "note"}``.
    """
    body = [
        _run_section(facts, notes, config_text),
        _dice_section(dice),
        _map_section(maps, map_note),
        _picks_section(picks, picks_note),
        _alpha_section(alpha_curves, alpha_note),
        _sites_section(sites),
        _predictions_section(predictions, predictions_note),
    ]
    nav = " \u00b7 ".join(f'<a href="#{key}">{e(heading)}</a>' for key, heading in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>xssr report: {e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>xssr report: {e(title)}</h1>\n<nav>{nav}</nav>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
