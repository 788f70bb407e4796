"""An embedding folder on disk: its files, ``embeddings.json``, the writers and the loaders of its sets.

The teacher embeds every clip of an audio path list and every distinct
caption of a caption CSV. Files written in the output folder (``emb_dir``):

==========================  ====================================================
``audio_emb.npy``           ``[N, d]`` L2-normalised audio embeddings (float16 by
                            default), one row per readable clip, in list order
``audio_paths.txt``         the N clips of those rows, one absolute path a line
``audio_stat.npy``          ``[N, 2]`` int64: each row's file size and
                            modification time (``st_size, st_mtime_ns``) when it
                            was embedded
``audio_skipped.csv``       ``index,wav_path,error,size,mtime_ns``: unreadable
                            clips, left out
``text_emb.npy``            ``[M, d]`` embeddings of the distinct captions
``text_captions.csv``       the caption table of those rows
                            (:func:`embeddings.lists.caption_table`)
``embeddings.json``         options, counts and model fingerprint (written last)
==========================  ====================================================

Every file is written atomically (a temporary file, then a rename); the
partial results of a run go to ``shards/`` (:mod:`embeddings.shards`).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os

import numpy as np

from dataset.disk import disk_full, is_disk_full
from dataset.manifest import atomic_write
from embeddings.lists import read_caption_table, read_path_list

__all__ = [
    "AUDIO_EMB", "AUDIO_PATHS", "AUDIO_SKIPPED", "AUDIO_STAT", "TEXT_EMB", "TEXT_CAPTIONS", "INFO", "SHARD_DIR",
    "STORAGE_DTYPES", "SKIPPED_FIELDS", "load_embedding_info", "update_info", "read_skipped", "save_npy",
    "write_rows", "load_audio_set", "load_caption_set",
]

AUDIO_EMB = "audio_emb.npy"
AUDIO_PATHS = "audio_paths.txt"
AUDIO_SKIPPED = "audio_skipped.csv"
AUDIO_STAT = "audio_stat.npy"
TEXT_EMB = "text_emb.npy"
TEXT_CAPTIONS = "text_captions.csv"
INFO = "embeddings.json"
SHARD_DIR = "shards"
STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}
SKIPPED_FIELDS = ["index", "wav_path", "error", "size", "mtime_ns"]


def load_embedding_info(out_dir):
    """The ``embeddings.json`` of an embedding folder (empty dict if absent)."""
    path = os.path.join(out_dir, INFO)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def update_info(out_dir, section, value):
    """Sets one section of ``embeddings.json`` (written atomically)."""
    # Read-modify-write under an flock on the folder itself: the DS stages of several target sets
    # (run in parallel by the toy pipeline) add their sections to one file, and none may be lost.
    folder_fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(folder_fd, fcntl.LOCK_EX)
        info = load_embedding_info(out_dir)
        info[section] = value
        text = json.dumps(info, indent=1, sort_keys=True)
        atomic_write(os.path.join(out_dir, INFO), lambda f: f.write(text), "w", encoding="utf-8")
    finally:
        os.close(folder_fd)  # releases the lock


def read_skipped(out_dir):
    """Rows of ``audio_skipped.csv`` (index, wav_path, error); empty if absent."""
    path = os.path.join(out_dir, AUDIO_SKIPPED)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def save_npy(path, array):
    """``numpy.save`` through a temporary file and a rename (no half-written ``.npy`` after a crash).

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "e.npy")
    >>> save_npy(p, np.eye(2, dtype=np.float16))
    >>> np.load(p).dtype, sorted(os.listdir(os.path.dirname(p)))
    (dtype('float16'), ['e.npy'])
    """
    atomic_write(path, lambda f: np.save(f, array), "wb")


def write_rows(out_path, shape, dtype, fill):
    """Writes the ``.npy`` ``out_path`` of ``shape`` atomically, its rows set by ``fill(memmap)``.

    Written through a memmap (bounded memory for millions of rows) into a
    temporary file of the same folder, then moved into place; the temporary
    file is removed if anything fails. Its blocks are reserved before any row
    is written (``posix_fallocate``): on a full disk the write stops at once
    with :class:`dataset.disk.DiskFullError`, where writing through the
    memmap would kill the process (``SIGBUS``).
    """
    if shape[0] == 0:
        save_npy(out_path, np.zeros(shape, dtype=dtype))
        return
    folder = os.path.dirname(os.path.abspath(out_path))
    tmp = os.path.join(folder, f".{os.path.basename(out_path)}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        _reserve(tmp)
        fill(out)
        out.flush()
        del out
        os.replace(tmp, out_path)
    except BaseException as err:
        written = None
        if os.path.exists(tmp):
            written = os.stat(tmp).st_blocks * 512  # the memmap file is sparse: its allocated bytes
            os.remove(tmp)
        full = disk_full(err, out_path, written)
        if full is not err:
            raise full from None
        raise


def _reserve(path):
    """Allocates every block of ``path`` now (a file system that cannot is left to allocate as it writes)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if is_disk_full(err):
            raise
    finally:
        os.close(fd)


def load_audio_set(emb_dir):
    """The audio embeddings of an embedding folder.

    Returns
    -------
    (emb, paths, info)
        ``emb`` a read-only memmap ``[N, d]``, ``paths`` the N clips, ``info``
        the ``audio`` section of ``embeddings.json``.
    """
    emb_path, list_path = os.path.join(emb_dir, AUDIO_EMB), os.path.join(emb_dir, AUDIO_PATHS)
    if os.path.isfile(os.path.join(emb_dir, SHARD_DIR, "audio-next.json")):
        raise SystemExit(f"The audio embeddings in {emb_dir} are half updated (the embedding step was interrupted "
                         "while replacing them); rerun it to finish.")
    for path in (emb_path, list_path):
        if not os.path.isfile(path):
            raise SystemExit(
                f"{path} not found: emb_dir must be the 'save' folder written by "
                "recipes/microsoft_curation_toemb.py (<output_folder>/save)."
            )
    emb = np.load(emb_path, mmap_mode="r")
    paths = read_path_list(list_path)
    if len(paths) != emb.shape[0]:
        raise SystemExit(
            f"{emb_path} has {emb.shape[0]} rows but {list_path} lists {len(paths)} clips; rerun the embedding step."
        )
    return emb, paths, load_embedding_info(emb_dir).get("audio", {})


def load_caption_set(emb_dir, name):
    """A caption embedding set ``<name>_emb.npy`` + ``<name>_captions.csv`` of an embedding folder.

    ``name`` is ``text`` for the training captions (embedding step) or
    ``ds_<dataset>`` for the DS captions (``retrieve_ds_t2t.py``).

    Returns
    -------
    (emb, table, info)
        Read-only memmap ``[M, d]``, the M caption-table entries, and the
        ``<name>`` section of ``embeddings.json``.
    """
    emb_path, table_path = os.path.join(emb_dir, f"{name}_emb.npy"), os.path.join(emb_dir, f"{name}_captions.csv")
    for path in (emb_path, table_path):
        if not os.path.isfile(path):
            hint = (
                "run recipes/microsoft_curation_toemb.py with --text_pathfile" if name == "text"
                else f"run recipes/retrieve_ds_t2t.py with --emb_dir={emb_dir} first (it writes the DS captions)"
            )
            raise SystemExit(f"{path} not found: {hint}.")
    emb = np.load(emb_path, mmap_mode="r")
    table = read_caption_table(table_path)
    if len(table) != emb.shape[0]:
        raise SystemExit(f"{emb_path} has {emb.shape[0]} rows but {table_path} has {len(table)} captions.")
    return emb, table, load_embedding_info(emb_dir).get(name, {})
