"""The audio rows keyed on their files: which rows of an embedding folder still hold, and the update that keeps them.

Audio rows are keyed on the file, not its name: a clip is reused when its
path, size and modification time are those recorded, re-embedded when its
size or modification time changed, embedded when new, and dropped when no
longer listed. The new audio files are first written next to the shards
(``shards/audio-next-*``, then ``shards/audio-next.json``) and only then
moved into place, so a run killed while replacing them finishes the move
when run again.
"""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np

from dataset.manifest import atomic_write, write_csv
from embeddings.keys import CACHE_KEY, listing_digest
from embeddings.lists import read_path_list, write_path_list
from embeddings.shards import remove_shards, shard_path, shard_ranges
from embeddings.store import (
    AUDIO_EMB, AUDIO_PATHS, AUDIO_SKIPPED, AUDIO_STAT, SHARD_DIR, SKIPPED_FIELDS, STORAGE_DTYPES, read_skipped,
    save_npy, update_info, write_rows,
)

logger = logging.getLogger(__name__)

__all__ = ["stored_listing", "plan_update", "merge_update", "write_update", "commit_update", "drop_old_version_shards"]

# The audio files staged by an update, moved into place once shards/audio-next.json exists.
_STAGED = (AUDIO_EMB, AUDIO_PATHS, AUDIO_STAT, AUDIO_SKIPPED)


def stored_listing(out_dir, done):
    """The files an audio embedding folder holds rows for, or ``(None, reason)`` when it cannot be trusted.

    Returns
    -------
    (listing, reason)
        ``listing``: ``paths`` and ``keys`` (int64 ``[n, 2]``) of every listed file in list order,
        ``rows`` (its row in ``audio_emb.npy``, -1 if it was unreadable), ``errors``
        (``{index: reason}``) and ``emb_path``.
    """
    if not done:
        return None, "no audio embeddings yet"
    if done.get("cache_key") != CACHE_KEY or not done.get("files_digest"):
        return None, ("written by an older version, without the size and modification time of each file "
                      "(so a file changed since cannot be told apart)")
    emb_path = os.path.join(out_dir, AUDIO_EMB)
    names = [AUDIO_EMB, AUDIO_PATHS, AUDIO_STAT, AUDIO_SKIPPED]
    absent = [n for n in names if not os.path.isfile(os.path.join(out_dir, n))]
    if absent:
        return None, f"{', '.join(absent)} missing"
    try:
        ok_paths = read_path_list(os.path.join(out_dir, AUDIO_PATHS))
        ok_keys = np.load(os.path.join(out_dir, AUDIO_STAT)).astype(np.int64).reshape(-1, 2)
        skipped = read_skipped(out_dir)
        n_rows = np.load(emb_path, mmap_mode="r").shape[0]
        n = len(ok_paths) + len(skipped)
        paths, keys = [None] * n, np.zeros((n, 2), dtype=np.int64)
        rows, errors = np.full(n, -1, dtype=np.int64), {}
        for entry in skipped:
            i = int(entry["index"])
            if paths[i] is not None:
                raise ValueError(f"index {i} listed twice in {AUDIO_SKIPPED}")
            paths[i] = entry["wav_path"]
            keys[i] = (int(entry["size"]), int(entry["mtime_ns"]))
            errors[i] = entry["error"]
        free = [i for i, p in enumerate(paths) if p is None]
        if not (len(free) == len(ok_paths) == len(ok_keys) == n_rows):
            raise ValueError(f"{len(ok_paths)} paths, {len(ok_keys)} keys and {n_rows} rows")
        for row, i in enumerate(free):
            paths[i] = ok_paths[row]
            rows[i] = row
        keys[free] = ok_keys
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        return None, f"its files do not agree ({err})"
    if listing_digest(paths, keys) != done["files_digest"]:
        return None, "its files do not match embeddings.json"
    return {"paths": paths, "keys": keys, "rows": rows, "errors": errors, "emb_path": emb_path}, ""


def plan_update(paths, keys, old):
    """``(reuse, counts)``: for each item, its index in the old listing if its file is unchanged (else -1)."""
    reuse = np.full(len(paths), -1, dtype=np.int64)
    counts = {"unchanged": 0, "changed": 0, "new": 0, "removed": 0}
    if old is None:
        counts["new"] = len(paths)
        return reuse, counts
    where = {p: i for i, p in enumerate(old["paths"])}
    for i, path in enumerate(paths):
        j = where.get(path)
        if j is None:
            counts["new"] += 1
        elif keys[i, 0] == old["keys"][j, 0] and keys[i, 1] == old["keys"][j, 1]:
            reuse[i] = j
            counts["unchanged"] += 1
        else:
            counts["changed"] += 1
    counts["removed"] = len(set(where) - set(paths))
    return reuse, counts


def merge_update(shard_dir, todo, reuse, old, n_items, shard_size, batch_size, dtype, out_path):
    """Writes the rows of an updated list into ``out_path``: reused rows from the old matrix, the rest from shards.

    Arguments
    ---------
    shard_dir : str
        Where the ``audio`` shards of the embedded items are.
    todo : numpy.ndarray
        int64: the item (list index) of each shard entry, in shard order; -1 for an entry that is
        dropped (its file gone since an interrupted run, :mod:`embeddings.resume`).
    reuse : numpy.ndarray
        int64 ``[n_items]``: for each item, its index in the old listing (``old``), or -1.
    old : dict or None
        The old listing (:func:`stored_listing`): ``emb_path``, ``rows`` (row in its matrix, -1 when
        it was unreadable) and ``errors``.
    n_items, shard_size, batch_size, dtype
        As for :func:`embeddings.shards.embed_items`.
    out_path : str
        The ``.npy`` file to write (atomically).

    Returns
    -------
    (ok, errors)
        ``ok`` bool ``[n_items]`` (the item has a row), ``errors`` ``{item: reason}`` for the others.
    """
    shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
    ranges = shard_ranges(len(todo), shard_size)
    missing = [r for r in ranges if not os.path.isfile(shard_path(shard_dir, "audio", *r))]
    if missing:
        raise RuntimeError(
            f"Cannot merge 'audio': {len(missing)} shard(s) missing in {shard_dir}, e.g. items {missing[0]}."
        )
    ok = np.zeros(n_items, dtype=bool)
    errors = {}
    reused = np.flatnonzero(reuse >= 0)
    old_rows = old["rows"][reuse[reused]] if len(reused) else np.zeros(0, dtype=np.int64)
    ok[reused] = old_rows >= 0
    for i in reused[old_rows < 0]:
        errors[int(i)] = old["errors"][int(reuse[i])]
    dim = None
    for s, e in ranges:
        live = todo[s:e] >= 0
        with np.load(shard_path(shard_dir, "audio", s, e)) as shard:
            ok[todo[s:e][live]] = shard["ok"][live]
            dim = shard["emb"].shape[1]
            for i in np.flatnonzero(~shard["ok"] & live):
                errors[int(todo[s + i])] = str(shard["error"][i])
    old_emb = np.load(old["emb_path"], mmap_mode="r") if old is not None and len(reused) else None
    if dim is None:
        dim = old_emb.shape[1] if old_emb is not None else 0
    storage = STORAGE_DTYPES[dtype]
    out_row = np.cumsum(ok) - 1  # the output row of each item that has one

    def fill(out):
        # A block at a time: bounded memory for millions of rows.
        keep = reused[old_rows >= 0]
        src, dst = old_rows[old_rows >= 0], out_row[keep]
        for b in range(0, len(src), 65536):
            out[dst[b : b + 65536]] = np.asarray(old_emb[src[b : b + 65536]], dtype=storage)
        for s, e in ranges:
            with np.load(shard_path(shard_dir, "audio", s, e)) as shard:
                good = shard["ok"] & (todo[s:e] >= 0)
                out[out_row[todo[s:e][good]]] = shard["emb"][good]

    # On Linux the old matrix may be replaced while mapped: its data stays readable until unmapped.
    write_rows(out_path, (int(ok.sum()), dim), storage, fill)
    return ok, errors


def write_update(out_dir, paths, keys, reuse, old, counts, section, options, owner=None):
    """Writes the updated audio files next to the shards, then moves them into ``out_dir`` (:func:`commit_update`).

    Arguments
    ---------
    out_dir : str
        The embedding folder.
    paths : list of str
        The listed files; ``keys`` their :func:`embeddings.keys.file_keys`.
    reuse, counts
        The plan of :func:`plan_update`; its items ``reuse < 0`` have their shards.
    old : dict or None
        The old listing (:func:`stored_listing`).
    section : dict
        The ``audio`` section to record; its ``rows``, ``skipped`` and ``update`` are set here.
    options : embeddings.options.AudioEmbeddingOptions
        ``shard_size``, ``batch_size`` and ``dtype`` of the shards.
    owner : numpy.ndarray, optional
        The item of each shard entry, -1 for a dropped one (:class:`embeddings.resume.Layout`);
        default: the items ``reuse < 0`` in order.

    Returns
    -------
    dict
        ``{item: reason}`` of the unreadable files.
    """
    shard_dir = os.path.join(out_dir, SHARD_DIR)
    todo = np.flatnonzero(reuse < 0) if owner is None else owner
    ok, errors = merge_update(shard_dir, todo, reuse, old, len(paths), options.shard_size, options.batch_size,
                              options.dtype, staged_path(shard_dir, AUDIO_EMB))
    write_path_list(staged_path(shard_dir, AUDIO_PATHS), [p for p, good in zip(paths, ok) if good])
    save_npy(staged_path(shard_dir, AUDIO_STAT), np.ascontiguousarray(keys[ok], dtype=np.int64))
    write_csv(
        staged_path(shard_dir, AUDIO_SKIPPED),
        [{"index": i, "wav_path": paths[i], "error": errors[i], "size": int(keys[i, 0]),
          "mtime_ns": int(keys[i, 1])} for i in sorted(errors)],
        fieldnames=SKIPPED_FIELDS,
    )
    section["rows"] = int(ok.sum())
    section["skipped"] = len(errors)
    section["update"] = counts
    text = json.dumps(section, indent=1, sort_keys=True)
    # From here on the update is decided: a run killed while moving the files finishes the move.
    atomic_write(os.path.join(shard_dir, "audio-next.json"), lambda f: f.write(text), "w", encoding="utf-8")
    commit_update(out_dir, shard_dir)
    return errors


def staged_path(shard_dir, name):
    """Where an update stages the new ``name`` before moving it into the embedding folder."""
    return os.path.join(shard_dir, f"audio-next-{name}")


def commit_update(out_dir, shard_dir):
    """Moves the staged audio files into ``out_dir``, then records their section: the end of an update.

    Idempotent: a run killed in the middle of it calls it again and ends in the same state.
    """
    with open(os.path.join(shard_dir, "audio-next.json"), encoding="utf-8") as f:
        section = json.load(f)
    for name in _STAGED:
        if os.path.isfile(staged_path(shard_dir, name)):
            os.replace(staged_path(shard_dir, name), os.path.join(out_dir, name))
    update_info(out_dir, "audio", section)
    remove_shards(shard_dir, "audio")
    return section


def drop_old_version_shards(shard_dir):
    """Partial audio shards of an older version (not keyed on the files) are removed, not resumed."""
    path = os.path.join(shard_dir, "audio-config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    if old.get("cache_key") != CACHE_KEY:
        logger.info("%s holds partial audio embeddings of an older version (not keyed on the files' size and "
                    "modification time); starting them over.", shard_dir)
        remove_shards(shard_dir, "audio")
