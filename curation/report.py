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
import dataclasses
import glob
import hashlib
import json
import os
import re
import tempfile

import numpy as np

from curation.report_render import FILES_DIR, read_results, render_html, render_md

__all__ = ["CuratedSet", "write_report", "sets_from_emb_dir", "cosine_profile", "example_rows", "main"]

EXAMPLES = 20
EXCERPT_SECONDS = 5.0
EXCERPT_RATE = 16000
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
    _atomic_text(html_path, render_html(title, folder, infos, leaks, results, extra_md))
    _atomic_text(md_path, render_md(title, folder, infos, leaks, results, extra_md))
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
