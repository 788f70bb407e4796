"""The curation report: one self-contained page a person opens from disk to judge the curated pair sets.

``write_report(out_dir, sets, ...)`` writes

- ``out_dir/report.html``: no network, no external CSS, JS or fonts; the figures are inline SVG
  (:mod:`curation.svg`);
- ``out_dir/report.md``: the same facts for a terminal;
- ``out_dir/report_files/``: a short excerpt (at most ``EXCERPT_SECONDS``, 16 kHz mono, the centre of the
  clip, as the teacher crops) of each example shown, nothing else (files of earlier runs are removed).

Per curated set (:class:`CuratedSet`): for DU and ADS the histogram of each unpaired clip's best cosine with
any caption of the set's caption embeddings and the number of clip-caption cosines ``>= t`` over a grid of
``t`` (both from blocks of the cosine matrix: a million clips by 100,000 captions never sits in memory), with
the threshold and the CSV's pair count marked; for DS the histogram of the DS similarities and the captions
per label, labels without a caption flagged ("none"); for all, ``EXAMPLES`` pairs spread over the cosine
range (quantiles of the sorted cosines: deterministic) with their audio, caption and cosine. Then the
leakage rows (counts per seed, target, set and kind, and the first ``LEAKAGE_ROWS_SHOWN`` rows) and the
results table with intervals and its bar chart. The page holds binned figures and the examples only, never
the pair list: a run of 100,000 pairs opens in well under a second (``benchmarks/report_page.py``).

Run by hand on a curation folder::

    python -m curation.report --emb_dir=RUN/seed1234/curation/save [--pairs CSV ...] [--results=RUN/results.csv]
        [--out=DIR]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import hashlib
import html
import json
import os
import re
import tempfile

import numpy as np

from curation.svg import curve_svg, histogram_svg, interval_bars_svg, label_bars_svg

__all__ = ["CuratedSet", "write_report", "sets_from_emb_dir", "cosine_profile", "example_rows", "main"]

EXAMPLES = 20
EXCERPT_SECONDS = 5.0
EXCERPT_RATE = 16000
FILES_DIR = "report_files"
LEAKAGE_ROWS_SHOWN = 50
#: Resolution of the pairs-vs-threshold curve (cosine units).
GRID_STEP = 0.001
#: Cosines per block of the clip x caption product (float32: 32 MB).
BLOCK_VALUES = 1 << 23
KINDS = ("du", "ds", "ads")
_THR = re.compile(r"_thr(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


@dataclasses.dataclass
class CuratedSet:
    """One curated pair set of a curation folder (``emb_dir``).

    ``name`` is the heading ("DU", "DS esc50", "ADS esc50"); its slug gives the section id
    (``set-du``, ``set-ds-esc50``). ``caption_set`` names the caption embeddings the set was joined
    against: ``<emb_dir>/<caption_set>_emb.npy`` ("text" for DU, "ds_esc50" for ADS and DS).
    ``labels`` (DS): the target's full label list, so that labels without a caption are flagged.

    Example
    -------
    >>> s = CuratedSet("ADS esc50", "ads", "/e", "/e/ads_esc50_pairs_thr0.8.csv", "ds_esc50", 0.8)
    >>> s.slug, s.caption_emb
    ('ads-esc50', '/e/ds_esc50_emb.npy')
    """

    name: str
    kind: str
    emb_dir: str
    pairs_csv: str
    caption_set: str
    threshold: float | None
    labels: list[str] | None = None
    seed: int | None = None

    @property
    def slug(self):
        return slugify(self.name)

    @property
    def caption_emb(self):
        return os.path.join(self.emb_dir, f"{self.caption_set}_emb.npy")


def slugify(name):
    """Lower-case letters, digits and ``-`` (an HTML id and a file-name part).

    Example
    -------
    >>> slugify("ADS esc50"), slugify("DS cafe/restaurant"), slugify("")
    ('ads-esc50', 'ds-cafe-restaurant', 'set')
    """
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "set"


# ------------------------------------------------------------------ discovery
def threshold_from_name(path):
    """The threshold a pairs CSV's name carries (``..._thr0.82.csv``), else None.

    Example
    -------
    >>> threshold_from_name("/e/du_pairs_thr0.82.csv"), threshold_from_name("ds_esc50_pairs.csv")
    (0.82, None)
    """
    m = _THR.search(os.path.splitext(os.path.basename(path))[0])
    return float(m.group(1)) if m else None


def summary_path(pairs_csv):
    """The summary JSON next to a pairs CSV: ``<stem>_summary.json``, or ``ds_<t>_summary.json`` for DS pairs."""
    stem = os.path.splitext(pairs_csv)[0]
    candidates = [stem + "_summary.json"]
    if stem.endswith("_pairs"):
        candidates.append(stem[: -len("_pairs")] + "_summary.json")
    return next((c for c in candidates if os.path.isfile(c)), None)


def read_summary(pairs_csv):
    path = summary_path(pairs_csv)
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _target_labels(emb_dir, target, summary):
    """The full label list of a DS target: the embedding step's record, a fixed class list, or the summary's."""
    try:
        with open(os.path.join(emb_dir, "embeddings.json"), encoding="utf-8") as f:
            labels = (json.load(f).get(f"ds_{target}") or {}).get("labels")
        if labels:
            return list(labels)
    except (OSError, ValueError):
        pass
    if isinstance(summary.get("labels"), list):
        return list(summary["labels"])
    try:
        from dataset.prepare_zeroshot import FIXED_CLASS_LISTS, canonical_dataset

        name = canonical_dataset(target)
        if name in FIXED_CLASS_LISTS:
            return list(FIXED_CLASS_LISTS[name]())
    except (ImportError, ValueError, OSError):
        pass
    return None


def _set_of(path, emb_dir, seed):
    base = os.path.basename(path)
    summary = read_summary(path)
    threshold = threshold_from_name(path)
    if threshold is None and summary.get("threshold") is not None:
        threshold = float(summary["threshold"])
    m_ds = re.match(r"ds_(.+?)_pairs", base)
    m_ads = re.match(r"ads_(.+?)_pairs", base)
    if m_ds:
        target = m_ds.group(1)
        return CuratedSet(f"DS {target}", "ds", emb_dir, path, f"ds_{target}", threshold,
                          _target_labels(emb_dir, target, summary), seed)
    if m_ads:
        target = m_ads.group(1)
        return CuratedSet(f"ADS {target}", "ads", emb_dir, path, summary.get("caption_set") or f"ds_{target}",
                          threshold, None, seed)
    caption_set = summary.get("caption_set") or "text"
    name = "DU" if base.startswith("du_") or caption_set == "text" else f"Pairs {os.path.splitext(base)[0]}"
    return CuratedSet(name, "du" if caption_set == "text" else "ads", emb_dir, path, caption_set, threshold,
                      None, seed)


def sets_from_emb_dir(emb_dir, pairs=None):
    """The curated sets of a curation folder: DU, then DS per target, then ADS per target.

    Arguments
    ---------
    emb_dir : str
        The curation step's folder (``audio_emb.npy``, ``du_pairs_thr*.csv``, ``ds_<t>_pairs.csv``,
        ``ads_<t>_pairs_thr*.csv`` and their summaries).
    pairs : list of str, optional
        Only these pairs CSVs (kind from the name: ``du_``, ``ds_<t>_pairs``, ``ads_<t>_pairs``; else the
        summary's ``caption_set``; else DU against ``text``).

    Returns
    -------
    list of CuratedSet
        Names made unique (the threshold, then the file name, is added when two sets share a name).
    """
    emb_dir = os.fspath(emb_dir)
    m = re.search(r"seed(\d+)", os.path.abspath(emb_dir))
    seed = int(m.group(1)) if m else None
    if pairs:
        paths = [os.fspath(p) for p in pairs]
    else:
        def found(pattern):
            return sorted(p for p in glob.glob(os.path.join(glob.escape(emb_dir), pattern))
                          if not p.endswith("_summary.json"))

        paths = found("du_pairs*.csv") + found("ds_*_pairs.csv") + found("ads_*_pairs*.csv")
    sets = [_set_of(p, emb_dir, seed) for p in paths]
    order = {k: i for i, k in enumerate(KINDS)}
    if not pairs:
        sets.sort(key=lambda s: (order[s.kind], s.name, s.threshold if s.threshold is not None else -9))
    names = [s.name for s in sets]
    for s in sets:
        if names.count(s.name) > 1:
            s.name = f"{s.name} thr{s.threshold:g}" if s.threshold is not None else s.name
    names = [s.name for s in sets]
    for s in sets:
        if names.count(s.name) > 1:
            s.name = f"{s.name} {os.path.splitext(os.path.basename(s.pairs_csv))[0]}"
    return sets


# ------------------------------------------------------------------ numbers
def _rows(path):
    """Float32 rows of an ``.npy`` embedding file, memory-mapped."""
    return np.load(path, mmap_mode="r")


def cosine_profile(audio_emb, caption_emb, threshold=None, step=GRID_STEP, block_values=BLOCK_VALUES):
    """Each clip's best cosine and the count of clip-caption cosines ``>= t`` on a grid, block by block.

    Arguments
    ---------
    audio_emb : array [N, D]
        Unit rows (any float dtype; memory-mapped is fine).
    caption_emb : array [M, D]
        Unit rows.
    threshold : float, optional
        Also count the cosines ``>= threshold`` exactly (float32 products).
    step : float
        Grid spacing on ``[-1, 1]``.
    block_values : int
        At most this many cosines in memory at once.

    Returns
    -------
    dict
        ``best`` (float32 [N]), ``grid`` (float64 [G]), ``at_least`` (int64 [G], cosines ``>= grid[i]``,
        up to float rounding at the grid points), ``at_threshold`` (int or None), ``clips``, ``captions``.

    Example
    -------
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]]); c = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> p = cosine_profile(a, c, threshold=0.7, step=0.1)
    >>> p["best"].tolist(), p["at_threshold"], int(p["at_least"][np.searchsorted(p["grid"], 0.55)])
    ([1.0, 0.800000011920929], 2, 3)
    """
    n, m = int(audio_emb.shape[0]), int(caption_emb.shape[0])
    grid = np.round(np.arange(-1.0, 1.0 + step / 2, step), 10)
    hist = np.zeros(grid.size, dtype=np.int64)
    best = np.full(n, -np.inf, dtype=np.float32)
    exact = 0
    if n and m:
        cap_block = max(1, min(m, block_values))
        clip_block = max(1, block_values // cap_block)
        inv = 1.0 / step
        for c0 in range(0, m, cap_block):
            caps = np.asarray(caption_emb[c0:c0 + cap_block], dtype=np.float32)
            for a0 in range(0, n, clip_block):
                sims = np.asarray(audio_emb[a0:a0 + clip_block], dtype=np.float32) @ caps.T
                np.maximum(best[a0:a0 + clip_block], sims.max(axis=1), out=best[a0:a0 + clip_block])
                if threshold is not None:
                    exact += int(np.count_nonzero(sims >= threshold))
                idx = np.floor((sims.ravel() + 1.0) * inv).astype(np.int64)
                np.clip(idx, 0, grid.size - 1, out=idx)
                hist += np.bincount(idx, minlength=grid.size)
    at_least = np.cumsum(hist[::-1])[::-1]
    return {"best": best, "grid": grid, "at_least": at_least, "at_threshold": exact if threshold is not None else None,
            "clips": n, "captions": m}


def _histogram(values, threshold=None, width=0.01, max_bins=100):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [], [0.0, 1.0]
    lo, hi = float(values.min()), float(values.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    lo, hi = np.floor(lo / width) * width, (np.floor(hi / width) + 1) * width
    bins = int(min(max(round((hi - lo) / width), 1), max_bins))
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return counts.tolist(), edges.tolist()


def _quantiles(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    return {f"q{q:.2f}": float(np.quantile(values, q)) for q in (0.0, 0.1, 0.5, 0.9, 1.0)}


def _read_pairs(path):
    """The pairs CSV as columns (``wav_path``, ``caption``, ``similarity``, and ``label`` if present)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    for col in ("wav_path", "caption"):
        if col not in frame.columns:
            raise ValueError(f"{path} has no {col!r} column (columns: {', '.join(frame.columns)}).")
    sim = (pd.to_numeric(frame["similarity"], errors="coerce").to_numpy(np.float64)
           if "similarity" in frame.columns else np.full(len(frame), np.nan))
    return frame, sim


def example_rows(similarity, k=EXAMPLES):
    """Row numbers of ``k`` examples spread over the cosine range: evenly spaced ranks, highest first.

    Example
    -------
    >>> example_rows([0.9, 0.5, 0.7, 0.6, 0.8], k=3)
    [0, 2, 1]
    >>> example_rows([0.5, 0.6], k=20)
    [1, 0]
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.size == 0:
        return []
    order = np.argsort(np.where(np.isfinite(sim), sim, -np.inf), kind="stable")
    ranks = np.unique(np.round(np.linspace(0, sim.size - 1, min(k, sim.size))).astype(np.int64))
    return [int(i) for i in order[ranks][::-1]]


# ------------------------------------------------------------------ excerpts
def _excerpt_format(fmt):
    if fmt == "ogg":
        import soundfile

        if "OGG" in soundfile.available_formats():
            return "ogg"
        fmt = "wav"
    if fmt != "wav":
        raise ValueError(f"excerpt_format must be 'ogg' or 'wav', got {fmt!r}.")
    return "wav"


def _write_excerpt(src, files_dir, fmt, seconds):
    """Writes the centre ``seconds`` of ``src`` (16 kHz mono) once; returns its file name."""
    import soundfile
    import torch

    from dataset.audio import probe_audio, read_audio_mono, resample

    name = "clip-" + hashlib.sha1(src.encode("utf-8")).hexdigest()[:16] + "." + fmt
    frames, rate, _ = probe_audio(src)
    want = int(round(seconds * rate))
    start = max(0, (frames - want) // 2)
    wav, rate = read_audio_mono(src, start=start, frames=min(want, frames))
    wav = resample(torch.from_numpy(np.ascontiguousarray(wav)), rate, EXCERPT_RATE).numpy()
    wav = np.clip(wav[: int(seconds * EXCERPT_RATE)], -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(dir=files_dir, prefix=".excerpt.", suffix="." + fmt)
    os.close(fd)
    try:
        if fmt == "ogg":
            soundfile.write(tmp, wav, EXCERPT_RATE, format="OGG", subtype="VORBIS")
        else:
            soundfile.write(tmp, wav, EXCERPT_RATE, subtype="PCM_16")
        os.replace(tmp, os.path.join(files_dir, name))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return name


# ------------------------------------------------------------------ per set
def _resolve(wav_path, csv_path):
    if "://" in wav_path or os.path.isabs(wav_path.split("#", 1)[0]):
        return wav_path
    return os.path.join(os.path.dirname(os.path.abspath(csv_path)), wav_path)


def analyse_set(cs, files_dir, excerpts, fmt, seconds=EXCERPT_SECONDS, k=EXAMPLES):
    """The numbers, figures and examples of one set (``excerpts``: ``{source path: file name or error}``)."""
    info = {"set": cs, "notes": [], "summary": read_summary(cs.pairs_csv)}
    try:
        frame, sim = _read_pairs(cs.pairs_csv)
    except (OSError, ValueError) as e:
        info["notes"].append(f"pairs CSV unreadable: {e}")
        frame, sim = None, np.zeros(0)
    info["pairs"] = int(sim.size)
    info["sim_quantiles"] = _quantiles(sim)
    if frame is not None:
        info["clips_with_pair"] = int(frame["wav_path"].nunique())
        info["captions_used"] = int(frame["caption"].nunique())
    if cs.kind in ("du", "ads"):
        audio_path = os.path.join(cs.emb_dir, "audio_emb.npy")
        missing = [p for p in (audio_path, cs.caption_emb) if not os.path.isfile(p)]
        if missing:
            info["notes"].append("missing embeddings: " + ", ".join(missing))
        else:
            prof = cosine_profile(_rows(audio_path), _rows(cs.caption_emb), cs.threshold)
            info["profile"] = prof
            best = prof["best"][np.isfinite(prof["best"])]
            info["best_quantiles"] = _quantiles(best)
            info["best_hist"] = _histogram(best, cs.threshold)
            if cs.threshold is not None:
                info["clips_at_threshold"] = int(np.count_nonzero(best >= cs.threshold))
            nonzero = np.nonzero(prof["at_least"])[0]
            if nonzero.size:
                hi = int(nonzero[-1]) + 1
                floor = min(float(np.quantile(best, 0.01)) if best.size else 0.0,
                            cs.threshold if cs.threshold is not None else 1.0) - 0.05
                lo = int(np.searchsorted(prof["grid"], floor))
                lo = max(0, min(lo, hi - 2))
                info["curve"] = (prof["grid"][lo:hi + 1].tolist(), prof["at_least"][lo:hi + 1].tolist())
    else:
        info["sim_hist"] = _histogram(sim, cs.threshold)
        per_label = {}
        summary_counts = info["summary"].get("captions_per_label")
        if isinstance(summary_counts, dict):
            per_label = {str(k_): int(v) for k_, v in summary_counts.items()}
        elif frame is not None and "label" in frame.columns:
            per_label = frame.groupby("label")["caption"].nunique().astype(int).to_dict()
        if cs.labels:
            counts = {label: int(per_label.get(label, 0)) for label in cs.labels}
            counts.update({lab: c for lab, c in per_label.items() if lab not in counts})
        else:
            counts = dict(sorted(per_label.items(), key=lambda kv: -kv[1]))
            n_labels = info["summary"].get("labels")
            if isinstance(n_labels, int) and n_labels > len(counts):
                info["notes"].append(f"{n_labels - len(counts)} label(s) of the target got no caption "
                                     "(their names are unknown here: pass the label list)")
        info["label_counts"] = counts
    examples = []
    if frame is not None:
        for i in example_rows(sim, k):
            src = _resolve(str(frame["wav_path"].iat[i]), cs.pairs_csv)
            if src not in excerpts:
                try:
                    excerpts[src] = ("ok", _write_excerpt(src, files_dir, fmt, seconds))
                except Exception as e:  # any unreadable clip: the example stays, without audio
                    excerpts[src] = ("error", f"{type(e).__name__}: {e}")
            row = {"wav_path": str(frame["wav_path"].iat[i]), "caption": str(frame["caption"].iat[i]),
                   "similarity": float(sim[i]), "excerpt": excerpts[src]}
            if "label" in frame.columns:
                row["label"] = str(frame["label"].iat[i])
            examples.append(row)
    info["examples"] = examples
    return info


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


LEAK_KEYS = ("seed", "target", "set", "path", "reference", "kind", "cosine", "mel_corr", "offset_s", "action")


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


def _render_html(title, folder, infos, leakage_rows, results, extra_md):
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


def _render_md(title, folder, infos, leakage_rows, results, extra_md):
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


# ------------------------------------------------------------------ entry points
def _atomic_text(path, text):
    from dataset.manifest import atomic_write

    atomic_write(path, lambda f: f.write(text), "w", encoding="utf-8")


def write_report(out_dir, sets, results_csv=None, leakage_rows=None, title="Curation report", extra_md=None,
                 excerpt_format="ogg", excerpt_seconds=EXCERPT_SECONDS, examples=EXAMPLES):
    """Writes ``out_dir/report.html``, ``out_dir/report.md`` and the excerpts in ``out_dir/report_files/``.

    Arguments
    ---------
    out_dir : str
        Created if needed; the three outputs are overwritten, excerpts of earlier runs not shown now removed.
    sets : list of CuratedSet
        The sets, in page order (:func:`sets_from_emb_dir` finds those of a curation folder).
    results_csv : str, optional
        The pipeline's ``results.csv`` (``model``, ``dataset``, ``top1_mean``, ``top1_ci_low``, ``top1_ci_high``).
    leakage_rows : list of dict, optional
        Keys ``seed, target, set, path, reference, kind, cosine, mel_corr, offset_s, action``; ``[]`` shows
        "no leaks found", None says no audit was given.
    title : str
        The page's heading.
    extra_md : str, optional
        Free text appended (Markdown; verbatim on the page).
    excerpt_format : str
        ``"ogg"`` (Vorbis, about a sixth of a WAV's size; WAV if this libsndfile lacks it) or ``"wav"``.
    excerpt_seconds : float
        Longest excerpt (the clip's centre).
    examples : int
        Example pairs per set.

    Returns
    -------
    dict
        ``{"html": path, "md": path, "excerpts": number of excerpt files}``.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    files_dir = os.path.join(out_dir, FILES_DIR)
    os.makedirs(files_dir, exist_ok=True)
    fmt = _excerpt_format(excerpt_format)
    sets = list(sets)
    seen = {}
    for s in sets:  # unique section ids
        base = s.slug
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            s.name = f"{s.name} ({seen[base]})" if s.seed is None else f"{s.name} seed {s.seed}"
    excerpts = {}
    infos = [analyse_set(s, files_dir, excerpts, fmt, excerpt_seconds, examples) for s in sets]
    keep = {value for status, value in excerpts.values() if status == "ok"}
    for name in os.listdir(files_dir):
        path = os.path.join(files_dir, name)
        if name not in keep and os.path.isfile(path):
            os.remove(path)
    results = None
    if results_csv:
        results = (os.fspath(results_csv), read_results(results_csv))
    dirs = sorted({os.path.abspath(s.emb_dir) for s in sets})
    folder = dirs[0] if len(dirs) == 1 else (os.path.commonpath(dirs) if dirs else out_dir)
    leaks = None if leakage_rows is None else list(leakage_rows)
    html_path, md_path = os.path.join(out_dir, "report.html"), os.path.join(out_dir, "report.md")
    _atomic_text(html_path, _render_html(title, folder, infos, leaks, results, extra_md))
    _atomic_text(md_path, _render_md(title, folder, infos, leaks, results, extra_md))
    return {"html": html_path, "md": md_path, "excerpts": len(keep)}


def main(argv=None):
    """``python -m curation.report --emb_dir=DIR [--pairs CSV ...] [--results=CSV] [--out=DIR]``: prints the page."""
    parser = argparse.ArgumentParser(prog="python -m curation.report", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--emb_dir", required=True, help="the curation folder (audio_emb.npy, pairs CSVs)")
    parser.add_argument("--pairs", nargs="+", help="only these pairs CSVs (default: every DU/DS/ADS CSV found)")
    parser.add_argument("--results", help="a results.csv to show (top1_mean, top1_ci_low, top1_ci_high)")
    parser.add_argument("--out", help="output folder (default: <emb_dir>/report)")
    parser.add_argument("--title", default=None, help="page title (default: Curation report: <folder>)")
    parser.add_argument("--leakage", help="a leakage.csv to show (python -m curation.audit, or a pipeline run's)")
    parser.add_argument("--excerpt_format", choices=("ogg", "wav"), default="ogg")
    args = parser.parse_args(argv)
    sets = sets_from_emb_dir(args.emb_dir, args.pairs)
    if not sets:
        parser.error(f"no DU/DS/ADS pairs CSV in {args.emb_dir} (give --pairs)")
    out = args.out or os.path.join(args.emb_dir, "report")
    title = args.title or f"Curation report: {os.path.abspath(args.emb_dir)}"
    leakage = None
    if args.leakage:
        from dataset.manifest import read_csv

        leakage = read_csv(args.leakage)
    written = write_report(out, sets, results_csv=args.results, leakage_rows=leakage, title=title,
                           excerpt_format=args.excerpt_format)
    print(written["html"])
    return written


if __name__ == "__main__":
    main()
