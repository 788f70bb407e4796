"""Text↔audio retrieval metrics from a caption × clip similarity matrix.

Both directions are scored from one matrix ``sim[caption, clip]`` (cosines)
and the clip each caption describes:

- **text→audio**: one query per caption; the items are all clips; exactly
  one is relevant (the caption's clip).
- **audio→text**: one query per clip; the items are all captions; the
  relevant ones are the clip's captions (five for Clotho and AudioCaps).

**Ranking and ties.** Items are sorted by decreasing score and ties are
broken *pessimistically*: among items with equal scores, the irrelevant ones
come first. So the rank of a query's only relevant item is
``1 + #{other items with score >= its score}``, and the ``m``-th best of
several relevant items (``m`` = 1, 2, ...) has rank
``m + #{irrelevant items with score >= its score}``. A collapsed model that
gives every item the same score therefore gets the worst ranks, not perfect
ones, and the result does not depend on the order of the items.

**Metrics** (for each direction, averaged over its queries):

- ``R@k`` (k = 1, 5, 10): fraction of queries whose *best-ranked* relevant
  item has rank ``<= k``.
- ``mAP@10``: mean over queries of
  ``AP@10 = (1 / n_rel) * sum over relevant items with rank r_m <= 10 of m / r_m``,
  where ``m / r_m`` is the precision at the rank of the ``m``-th relevant
  item and ``n_rel`` the number of the query's relevant items (all of them,
  not only those in the top 10). Text→audio has ``n_rel = 1``, so AP@10 is
  ``1 / rank`` if ``rank <= 10``, else 0 (the DCASE language-based audio
  retrieval definition); audio→text divides by the clip's 5 captions.
- ``median_rank``, ``mean_rank``: of the best-ranked relevant item (1 = best).

The evaluation sets (Clotho's evaluation split, AudioCaps' test split) are
read by :func:`read_retrieval_set`; :func:`write_results` writes
``retrieval_results.json``, ``text_to_audio.csv`` and ``audio_to_text.csv``.
"""

import json
import math
import os

import numpy as np

from dataset.corpora.audiocaps import read_audiocaps
from dataset.corpora.clotho import read_clotho
from dataset.corpora.files import find_metadata, read_csv_any_encoding
from dataset.manifest import atomic_write, read_caption_csv, write_csv
from dataset.shards import audio_exists

RECALL_KS = (1, 5, 10)
MAP_K = 10
METRICS = ("R@1", "R@5", "R@10", "mAP@10", "median_rank", "mean_rank")

RESULTS_JSON = "retrieval_results.json"
T2A_CSV = "text_to_audio.csv"
A2T_CSV = "audio_to_text.csv"

# dataset -> (reader, caption CSV of a split, columns that identify a clip in it)
DATASETS = {
    "clotho": (read_clotho, "clotho_captions_{split}.csv", ("file_name",)),
    "audiocaps": (read_audiocaps, "{split}.csv", ("youtube_id", "start_time")),
}


def relevant_ranks(scores, relevant):
    """Ranks (1-based, ascending) of each query's relevant items, ties broken pessimistically.

    Arguments
    ---------
    scores : array_like
        ``[Q, N]`` similarity of each query to each item.
    relevant : array_like of bool
        ``[Q, N]``; every query needs at least one relevant item.

    Returns
    -------
    list of numpy.ndarray
        For query ``q``, the sorted ranks of its relevant items; the ``m``-th
        (1-based) is ``m + #{irrelevant items with score >= its score}``.

    Example
    -------
    >>> [r.tolist() for r in relevant_ranks([[0.9, 0.5, 0.5, 0.1]], [[False, True, False, True]])]
    [[3, 4]]
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.ndim != 2 or scores.shape != relevant.shape:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be matrices of one shape.")
    out = []
    for q in range(scores.shape[0]):
        rel = np.sort(scores[q, relevant[q]])[::-1]
        if rel.size == 0:
            raise ValueError(f"Query {q} has no relevant item.")
        # Irrelevant scores sorted ascending: count of those >= s is size - searchsorted(s, "left").
        others = np.sort(scores[q, ~relevant[q]])
        ahead = others.size - np.searchsorted(others, rel, side="left")
        out.append(np.arange(1, rel.size + 1) + ahead)
    return out


def average_precision_at_k(ranks, k=MAP_K):
    """AP@k of one query from the sorted ranks of *all* its relevant items.

    ``sum over m with ranks[m-1] <= k of m / ranks[m-1]``, divided by ``len(ranks)``.

    Example
    -------
    >>> average_precision_at_k([1, 3, 20, 30, 40])  # (1/1 + 2/3) / 5
    0.3333333333333333
    >>> average_precision_at_k([11])
    0.0
    """
    ranks = np.asarray(ranks)
    hits = np.flatnonzero(ranks <= k)
    return float(np.sum((hits + 1) / ranks[hits]) / ranks.size)


def summarise(ranks, ks=RECALL_KS, map_k=MAP_K):
    """R@k, mAP@k, median and mean rank of a list of per-query sorted relevant ranks.

    Example
    -------
    >>> summarise([np.array([1]), np.array([4]), np.array([12])])  # doctest: +NORMALIZE_WHITESPACE
    {'R@1': 0.3333333333333333, 'R@5': 0.6666666666666666, 'R@10': 0.6666666666666666, 'mAP@10': 0.4166666666666667,
     'median_rank': 4.0, 'mean_rank': 5.666666666666667, 'queries': 3}
    """
    if not ranks:
        raise ValueError("No queries to score.")
    best = np.array([r[0] for r in ranks], dtype=np.float64)
    out = {f"R@{k}": float(np.mean(best <= k)) for k in ks}
    out[f"mAP@{map_k}"] = float(np.mean([average_precision_at_k(r, map_k) for r in ranks]))
    out["median_rank"] = float(np.median(best))
    out["mean_rank"] = float(np.mean(best))
    out["queries"] = len(ranks)
    return out


def relevance_matrix(caption_clip, n_clips):
    """``[n_captions, n_clips]`` bool: caption ``i`` is relevant to clip ``caption_clip[i]``.

    Example
    -------
    >>> relevance_matrix([0, 0, 1], 2).astype(int).tolist()
    [[1, 0], [1, 0], [0, 1]]
    """
    caption_clip = np.asarray(caption_clip, dtype=np.int64)
    if caption_clip.size and (caption_clip.min() < 0 or caption_clip.max() >= n_clips):
        raise ValueError(f"caption_clip holds clip indices outside [0, {n_clips}).")
    rel = np.zeros((caption_clip.size, n_clips), dtype=bool)
    rel[np.arange(caption_clip.size), caption_clip] = True
    return rel


def retrieval_metrics(sim, caption_clip):
    """Text→audio and audio→text metrics (see the module docstring for the definitions).

    Arguments
    ---------
    sim : array_like
        ``[n_captions, n_clips]`` similarities (cosines) of captions with clips.
    caption_clip : array_like of int
        ``[n_captions]``: the clip index each caption describes. Every clip
        needs at least one caption.

    Returns
    -------
    metrics : dict
        ``{"text_to_audio": {...}, "audio_to_text": {...}}``, each with
        ``R@1, R@5, R@10, mAP@10, median_rank, mean_rank, queries``.
    t2a_ranks : numpy.ndarray
        ``[n_captions]`` rank of each caption's clip.
    a2t_ranks : list of numpy.ndarray
        Per clip, the sorted ranks of its captions.

    Example
    -------
    >>> sim = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.6]]  # captions 0, 2 describe clip 0; caption 1 clip 1
    >>> m, t2a, a2t = retrieval_metrics(sim, [0, 1, 0])
    >>> t2a.tolist(), [r.tolist() for r in a2t], m["text_to_audio"]["R@1"]
    ([1, 1, 1], [[1, 2], [1]], 1.0)
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"sim must be [n_captions, n_clips], got shape {sim.shape}.")
    rel = relevance_matrix(caption_clip, sim.shape[1])
    if rel.shape[0] != sim.shape[0]:
        raise ValueError(f"{rel.shape[0]} caption_clip entries for {sim.shape[0]} captions.")
    empty = np.flatnonzero(~rel.any(axis=0))
    if empty.size:
        raise ValueError(f"Clip(s) {empty[:5].tolist()} have no caption.")
    t2a = relevant_ranks(sim, rel)
    a2t = relevant_ranks(sim.T, rel.T)
    metrics = {"text_to_audio": summarise(t2a), "audio_to_text": summarise(a2t)}
    return metrics, np.array([r[0] for r in t2a], dtype=np.int64), a2t


def chance_recall(n_items, n_relevant, k):
    """Expected R@k of a random ranking: P(at least one of ``n_relevant`` among ``n_items`` is in the top ``k``).

    Example
    -------
    >>> chance_recall(12, 1, 10), round(chance_recall(60, 5, 1), 4)
    (0.8333333333333334, 0.0833)
    """
    k = min(int(k), n_items)
    if n_items - n_relevant < k:
        return 1.0
    total = math.comb(n_items, k)
    return (total - math.comb(n_items - n_relevant, k)) / total


def format_table(metrics, chance=None):
    """A plain-text table: one row per direction, one column per metric (plus a chance row per direction).

    Example
    -------
    >>> m = {"text_to_audio": dict.fromkeys(METRICS, 1.0), "audio_to_text": dict.fromkeys(METRICS, 1.0)}
    >>> print(format_table(m).splitlines()[0])
    direction         R@1    R@5   R@10  mAP@10  median_rank  mean_rank
    """
    header = f"{'direction':<14}" + "".join(f"{name:>{max(7, len(name) + 2)}}" for name in METRICS)
    lines = [header]
    for direction in ("text_to_audio", "audio_to_text"):
        for label, values in ((direction, metrics[direction]), ("  chance", (chance or {}).get(direction))):
            if values is None:
                continue
            cells = []
            for name in METRICS:
                width = max(7, len(name) + 2)
                value = values.get(name)
                text = "" if value is None else (f"{value:.1f}" if "rank" in name else f"{value:.3f}")
                cells.append(f"{text:>{width}}")
            lines.append(f"{label:<14}" + "".join(cells))
    return "\n".join(lines)


# -------------------------------------------------------------------- data
def _listed_clips(folder, dataset, split):
    """Number of distinct clips the split's caption CSV lists (0 if the CSV is not found)."""
    _, pattern, key = DATASETS[dataset]
    path = find_metadata(folder, pattern.format(split=split))
    if path is None:
        return 0
    return len({tuple((row.get(k) or "").strip() for k in key) for row in read_csv_any_encoding(path)})


def read_retrieval_set(dataset, data_folder, split):
    """The clips on disk of one split and their captions.

    Arguments
    ---------
    dataset : str
        ``clotho`` or ``audiocaps``.
    data_folder : str
        The corpus root (docs/retrieval.md, ``data_folder``); the caption CSV may also
        sit one folder down, the audio anywhere below.
    split : str
        ``evaluation`` (Clotho) or ``test`` (AudioCaps), or another split.

    Returns
    -------
    clips : list of str
        Audio paths, in order of first appearance in the CSV.
    captions : list of str
    caption_clip : list of int
        Index into ``clips`` of each caption.
    counts : dict
        ``clips_listed``, ``clips_missing``, ``captions_missing``.
    """
    if dataset == "csv":
        return _read_caption_csv_set(data_folder)
    if dataset not in DATASETS:
        raise SystemExit(f"dataset must be one of {sorted(DATASETS) + ['csv']}, not {dataset!r}.")
    reader, pattern, _ = DATASETS[dataset]
    if not os.path.isdir(data_folder):
        raise SystemExit(f"--data_folder={data_folder} is not a folder; it must hold {pattern.format(split=split)}.")
    try:
        rows, captions_missing = reader(data_folder, splits=(split,))
    except FileNotFoundError as err:
        raise SystemExit(
            f"{err}\n--data_folder must be the {dataset} root holding {pattern.format(split=split)} "
            "(directly or one folder down) and the audio below it."
        ) from err
    clips, captions, caption_clip = _clips_and_captions(rows)
    listed = _listed_clips(data_folder, dataset, split)
    counts = {"clips_listed": listed, "clips_missing": max(0, listed - len(clips)),
              "captions_missing": captions_missing}
    return clips, captions, caption_clip, counts


def _clips_and_captions(rows):
    """The distinct clips of caption rows (first appearance order), the captions and each caption's clip index.

    Example
    -------
    >>> _clips_and_captions([{"wav_path": "a", "caption": "x"}, {"wav_path": "b", "caption": "y"},
    ...                      {"wav_path": "a", "caption": "z"}])
    (['a', 'b'], ['x', 'y', 'z'], [0, 1, 0])
    """
    clip_index, clips, captions, caption_clip = {}, [], [], []
    for row in rows:
        index = clip_index.setdefault(row["wav_path"], len(clips))
        if index == len(clips):
            clips.append(row["wav_path"])
        captions.append(row["caption"])
        caption_clip.append(index)
    return clips, captions, caption_clip


def _read_caption_csv_set(path):
    """``dataset: csv``: the clips and captions of a caption CSV (``ID,wav_path,caption``), e.g. a held-out split."""
    if not os.path.isfile(path):
        raise SystemExit(f"--data_folder={path}: with dataset csv it must be a caption CSV (ID,wav_path,caption).")
    rows = read_caption_csv(path)
    listed = {row["wav_path"] for row in rows}
    rows = [row for row in rows if audio_exists(row["wav_path"])]
    clips, captions, caption_clip = _clips_and_captions(rows)
    counts = {"clips_listed": len(listed), "clips_missing": len(listed) - len(clips), "captions_missing": 0}
    return clips, captions, caption_clip, counts


def drop_clips(clips, captions, caption_clip, dropped):
    """Drops the clips whose indices are in ``dropped`` and their captions; re-indexes the rest.

    Example
    -------
    >>> drop_clips(["a", "b", "c"], ["x", "y", "z", "w"], [0, 1, 2, 2], {1})
    (['a', 'c'], ['x', 'z', 'w'], [0, 1, 1])
    """
    new_index = {}
    for i in range(len(clips)):
        if i not in dropped:
            new_index[i] = len(new_index)
    kept = [(text, new_index[c]) for text, c in zip(captions, caption_clip) if c in new_index]
    return [clips[i] for i in new_index], [t for t, _ in kept], [c for _, c in kept]


# ------------------------------------------------------------------ output
def chance_levels(n_clips, caption_clip, n_captions):
    """Expected R@k of random rankings, per direction (audio→text averaged over the clips' caption counts)."""
    per_clip = np.bincount(caption_clip, minlength=n_clips)
    return {
        "text_to_audio": {f"R@{k}": chance_recall(n_clips, 1, k) for k in RECALL_KS},
        "audio_to_text": {f"R@{k}": float(np.mean([chance_recall(n_captions, int(n), k) for n in per_clip]))
                          for k in RECALL_KS},
    }


def write_results(folder, results, clips, captions, caption_clip, sim, t2a_ranks, a2t_ranks):
    """Writes ``retrieval_results.json`` and the two per-query CSVs (each atomically)."""
    clip_ids = [os.path.basename(p) for p in clips]
    top_clip = np.argmax(sim, axis=1)
    write_csv(
        os.path.join(folder, T2A_CSV),
        [{"caption_index": i, "caption": text, "clip": clip_ids[c], "rank": int(t2a_ranks[i]),
          "top_clip": clip_ids[int(top_clip[i])]}
         for i, (text, c) in enumerate(zip(captions, caption_clip))],
        fieldnames=["caption_index", "caption", "clip", "rank", "top_clip"],
    )
    write_csv(
        os.path.join(folder, A2T_CSV),
        [{"clip": clip_ids[j], "wav_path": clips[j], "best_rank": int(r[0]),
          "caption_ranks": ";".join(map(str, r.tolist())), "ap@10": average_precision_at_k(r)}
         for j, r in enumerate(a2t_ranks)],
        fieldnames=["clip", "wav_path", "best_rank", "caption_ranks", "ap@10"],
    )
    text = json.dumps(results, indent=1)
    atomic_write(os.path.join(folder, RESULTS_JSON), lambda f: f.write(text + "\n"), "w", encoding="utf-8")
