"""The curation report's two renderings: the HTML page (inline SVG figures, no script) and the Markdown text.

:mod:`curation.report` gathers the numbers of each curated set; this module turns them, the leakage rows and
the results table into ``report.html`` and ``report.md``.
"""

from __future__ import annotations

import csv
import html
import os

import numpy as np

from curation.svg import curve_svg, histogram_svg, interval_bars_svg, label_bars_svg

__all__ = ["read_results", "leakage_counts", "render_html", "render_md", "FILES_DIR", "LEAKAGE_ROWS_SHOWN"]

FILES_DIR = "report_files"
LEAKAGE_ROWS_SHOWN = 50


# ------------------------------------------------------------------ results and leakage
def read_results(path):
    """``(models, datasets, {(model, dataset): (mean, low, high)})`` of a results CSV (``top1_*`` columns)."""
    def number(value):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        return v if np.isfinite(v) else None

    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    models, datasets, values = [], [], {}
    for row in rows:
        model, dataset = row.get("model", ""), row.get("dataset", "")
        if not model or not dataset:
            continue
        models += [model] if model not in models else []
        datasets += [dataset] if dataset not in datasets else []
        values[(model, dataset)] = (number(row.get("top1_mean")), number(row.get("top1_ci_low")),
                                    number(row.get("top1_ci_high")))
    return models, datasets, values


LEAK_KEYS = ("seed", "target", "set", "path", "reference", "kind", "cosine", "mel_corr", "offset_s", "wave_corr",
             "action")


def leakage_counts(rows):
    """Rows per ``(seed, target, set, kind)``, with how many were dropped and warned.

    Example
    -------
    >>> leakage_counts([{"seed": 1, "target": "esc50", "set": "DU", "kind": "exact", "action": "dropped"},
    ...                 {"seed": 1, "target": "esc50", "set": "DU", "kind": "exact", "action": "warned"}])
    [{'seed': '1', 'target': 'esc50', 'set': 'DU', 'kind': 'exact', 'rows': 2, 'dropped': 1, 'warned': 1}]
    """
    counts = {}
    for r in rows:
        key = tuple("" if r.get(k) is None else str(r.get(k)) for k in ("seed", "target", "set", "kind"))
        c = counts.setdefault(key, {"rows": 0, "dropped": 0, "warned": 0})
        c["rows"] += 1
        action = str(r.get("action") or "")
        if action in ("dropped", "warned"):
            c[action] += 1
    return [dict(zip(("seed", "target", "set", "kind"), key), **c) for key, c in sorted(counts.items())]


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# ------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:0 16px 48px;color:#222;line-height:1.4}
header{border-bottom:2px solid #0072B2;margin-bottom:12px}
h1{margin:16px 0 4px}h2{border-bottom:1px solid #ccc;padding-bottom:2px;margin-top:36px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:8px 0 16px}figcaption{font-size:13px;color:#555}
.figs{display:flex;flex-wrap:wrap;gap:8px}
.empty,.empty td{color:#C00;font-weight:bold}
.note{color:#8a5a00}.no-leaks{color:#060;font-weight:bold}
audio{height:28px;width:220px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:14px}
dl.facts dt{color:#555}dl.facts dd{margin:0}
"""


def _e(text):
    return html.escape(str(text), quote=True)


def _fmt(v, digits=4):
    return "–" if v is None else f"{v:.{digits}f}"


def _facts_html(pairs):
    return '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _set_facts(info):
    cs = info["set"]
    facts = [("pairs CSV", f"<code>{_e(cs.pairs_csv)}</code>"),
             ("threshold", _e("–" if cs.threshold is None else f"{cs.threshold:g}")),
             ("pairs in the CSV", f"{info['pairs']:,}")]
    if "clips_with_pair" in info:
        facts.append(("clips with a pair", f"{info['clips_with_pair']:,}"))
        facts.append(("captions used", f"{info['captions_used']:,}"))
    prof = info.get("profile")
    if prof is not None:
        facts.append(("caption embeddings", f"<code>{_e(cs.caption_emb)}</code> ({prof['captions']:,} rows)"))
        facts.append(("unpaired clips", f"{prof['clips']:,}"))
        if prof["at_threshold"] is not None:
            facts.append(("cosines ≥ threshold (float32, here)", f"{prof['at_threshold']:,}"))
        if "clips_at_threshold" in info:
            facts.append(("clips whose best cosine ≥ threshold", f"{info['clips_at_threshold']:,}"))
        q = info.get("best_quantiles") or {}
        if q:
            facts.append(("best cosine per clip (min / 10% / median / 90% / max)",
                          " / ".join(f"{v:.3f}" for v in q.values())))
    q = info.get("sim_quantiles") or {}
    if q:
        facts.append(("cosine of the pairs (min / 10% / median / 90% / max)",
                      " / ".join(f"{v:.3f}" for v in q.values())))
    if cs.seed is not None:
        facts.append(("seed", _e(cs.seed)))
    return _facts_html(facts)


def _set_html(info, excerpt_dir_name):
    cs = info["set"]
    parts = [f'<section id="set-{cs.slug}" class="curated-set" data-kind="{_e(cs.kind)}">',
             f"<h2>{_e(cs.name)}</h2>", _set_facts(info)]
    parts += [f'<p class="note">{_e(n)}</p>' for n in info["notes"]]
    figs = []
    if "best_hist" in info:
        counts, edges = info["best_hist"]
        figs.append('<figure class="hist">' + histogram_svg(
            counts, edges, cs.threshold, title=f"{cs.name}: best cosine per unpaired clip",
            xlabel="best cosine of the clip with any caption", ylabel="clips")
            + "<figcaption>Each unpaired clip's best cosine with any caption of "
            f"<code>{_e(cs.caption_set)}</code>; dashed: the threshold.</figcaption></figure>")
    if "curve" in info:
        xs, ys = info["curve"]
        marker = (cs.threshold, info["pairs"], f"CSV: {info['pairs']:,} pairs") if cs.threshold is not None else None
        figs.append('<figure class="curve">' + curve_svg(
            xs, ys, cs.threshold, marker, title=f"{cs.name}: pairs kept vs threshold")
            + "<figcaption>Clip-caption cosines ≥ t (log scale); dot: the pairs the CSV holds.</figcaption></figure>")
    if "sim_hist" in info:
        counts, edges = info["sim_hist"]
        figs.append('<figure class="hist">' + histogram_svg(
            counts, edges, cs.threshold, title=f"{cs.name}: similarity of the DS pairs",
            xlabel="cosine of the caption with its label prompt", ylabel="pairs")
            + "<figcaption>DS similarities (caption vs label prompt); dashed: the threshold.</figcaption></figure>")
    if "label_counts" in info:
        counts = info["label_counts"]
        empty = [lab for lab, c in counts.items() if c == 0]
        figs.append('<figure class="labels">' + label_bars_svg(counts, title=f"{cs.name}: captions per label")
                    + "<figcaption>Captions per label" + (f"; <span class=\"empty\">{len(empty)} label(s) with none"
                                                          "</span>" if empty else "") + ".</figcaption></figure>")
    parts.append('<div class="figs">' + "".join(figs) + "</div>")
    if "label_counts" in info:
        rows = "".join(
            f'<tr class="empty"><td>{_e(lab)}</td><td class="num">none</td></tr>' if c == 0
            else f'<tr><td>{_e(lab)}</td><td class="num">{c:,}</td></tr>' for lab, c in info["label_counts"].items())
        parts.append(f'<details><summary>Captions per label (table)</summary><table class="labels"><tr><th>label</th>'
                     f"<th>captions</th></tr>{rows}</table></details>")
    ex = info["examples"]
    if ex:
        has_label = any("label" in r for r in ex)
        head = "<tr><th>#</th><th>audio</th><th>cosine</th>" + ("<th>label</th>" if has_label else "") + \
            "<th>caption</th><th>clip</th></tr>"
        rows = []
        for i, r in enumerate(ex, 1):
            status, value = r["excerpt"]
            audio = (f'<audio controls preload="none" src="{_e(excerpt_dir_name + "/" + value)}"></audio>'
                     if status == "ok" else f'<span class="note" title="{_e(value)}">audio unavailable</span>')
            rows.append(f'<tr class="example"><td class="num">{i}</td><td>{audio}</td>'
                        f'<td class="num">{r["similarity"]:.4f}</td>'
                        + (f"<td>{_e(r.get('label', ''))}</td>" if has_label else "")
                        + f"<td>{_e(r['caption'])}</td>"
                        f"<td><code>{_e(os.path.basename(r['wav_path']))}</code></td></tr>")
        parts.append(f"<h3>{len(ex)} example pairs, spread over the cosine range</h3>"
                     f'<table class="examples">{head}{"".join(rows)}</table>')
    else:
        parts.append('<p class="note">no pairs</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _leakage_html(rows):
    parts = ['<section id="leakage"><h2>Leakage</h2>']
    if rows is None:
        parts.append('<p class="note">No leakage audit was given for this report.</p>')
    elif not rows:
        parts.append('<p class="no-leaks">no leaks found</p>')
    else:
        counts = leakage_counts(rows)
        parts.append('<table class="leakage-counts"><tr><th>seed</th><th>target</th><th>set</th><th>kind</th>'
                     "<th>rows</th><th>dropped</th><th>warned</th></tr>" + "".join(
                         f"<tr><td>{_e(c['seed'])}</td><td>{_e(c['target'])}</td><td>{_e(c['set'])}</td>"
                         f"<td>{_e(c['kind'])}</td><td class=\"num\">{c['rows']}</td><td class=\"num\">{c['dropped']}"
                         f"</td><td class=\"num\">{c['warned']}</td></tr>" for c in counts) + "</table>")
        shown = rows[:LEAKAGE_ROWS_SHOWN]
        parts.append(f"<h3>Rows ({len(shown)} of {len(rows)} shown)</h3>")
        parts.append('<table class="leakage-rows"><tr>' + "".join(f"<th>{k}</th>" for k in LEAK_KEYS) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{_e(_cell(r.get(k)))}</td>" for k in LEAK_KEYS) + "</tr>"
                               for r in shown) + "</table>")
    parts.append("</section>")
    return "\n".join(parts)


def _results_html(results):
    parts = ['<section id="results"><h2>Zero-shot results</h2>']
    if results is None:
        parts.append('<p class="note">No results table was given for this report.</p>')
    else:
        path, (models, datasets, values) = results
        parts.append(f"<p>From <code>{_e(path)}</code>: top-1 accuracy, mean over seeds [interval].</p>")
        head = "<tr><th>model</th>" + "".join(f"<th>{_e(d)}</th>" for d in datasets) + "</tr>"
        body = []
        for m in models:
            cells = []
            for d in datasets:
                mean, low, high = values.get((m, d), (None, None, None))
                cells.append(f'<td class="num">{_fmt(mean, 3)}'
                             + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "") + "</td>")
            body.append(f"<tr><td>{_e(m)}</td>{''.join(cells)}</tr>")
        parts.append(f'<table id="results-table">{head}{"".join(body)}</table>')
        parts.append('<figure class="results">' + interval_bars_svg(
            datasets, models, values, title="Top-1 accuracy with intervals") + "<figcaption>Bars: mean top-1; "
            "whiskers: the interval (top1_ci_low to top1_ci_high).</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(title, folder, infos, leakage_rows, results, extra_md):
    nav = [f'<li><a href="#set-{i["set"].slug}">{_e(i["set"].name)}</a></li>' for i in infos]
    nav += ['<li><a href="#leakage">Leakage</a></li>', '<li><a href="#results">Zero-shot results</a></li>']
    if extra_md:
        nav.append('<li><a href="#notes">Notes</a></li>')
    overview = "".join(
        f'<tr><td><a href="#set-{i["set"].slug}">{_e(i["set"].name)}</a></td><td>{_e(i["set"].kind.upper())}</td>'
        f'<td class="num">{_e("–" if i["set"].threshold is None else format(i["set"].threshold, "g"))}</td>'
        f'<td class="num">{i["pairs"]:,}</td><td class="num">{i.get("clips_with_pair", 0):,}</td>'
        f'<td class="num">{i.get("captions_used", 0):,}</td></tr>' for i in infos)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
             f'<header id="top"><h1>{_e(title)}</h1><p>Run folder: <code>{_e(folder)}</code></p></header>',
             f'<nav id="contents"><h2>Contents</h2><ol>{"".join(nav)}</ol></nav>',
             '<section id="overview"><h2>Curated sets</h2><table class="overview"><tr><th>set</th><th>kind</th>'
             f"<th>threshold</th><th>pairs</th><th>clips</th><th>captions</th></tr>{overview}</table></section>"]
    parts += [_set_html(i, FILES_DIR) for i in infos]
    parts.append(_leakage_html(leakage_rows))
    parts.append(_results_html(results))
    if extra_md:
        parts.append(f'<section id="notes"><h2>Notes</h2><pre>{_e(extra_md)}</pre></section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ Markdown
def _md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return out


def render_md(title, folder, infos, leakage_rows, results, extra_md):
    out = [f"# {title}", "", f"Run folder: `{folder}`", "", "## Curated sets", ""]
    out += _md_table(["set", "kind", "threshold", "pairs", "clips", "captions"],
                     [[i["set"].name, i["set"].kind.upper(), "–" if i["set"].threshold is None
                       else f"{i['set'].threshold:g}", f"{i['pairs']:,}", f"{i.get('clips_with_pair', 0):,}",
                       f"{i.get('captions_used', 0):,}"] for i in infos])
    for i in infos:
        cs = i["set"]
        out += ["", f"## {cs.name}", "", f"- pairs CSV: `{cs.pairs_csv}`",
                f"- threshold: {'–' if cs.threshold is None else format(cs.threshold, 'g')}",
                f"- pairs in the CSV: {i['pairs']:,}"]
        out += [f"- note: {n}" for n in i["notes"]]
        prof = i.get("profile")
        if prof is not None:
            out.append(f"- unpaired clips: {prof['clips']:,}; captions of `{cs.caption_set}`: {prof['captions']:,}")
            if prof["at_threshold"] is not None:
                out.append(f"- cosines ≥ threshold (float32, here): {prof['at_threshold']:,}; clips whose best "
                           f"cosine ≥ threshold: {i.get('clips_at_threshold', 0):,}")
            q = i.get("best_quantiles") or {}
            if q:
                out.append("- best cosine per clip (min/10%/median/90%/max): "
                           + " / ".join(f"{v:.3f}" for v in q.values()))
            if "curve" in i and cs.threshold is not None:
                grid, at_least = prof["grid"], prof["at_least"]
                marks = sorted({round(cs.threshold + d, 3) for d in (-0.1, -0.05, 0.0, 0.05, 0.1)
                                if -1 <= cs.threshold + d <= 1})
                out.append("- cosines ≥ t: " + ", ".join(
                    f"t={t:g}: {int(at_least[min(np.searchsorted(grid, t - 1e-9), grid.size - 1)]):,}" for t in marks))
        q = i.get("sim_quantiles") or {}
        if q:
            out.append("- cosine of the pairs (min/10%/median/90%/max): " + " / ".join(f"{v:.3f}" for v in q.values()))
        if "label_counts" in i:
            empty = [lab for lab, c in i["label_counts"].items() if c == 0]
            out.append(f"- labels with no caption: {', '.join(empty) if empty else 'none'}")
            out += ["", *_md_table(["label", "captions"], [[lab, "none" if c == 0 else f"{c:,}"]
                                                           for lab, c in i["label_counts"].items()])]
        if i["examples"]:
            out += ["", f"Examples ({len(i['examples'])}):", ""]
            out += _md_table(["cosine", "caption", "clip", "excerpt"],
                             [[f"{r['similarity']:.4f}", r["caption"], os.path.basename(r["wav_path"]),
                               f"{FILES_DIR}/{r['excerpt'][1]}" if r["excerpt"][0] == "ok" else "unavailable"]
                              for r in i["examples"]])
    out += ["", "## Leakage", ""]
    if leakage_rows is None:
        out.append("No leakage audit was given for this report.")
    elif not leakage_rows:
        out.append("no leaks found")
    else:
        out += _md_table(["seed", "target", "set", "kind", "rows", "dropped", "warned"],
                         [[c["seed"], c["target"], c["set"], c["kind"], c["rows"], c["dropped"], c["warned"]]
                          for c in leakage_counts(leakage_rows)])
        shown = leakage_rows[:LEAKAGE_ROWS_SHOWN]
        out += ["", f"Rows ({len(shown)} of {len(leakage_rows)} shown):", ""]
        out += _md_table(list(LEAK_KEYS), [[_cell(r.get(k)) for k in LEAK_KEYS] for r in shown])
    out += ["", "## Zero-shot results", ""]
    if results is None:
        out.append("No results table was given for this report.")
    else:
        path, (models, datasets, values) = results
        out += [f"From `{path}`: top-1 mean [interval].", ""]
        rows = []
        for m in models:
            row = [m]
            for d in datasets:
                mean, low, high = values.get((m, d), (None, None, None))
                row.append(_fmt(mean, 3) + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None
                                            else ""))
            rows.append(row)
        out += _md_table(["model", *datasets], rows)
    if extra_md:
        out += ["", "## Notes", "", extra_md.rstrip()]
    return "\n".join(out) + "\n"
