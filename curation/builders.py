"""DU / DS / ADS pair sets from teacher embeddings, their summaries and the evaluation-overlap audit.

- DU (domain-unspecific): unpaired clip × training caption, cosine ≥ threshold.
- DS (domain-specific): training pairs whose caption's best cosine to a
  label prompt ``"this is a sound of <label>"`` is ≥ threshold; original audio.
- ADS (augmented DS): unpaired clip × DS caption, cosine ≥ threshold.

Output CSVs are ``ID,wav_path,caption,similarity`` (the ``--curation_csv`` of
student training), streamed block by block into a temporary file that is
renamed at the end, so a crash leaves no partial CSV.

Pair multiplicity (``caption_rows``): captions are embedded once per distinct
text, but the paper code embedded one text row per caption-CSV row, so a
caption carried by k rows gave every matching clip k identical pairs (k times
its weight in the student's data). ``"per_row"`` writes those k rows (IDs made
unique), ``"distinct"`` one (:func:`caption_repeats`).

Overlap audit: ESC-50 ``src_file``, UrbanSound8K ``fsID`` and the
``source_id`` of Clotho / FSD50K rows are Freesound ids, so a training
recording can be an evaluation recording. :func:`eval_freesound_ids` reads the
evaluation set's ids; the builders count (and can drop) kept pairs whose
audio (DS) or caption (DU/ADS: the caption was written for that recording)
comes from one of them.
"""

from __future__ import annotations

import csv
import json
import logging
import os

import numpy as np

from curation.join import PairStats, iter_threshold_join
from dataset.manifest import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "CURATION_FIELDS",
    "CAPTION_ROWS",
    "DS_PROMPT_PREFIX",
    "ds_prompts",
    "eval_freesound_ids",
    "row_ids",
    "caption_ids_in",
    "pair_ids",
    "caption_repeats",
    "write_curated_pairs",
    "select_ds_captions",
    "best_match_profile",
    "format_summary",
    "write_summary",
]

CURATION_FIELDS = ["ID", "wav_path", "caption", "similarity"]
#: ``caption_rows`` values: one pair per caption-CSV row carrying the caption (the paper code's), or
#: one per distinct caption (ours).
CAPTION_ROWS = ("per_row", "distinct")
DS_PROMPT_PREFIX = "this is a sound of "


def ds_prompts(labels, prefix=DS_PROMPT_PREFIX):
    """The DS prompts of a label list.

    Example
    -------
    >>> ds_prompts(["sea_waves", "cafe/restaurant"])
    ['this is a sound of sea waves', 'this is a sound of cafe restaurant']
    """
    from dataset.labels import prompt_label

    return [prefix + prompt_label(label) for label in labels]


# ------------------------------------------------------------------ overlap audit
def eval_freesound_ids(meta_path):
    """Freesound ids of an evaluation set, from its metadata file or its folder.

    Arguments
    ---------
    meta_path : str
        ESC-50 ``meta/esc50.csv`` (column ``src_file``), UrbanSound8K
        ``metadata/UrbanSound8K.csv`` (column ``fsID``), or the dataset folder
        holding either. TUT 2017 has no Freesound ids: an empty set.

    Returns
    -------
    (set of str, str)
        The ids and a description of where they came from.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "meta"))
    >>> _ = open(os.path.join(d, "meta", "esc50.csv"), "w").write(
    ...     "filename,fold,target,category,esc10,src_file,take\\n1-100032-A-0.wav,1,0,dog,True,100032,A\\n")
    >>> eval_freesound_ids(d)[0]
    {'100032'}
    """
    path = os.fspath(meta_path)
    if os.path.isdir(path):
        for rel in (("meta", "esc50.csv"), ("metadata", "UrbanSound8K.csv")):
            if os.path.isfile(os.path.join(path, *rel)):
                path = os.path.join(path, *rel)
                break
        else:
            logger.info(
                "No ESC-50 or UrbanSound8K metadata under %s (TUT 2017 has no Freesound ids): no overlap audit.", path
            )
            return set(), f"{path} (no Freesound ids)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Evaluation metadata not found: {path} "
                                "(give meta/esc50.csv, metadata/UrbanSound8K.csv or their folder).")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in ("src_file", "fsID") if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ValueError(f"{path} has neither a 'src_file' (ESC-50) nor an 'fsID' (UrbanSound8K) column.")
        ids = {str(row[column]).strip() for row in reader if str(row[column]).strip()}
    return ids, f"{path} ({column})"


def row_ids(value):
    """The ids of a ``source_id`` / ``source_ids`` cell (``;``-separated).

    Example
    -------
    >>> row_ids("12;34"), row_ids(""), row_ids(None)
    (['12', '34'], [], [])
    """
    return [v.strip() for v in str(value or "").split(";") if v.strip()]


def caption_ids_in(table, ids):
    """Bool per caption-table entry: one of its ``source_ids`` is in ``ids``.

    Example
    -------
    >>> caption_ids_in([{"source_ids": "1;2"}, {"source_ids": "3"}], {"2"}).tolist()
    [True, False]
    """
    return np.array([any(i in ids for i in row_ids(entry.get("source_ids"))) for entry in table], dtype=bool)


# ------------------------------------------------------------------ curated CSVs
def pair_ids(audio_paths):
    """An ID prefix per clip: the file stem, with the row number when stems repeat.

    Example
    -------
    >>> pair_ids(["/a/Yx.wav", "/b/Yy.wav"]), pair_ids(["/a/Y.wav", "/b/Y.wav"])
    (['Yx', 'Yy'], ['0_Y', '1_Y'])
    """
    stems = [os.path.splitext(os.path.basename(p))[0] for p in audio_paths]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{i}_{s}" for i, s in enumerate(stems)]


def caption_repeats(table, caption_rows):
    """Rows written per (clip, caption) match: the caption's ``n_rows`` (``per_row``) or None (``distinct``: one).

    Arguments
    ---------
    table : list of dict
        A caption table (:func:`embeddings.lists.caption_table`: ``n_rows`` = rows of the
        caption CSV that carry the text).
    caption_rows : str
        ``"per_row"`` or ``"distinct"`` (:data:`CAPTION_ROWS`).

    Returns
    -------
    numpy.ndarray of int64 or None

    Example
    -------
    >>> table = [{"n_rows": 3}, {"n_rows": 1}]
    >>> caption_repeats(table, "per_row").tolist(), caption_repeats(table, "distinct")
    ([3, 1], None)
    """
    if caption_rows not in CAPTION_ROWS:
        raise ValueError(f"caption_rows must be one of {', '.join(CAPTION_ROWS)}, got {caption_rows!r}.")
    if caption_rows == "distinct":
        return None
    counts = np.array([int(entry.get("n_rows") or 0) for entry in table], dtype=np.int64)
    if counts.size and counts.min() < 1:
        raise ValueError(
            "caption_rows=per_row needs each caption's row count (n_rows) in the caption table, and "
            f"{int((counts < 1).sum())} caption(s) have none: rerun the embedding step (and DS) to rewrite the table, "
            "or pass --caption_rows=distinct."
        )
    return counts


def _repeat_rows(q, k, sim, repeats):
    """Each match ``(q, k)`` ``repeats[k]`` times, with the copy number (0, 1, ...) of each row."""
    r = repeats[k]
    copy = np.arange(int(r.sum()), dtype=np.int64) - np.repeat(np.cumsum(r) - r, r)
    return np.repeat(q, r), np.repeat(k, r), np.repeat(sim, r), copy


def _checked_repeats(repeats, n_captions):
    """``repeats`` as int64, one count >= 1 per caption (None stays None)."""
    if repeats is None:
        return None
    repeats = np.asarray(repeats, dtype=np.int64)
    if repeats.shape != (n_captions,) or (repeats.size and repeats.min() < 1):
        raise ValueError(f"repeats must hold one count >= 1 per caption ({n_captions}).")
    return repeats


def _eval_overlap(q, k, sim, caption_in_eval, repeats, drop):
    """``(q, k, sim, flagged_rows)``: the pairs whose caption was written for an evaluation-set recording,
    counted in rows of the CSV (with repeats, as the pairs are), and left out when ``drop``."""
    flagged = caption_in_eval[k]
    flagged_rows = int(repeats[k][flagged].sum()) if repeats is not None else int(flagged.sum())
    if drop:
        q, k, sim = q[~flagged], k[~flagged], sim[~flagged]
    return q, k, sim, flagged_rows


def _pair_rows(q, k, sim, copy, prefixes, caption_keys, audio_paths, captions):
    """The CSV rows ``ID, wav_path, caption, similarity`` of a block's pairs (``copy``: the copy number of each)."""
    ids = (f"{prefixes[i]}__{caption_keys[j]}" for i, j in zip(q.tolist(), k.tolist()))
    if copy is not None:
        ids = (pid if c == 0 else f"{pid}__{c + 1}" for pid, c in zip(ids, copy.tolist()))
    rows = zip(ids, q.tolist(), k.tolist(), sim.tolist())
    return ((pid, audio_paths[i], captions[j], f"{s:.6f}") for pid, i, j, s in rows)


def write_curated_pairs(
    path,
    audio_emb,
    caption_emb,
    audio_paths,
    table,
    threshold,
    audio_bs=2048,
    text_bs=4096,
    top_k=None,
    query_rows=None,
    caption_in_eval=None,
    drop_eval_overlap=False,
    progress=True,
    desc="pairs",
    precision="fp32",
    device="cpu",
    repeats=None,
):
    """Joins clips with captions above ``threshold`` and streams the pairs to a curation CSV.

    Arguments
    ---------
    path : str
        Output CSV (``ID,wav_path,caption,similarity``), written atomically.
    audio_emb, caption_emb : array-like
        ``[N, d]`` and ``[M, d]`` unit rows (memmaps are fine).
    audio_paths : list of str
        The N clips.
    table : list of dict
        The M captions (caption table: ``ID``, ``caption``, ...).
    threshold : float
        Cosine threshold (``>=``).
    audio_bs, text_bs : int
        Block sizes of the join (clips, captions).
    top_k : int, optional
        At most this many captions per clip (the most similar).
    query_rows : array of int, optional
        Only these clips.
    caption_in_eval : numpy.ndarray of bool, optional
        Per caption: written for an evaluation-set recording (overlap audit).
    drop_eval_overlap : bool
        Leave those pairs out.
    progress : bool
        tqdm bar.
    desc : str
        Its label.
    precision : str
        Precision of the join's block products (``auto``, ``fp32``, ``bf16``,
        ``fp16``): the pairs are the same (:mod:`curation.join`), only the speed differs.
    device : str
        Where the block products run.
    repeats : numpy.ndarray of int, optional
        Rows to write per match of each caption (:func:`caption_repeats`;
        None: one). Copy ``c >= 1`` of a pair gets the ID ``<ID>__<c + 1>``;
        ``top_k`` counts distinct captions.

    Returns
    -------
    dict
        The summary (:class:`curation.join.PairStats` of the written rows,
        plus ``distinct_pairs``, ``eval_overlap_pairs`` and ``eval_overlap_dropped``).

    Example
    -------
    >>> import tempfile
    >>> from dataset.manifest import read_caption_csv
    >>> p = os.path.join(tempfile.mkdtemp(), "du.csv")
    >>> a = np.array([[1, 0], [0, 1]], np.float16); t = np.array([[0.6, 0.8]], np.float16)
    >>> s = write_curated_pairs(p, a, t, ["/x/Ya.wav", "/x/Yb.wav"], [{"ID": "c0", "caption": "rain, dripping"}], 0.7,
    ...                         progress=False)
    >>> s["pairs"], [(r["ID"], r["caption"]) for r in read_caption_csv(p)]
    (1, [('Yb__c0', 'rain, dripping')])
    >>> s = write_curated_pairs(p, a, t, ["/x/Ya.wav", "/x/Yb.wav"], [{"ID": "c0", "caption": "rain, dripping"}], 0.7,
    ...                         progress=False, repeats=np.array([2]))
    >>> s["pairs"], s["distinct_pairs"], [r["ID"] for r in read_caption_csv(p)]
    (2, 1, ['Yb__c0', 'Yb__c0__2'])
    """
    stats = PairStats(len(audio_paths), len(table), threshold)
    prefixes = pair_ids(audio_paths)
    captions = [entry["caption"] for entry in table]
    caption_keys = [entry["ID"] for entry in table]
    repeats = _checked_repeats(repeats, len(table))
    overlap = dropped = distinct = 0

    def write(f):
        nonlocal overlap, dropped, distinct
        writer = csv.writer(f)
        writer.writerow(CURATION_FIELDS)
        blocks = iter_threshold_join(
            audio_emb, caption_emb, threshold, query_block=audio_bs, key_block=text_bs, top_k=top_k,
            query_rows=query_rows, progress=progress, desc=desc, precision=precision, device=device,
        )
        for block in blocks:
            q, k, sim = block.query, block.key, block.sim
            if caption_in_eval is not None and q.size:
                q, k, sim, flagged_rows = _eval_overlap(q, k, sim, caption_in_eval, repeats, drop_eval_overlap)
                overlap += flagged_rows
                if drop_eval_overlap:
                    dropped += flagged_rows
            distinct += int(q.size)
            copy = None
            if repeats is not None and q.size:
                q, k, sim, copy = _repeat_rows(q, k, sim, repeats)
            stats.update(q, k, sim)
            writer.writerows(_pair_rows(q, k, sim, copy, prefixes, caption_keys, audio_paths, captions))

    atomic_write(path, write, "w", encoding="utf-8", newline="")
    summary = stats.as_dict()
    summary.update(distinct_pairs=distinct, eval_overlap_pairs=overlap if caption_in_eval is not None else None,
                   eval_overlap_dropped=dropped)
    return summary


def select_ds_captions(caption_emb, prompt_emb, threshold, block=16384):
    """DS selection: the captions whose most similar label prompt has cosine ≥ ``threshold``.

    Arguments
    ---------
    caption_emb : array-like
        ``[M, d]`` unit rows.
    prompt_emb : array-like
        ``[L, d]`` unit rows (one per label).
    threshold : float
        Cosine threshold.
    block : int
        Captions per block.

    Returns
    -------
    (caption_index, label_index, similarity) : numpy.ndarray
        Kept captions in table order, the index of their best prompt (ties:
        the first label) and that cosine.

    Example
    -------
    >>> c = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float16)
    >>> p = np.array([[0, 1], [1, 0]], np.float16)
    >>> [x.tolist() for x in select_ds_captions(c, p, 0.7)[:2]]
    [[0, 1, 2], [1, 0, 0]]
    """
    blocks = list(iter_threshold_join(caption_emb, prompt_emb, threshold, query_block=block,
                                      key_block=max(1, len(prompt_emb)), top_k=1))
    if not blocks:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return tuple(np.concatenate([getattr(b, f) for b in blocks]) for f in ("query", "key", "sim"))


# ------------------------------------------------------------------ summaries
def best_match_profile(queries, keys, sample=256, key_block=16384, quantiles=(0.0, 0.1, 0.5, 0.9, 0.99, 1.0)):
    """Quantiles of each query's best cosine, on up to ``sample`` evenly spaced queries (to choose a threshold).

    Example
    -------
    >>> q = np.array([[1, 0], [0, 1]], np.float32); k = np.array([[0.6, 0.8]], np.float32)
    >>> best_match_profile(q, k, quantiles=(0.0, 1.0))
    {'sampled_queries': 2, 'q0.00': 0.6, 'q1.00': 0.8}
    """
    n = len(queries)
    if n == 0 or len(keys) == 0:
        return {"sampled_queries": 0}
    rows = np.unique(np.linspace(0, n - 1, min(sample, n)).round().astype(np.int64))
    q = np.asarray(queries[rows], dtype=np.float32)
    best = np.full(len(rows), -np.inf, dtype=np.float32)
    for s in range(0, len(keys), key_block):
        best = np.maximum(best, (q @ np.asarray(keys[s : s + key_block], dtype=np.float32).T).max(axis=1))
    values = np.quantile(best.astype(np.float64), quantiles)
    profile = {"sampled_queries": int(len(rows))}
    profile.update({f"q{p:.2f}": round(float(v), 4) for p, v in zip(quantiles, values)})
    return profile


def format_summary(title, summary):
    """A few readable lines for the log and the console.

    Example
    -------
    >>> print(format_summary("DU", {"pairs": 3, "queries": 4, "queries_with_pair": 2, "keys": 3, "keys_used": 2,
    ...     "threshold": 0.5, "histogram": {"[0.50, 0.55)": 3}}))
    DU: 3 pairs (threshold 0.5); 2 / 4 clips with >= 1 caption; 2 / 3 distinct captions used
      [0.50, 0.55)  3
    """
    lines = [
        f"{title}: {summary['pairs']} pairs (threshold {summary['threshold']}); "
        f"{summary['queries_with_pair']} / {summary['queries']} clips with >= 1 caption; "
        f"{summary['keys_used']} / {summary['keys']} distinct captions used"
    ]
    if summary.get("eval_overlap_pairs") is not None:
        lines.append(
            f"  evaluation overlap ({summary.get('eval_ids_from', 'evaluation set')}): "
            f"{summary['eval_overlap_pairs']} pairs, {summary.get('eval_overlap_dropped', 0)} dropped"
        )
    lines += [f"  {label:<13} {count}" for label, count in summary.get("histogram", {}).items()]
    profile = summary.get("best_match_profile")
    if profile and profile.get("sampled_queries"):
        quantiles = ", ".join(f"{k[1:]}: {v}" for k, v in profile.items() if k.startswith("q"))
        lines.append(f"  best cosine per clip ({profile['sampled_queries']} sampled clips), quantiles {quantiles}")
    return "\n".join(lines)


def write_summary(path, summary):
    """Writes a summary dict as JSON (atomically)."""
    text = json.dumps(summary, indent=1, default=float)
    atomic_write(path, lambda f: f.write(text + "\n"), "w", encoding="utf-8")
