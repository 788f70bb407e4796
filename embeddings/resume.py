"""Resuming audio shards after the files changed: what is gone is dropped, the finished shards are kept.

The audio shards of a run are cut from its list of files to embed, its
*layout*, recorded beside them (``shards/audio-items.txt``, each file's size
and modification time in ``shards/audio-items-keys.npy``; their digest is
in ``audio-config.json``). A run killed, then run again after one of those
files was deleted, rewritten or added, keeps the interrupted run's layout so
that its finished shards still hold the same items: an entry whose file is
gone or changed is *dropped* (it stays as a placeholder that is neither read
nor kept), and the files not in the layout (new, or rewritten) are appended
to it. One log line gives the count. Without this, the shards of another
list were refused and had to be deleted by hand.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from dataset.manifest import atomic_write
from embeddings.keys import listing_digest
from embeddings.lists import read_path_list, write_path_list
from embeddings.shards import remove_shards, shard_path, shard_ranges, wait_for_ranks
from embeddings.store import save_npy

logger = logging.getLogger(__name__)

__all__ = ["ITEMS", "ITEM_KEYS", "Layout", "shard_layout", "LayoutItems"]

ITEMS = "audio-items.txt"
ITEM_KEYS = "audio-items-keys.npy"
_ITEM_FIELDS = ("items", "items_digest")


@dataclass
class Layout:
    """The items the audio shards are cut from.

    ``paths`` and ``keys`` (int64 ``[n, 2]``) of each entry; ``owner`` its
    item (index in the embedded list) or -1 for a dropped entry.
    """

    paths: list
    keys: np.ndarray
    owner: np.ndarray

    @property
    def digest(self):
        return listing_digest(self.paths, self.keys)


class LayoutItems(torch.utils.data.Dataset):
    """The clips of a layout: a dropped entry is not read, it comes out as an unreadable clip (never kept)."""

    def __init__(self, clips, owner):
        self.clips, self.owner = clips, owner

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        if self.owner[index] >= 0:
            return self.clips[index]
        if hasattr(self.clips, "missing_item"):  # another reader's own form of a clip not read
            return self.clips.missing_item(index, "dropped")
        return {"index": index, "wav": torch.zeros(1, self.clips.num_samples), "ok": False, "error": "dropped"}


def _read_layout(shard_dir):
    """The recorded layout ``(paths, keys)``, or None if absent or unreadable."""
    try:
        paths = read_path_list(os.path.join(shard_dir, ITEMS))
        keys = np.load(os.path.join(shard_dir, ITEM_KEYS)).astype(np.int64).reshape(-1, 2)
    except (OSError, ValueError):
        return None
    return (paths, keys) if len(paths) == len(keys) else None


def _write_layout(shard_dir, layout):
    write_path_list(os.path.join(shard_dir, ITEMS), layout.paths)
    save_npy(os.path.join(shard_dir, ITEM_KEYS), np.ascontiguousarray(layout.keys, dtype=np.int64))


def _match(old_paths, old_keys, todo_paths, todo_keys, todo):
    """The interrupted layout with its gone entries dropped and the new items appended."""
    waiting = collections.defaultdict(collections.deque)
    for j, (path, key) in enumerate(zip(todo_paths, map(tuple, todo_keys.tolist()))):
        waiting[(path, key)].append(j)
    owner = np.full(len(old_paths), -1, dtype=np.int64)
    taken = np.zeros(len(todo_paths), dtype=bool)
    for i, (path, key) in enumerate(zip(old_paths, map(tuple, old_keys.tolist()))):
        queue = waiting.get((path, key))
        if queue:
            j = queue.popleft()
            owner[i], taken[j] = todo[j], True
    new = np.flatnonzero(~taken)
    return Layout(
        list(old_paths) + [todo_paths[j] for j in new],
        np.concatenate([old_keys.reshape(-1, 2), todo_keys[new].reshape(-1, 2)]).astype(np.int64),
        np.concatenate([owner, np.asarray(todo, dtype=np.int64)[new]]),
    )


def _resumed(shard_dir, stored, full, fresh, todo_paths, todo_keys, todo, out_dir):
    """The layout to go on with when the stored shards were cut from another list (rank 0), or None."""
    if stored is None or stored == dict(full, items=len(fresh.paths), items_digest=fresh.digest):
        return None
    if {k for k in set(stored) | set(full) if stored.get(k) != full.get(k)} - set(_ITEM_FIELDS):
        return None  # other options: embeddings.shards.check_shard_config refuses, naming them
    old = _read_layout(shard_dir)
    if old is None or listing_digest(*old) != stored.get("items_digest"):
        logger.info("%s holds partial audio embeddings of another list that was not recorded (an older version); "
                    "starting them over.", shard_dir)
        remove_shards(shard_dir, "audio")
        return fresh
    layout = _match(*old, todo_paths, todo_keys, todo)
    gone = np.flatnonzero(layout.owner[: len(old[0])] < 0)
    size = full["shard_size"]
    kept = sum(os.path.isfile(shard_path(shard_dir, "audio", s, e)) for s, e in shard_ranges(len(old[0]), size))
    example = f" (e.g. {old[0][gone[0]]})" if len(gone) else ""
    logger.warning("Audio embeddings in %s: %d file(s) of the interrupted run are gone or changed since%s and "
                   "dropped, %d added; its %d complete shard(s) are kept.", out_dir, len(gone), example,
                   len(layout.paths) - len(old[0]), kept)
    return layout


def shard_layout(shard_dir, out_dir, base_config, todo, paths, keys, options):
    """The layout of the audio shards of this run, recorded beside them, on every rank.

    Arguments
    ---------
    shard_dir, out_dir : str
        The shard folder and the embedding folder (for the log).
    base_config : dict
        The options of the shards, without ``items`` and ``items_digest``.
    todo : numpy.ndarray
        The items (indices in ``paths``) to embed, in order.
    paths, keys
        The listed files and their :func:`embeddings.keys.file_keys`.
    options : embeddings.options.AudioEmbeddingOptions
        ``batch_size``, ``shard_size``, ``dtype``, ``rank`` and ``world_size``.

    Returns
    -------
    Layout
        ``todo`` itself, unless an interrupted run's shards were cut from
        another list (see the module's docstring).
    """
    todo = np.asarray(todo, dtype=np.int64)
    todo_paths, todo_keys = [paths[i] for i in todo], np.asarray(keys, dtype=np.int64).reshape(-1, 2)[todo]
    fresh = Layout(todo_paths, todo_keys, todo)
    if options.rank != 0:
        wait_for_ranks(options.world_size)  # rank 0 records the layout first
        stored = _read_layout(shard_dir)
        if stored is None or listing_digest(*stored) == fresh.digest:
            return fresh
        return _match(*stored, todo_paths, todo_keys, todo)
    shard_size = int(math.ceil(options.shard_size / options.batch_size) * options.batch_size)
    full = dict(base_config, batch_size=options.batch_size, shard_size=shard_size, dtype=options.dtype)
    config_path = os.path.join(shard_dir, "audio-config.json")
    stored_config = None
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            stored_config = json.load(f)
    resumed = _resumed(shard_dir, stored_config, full, fresh, todo_paths, todo_keys, todo, out_dir)
    layout = resumed or fresh
    recorded = _read_layout(shard_dir)
    if recorded is None or listing_digest(*recorded) != layout.digest:
        os.makedirs(shard_dir, exist_ok=True)
        _write_layout(shard_dir, layout)
    if resumed is not None and os.path.isfile(config_path):  # the new list's options replace the old list's
        text = json.dumps(dict(full, items=len(layout.paths), items_digest=layout.digest), indent=1, sort_keys=True)
        atomic_write(config_path, lambda f: f.write(text), "w", encoding="utf-8")
    wait_for_ranks(options.world_size)
    return layout
