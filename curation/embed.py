"""Embedding extraction for curation: resumable, sharded, byte-reproducible ``.npy`` matrices.

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
``text_captions.csv``       the caption table of those rows (:func:`caption_table`)
``embeddings.json``         options, counts and model fingerprint (written last)
==========================  ====================================================

Audio rows are keyed on the file, not its name: a clip is reused when its
path, size and modification time are those recorded, re-embedded when its
size or modification time changed, embedded when new, and dropped when no
longer listed (the log gives the four counts). Caption rows are keyed on the
caption texts themselves.

Resuming: the items to embed are cut into fixed shards of ``shard_size``
items, each embedded in fixed batches and written atomically to
``shards/<name>-<start>-<stop>.npz``. A killed run keeps its finished shards;
run again, it embeds only the missing ones, and the merged files are byte for
byte those of an uninterrupted run (the same batches go through the same
model). Under ``torchrun`` shard ``k`` belongs to rank ``k % world_size``;
rank 0 merges once every shard exists. The new audio files are first
written next to the shards (``shards/audio-next-*``, then
``shards/audio-next.json``) and only then moved into place, so a run killed
while replacing them finishes the move when run again.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import logging
import math
import os
import time

import numpy as np
import torch

from dataset.clips import AudioClips, collate_audio
from models.precision import autocast
from models.text_encoder import tokenize
from dataset.manifest import atomic_write, file_key, write_csv

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EMB", "AUDIO_PATHS", "AUDIO_SKIPPED", "TEXT_EMB", "TEXT_CAPTIONS", "INFO", "SHARD_DIR",
    "AUDIO_STAT", "CACHE_KEY", "STORAGE_DTYPES", "read_path_list", "write_path_list", "caption_table",
    "write_caption_table", "file_keys", "listing_digest",
    "read_caption_table", "list_digest", "read_skipped", "audio_batch_encoder", "model_fingerprint",
    "embed_items", "embed_audio_files", "embed_captions", "encode_texts", "load_embedding_info",
    "save_npy", "update_info", "load_audio_set", "load_caption_set",
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
#: What an audio row is keyed on besides its path: the file's size and modification time.
CACHE_KEY = "stat"
SKIPPED_FIELDS = ["index", "wav_path", "error", "size", "mtime_ns"]
# The audio files staged by an update, moved into place once shards/audio-next.json exists.
_STAGED = (AUDIO_EMB, AUDIO_PATHS, AUDIO_STAT, AUDIO_SKIPPED)
CAPTION_TABLE_FIELDS = ["ID", "caption", "wav_path", "source", "source_ids", "n_rows"]


# ------------------------------------------------------------------ item lists
def read_path_list(path):
    """Reads a list of audio files, one path a line (blank lines ignored).

    Relative paths are taken relative to the list's folder.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "list.txt")
    >>> _ = open(p, "w").write("/a/Y1.wav\\n\\nb.wav\\n")
    >>> read_path_list(p) == ["/a/Y1.wav", os.path.join(d, "b.wav")]
    True
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio path list not found: {path} (expected one audio file path per line).")
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p)) for p in lines if p]


def write_path_list(path, paths):
    """Writes one path a line (atomically).

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "paths.txt")
    >>> write_path_list(p, ["/a/Y1.wav", "/a/Y 2,b.wav"])
    >>> read_path_list(p)
    ['/a/Y1.wav', '/a/Y 2,b.wav']
    """
    atomic_write(path, lambda f: f.write("".join(p + "\n" for p in paths)), "w", encoding="utf-8", newline="")


def caption_table(rows):
    """The distinct captions of caption-CSV rows, in order of first appearance.

    Several clips can carry the same caption text; embedding it once keeps a
    clip from receiving the same caption twice. Each entry keeps the first
    row's ``ID``, ``wav_path`` and ``source``, the number of rows with that
    text, and every ``source_id`` (Freesound ids, for the overlap audit)
    joined by ``;``.

    Arguments
    ---------
    rows : list of dict
        Rows with at least ``ID``, ``wav_path``, ``caption`` (from
        :func:`dataset.manifest.read_caption_csv`).

    Returns
    -------
    list of dict
        Keys ``ID, caption, wav_path, source, source_ids, n_rows``.

    Example
    -------
    >>> rows = [{"ID": "a", "wav_path": "/a.wav", "caption": "Rain.", "source_id": "7"},
    ...         {"ID": "b", "wav_path": "/b.wav", "caption": " Rain. ", "source_id": "9"},
    ...         {"ID": "c", "wav_path": "/c.wav", "caption": ""}]
    >>> [(t["ID"], t["caption"], t["source_ids"], t["n_rows"]) for t in caption_table(rows)]
    [('a', 'Rain.', '7;9', 2)]
    """
    table, where = [], {}
    for row in rows:
        text = (row.get("caption") or "").strip()
        if not text:
            continue
        if text not in where:
            where[text] = len(table)
            table.append({
                "ID": row["ID"], "caption": text, "wav_path": row.get("wav_path", ""),
                "source": row.get("source", ""), "source_ids": [], "n_rows": 0,
            })
        entry = table[where[text]]
        entry["n_rows"] += 1
        sid = str(row.get("source_id") or "").strip()
        if sid and sid not in entry["source_ids"]:
            entry["source_ids"].append(sid)
    for entry in table:
        entry["source_ids"] = ";".join(entry["source_ids"])
    return table


def write_caption_table(path, table, extra_fields=()):
    """Writes a caption table (atomically) with the standard columns first.

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "text_captions.csv")
    >>> write_caption_table(p, caption_table([{"ID": "a", "wav_path": "/a.wav", "caption": 'A "dog", {barks}'}]))
    >>> [(t["ID"], t["caption"], t["n_rows"]) for t in read_caption_table(p)]
    [('a', 'A "dog", {barks}', 1)]
    """
    write_csv(path, table, fieldnames=CAPTION_TABLE_FIELDS + [f for f in extra_fields if f not in CAPTION_TABLE_FIELDS])


def read_caption_table(path):
    """Reads a caption table written by :func:`write_caption_table` (``n_rows`` as int)."""
    from dataset.manifest import read_csv

    table = read_csv(path)
    for entry in table:
        entry["n_rows"] = int(entry.get("n_rows") or 0)
    return table


# ------------------------------------------------------------------ audio items
def audio_batch_encoder(model, device, chunk_batch, precision="fp32"):
    """``batch -> float32 [B, d]`` unit rows: chunk embeddings averaged per clip, then normalised.

    The model runs at ``precision`` (:func:`models.precision.autocast`); the rows are float32.
    """

    def encode(batch):
        wav = batch["wav"]
        with autocast(precision, device):
            parts = [model.encode_audio(wav[s : s + chunk_batch].to(device)).float().cpu()
                     for s in range(0, wav.shape[0], chunk_batch)]
        chunk_emb = torch.cat(parts)
        counts = batch["counts"]
        if int(counts.max()) == 1:
            emb = chunk_emb
        else:
            owner = torch.repeat_interleave(torch.arange(counts.numel()), counts)
            emb = torch.zeros(counts.numel(), chunk_emb.shape[1]).index_add_(0, owner, chunk_emb)
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb.numpy(), batch["ok"].numpy(), batch["error"]

    return encode


# ------------------------------------------------------------------ text items
class _Texts(torch.utils.data.Dataset):
    def __init__(self, texts):
        self.texts = list(texts)

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, index):
        return self.texts[index]


def _text_encoder(model, tokenizer, max_length, device, precision="fp32"):
    def encode(texts):
        tokens = {k: v.to(device) for k, v in tokenize(tokenizer, texts, max_length=max_length).items()}
        with autocast(precision, device):
            emb = model.encode_text(**tokens).float().cpu().numpy()
        return emb, np.ones(len(texts), dtype=bool), [""] * len(texts)

    return encode


def _text_collate(texts):
    return list(texts)


def encode_texts(model, tokenizer, texts, batch_size=256, max_length=100, device="cpu", progress=False, desc="texts",
                 precision="fp32"):
    """Embeds a (small) list of texts in memory: float32 ``[len(texts), d]`` unit rows.

    Used for label prompts and the DS captions; fixed batches make it reproducible.
    The model runs at ``precision`` (:func:`models.precision.autocast`).
    """
    encode = _text_encoder(model, tokenizer, max_length, device, precision)
    out = []
    model.eval()
    batches = range(0, len(texts), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=desc, unit="batch", dynamic_ncols=True)
    with torch.inference_mode():
        for s in batches:
            out.append(encode(list(texts[s : s + batch_size]))[0])
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


# ------------------------------------------------------------------ model identity
def model_fingerprint(model):
    """A short hash of a model's parameters and buffers (which weights made an embedding file).

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> model_fingerprint(a) == model_fingerprint(a), model_fingerprint(a) == model_fingerprint(b)
    (True, False)
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def list_digest(items):
    """A short hash of a list of strings (which paths or captions an embedding file holds).

    Example
    -------
    >>> list_digest(["a", "b"]) == list_digest(["a", "b"]), list_digest(["a", "b"]) == list_digest(["ab"])
    (True, False)
    """
    digest = hashlib.blake2b(digest_size=12)
    for item in items:
        digest.update(item.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def file_keys(paths, progress=False):
    """int64 ``[N, 2]``: each file's ``(st_size, st_mtime_ns)`` (``(-1, -1)`` when it cannot be stat'ed).

    Example
    -------
    >>> file_keys(["/nonexistent/a.wav"]).tolist()
    [[-1, -1]]
    """
    if progress and len(paths) >= 100_000:
        from tqdm import tqdm

        paths = tqdm(paths, desc="checking files", unit="file", dynamic_ncols=True)
    keys = np.array([file_key(p) for p in paths], dtype=np.int64)
    return keys.reshape(-1, 2)


def listing_digest(paths, keys):
    """A short hash of a list of files and their :func:`file_keys` (which files, in which state, in which order).

    Example
    -------
    >>> k = np.array([[4, 2]])
    >>> listing_digest(["a"], k) == listing_digest(["a"], k), listing_digest(["a"], k) == listing_digest(["a"], k + 1)
    (True, False)
    """
    digest = hashlib.blake2b(digest_size=12)
    digest.update(list_digest(paths).encode("ascii"))
    digest.update(np.ascontiguousarray(keys, dtype="<i8").tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------ shards
def _shard_path(shard_dir, name, start, stop):
    return os.path.join(shard_dir, f"{name}-{start:010d}-{stop:010d}.npz")


def _shard_ranges(n_items, shard_size):
    return [(s, min(s + shard_size, n_items)) for s in range(0, n_items, shard_size)]


def _check_shard_config(shard_dir, name, config):
    """Stores the options of the shards on first use; refuses to mix shards made with other options."""
    path = os.path.join(shard_dir, f"{name}-config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if old != config:
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if set(changed) <= {"items", "items_digest"}:
                raise SystemExit(
                    f"{shard_dir} holds partial '{name}' embeddings of other items: the list (or, for audio, a "
                    "file's size or modification time) changed since the interrupted run. Rerun with the same "
                    f"list and files to resume, or delete {shard_dir} to start over."
                )
            raise SystemExit(
                f"{shard_dir} holds partial '{name}' embeddings made with other options ({', '.join(changed)} differ). "
                f"Rerun with the same options to resume, or delete {shard_dir} "
                "(or choose another output folder) to start over."
            )
        return
    text = json.dumps(config, indent=1, sort_keys=True)
    atomic_write(path, lambda f: f.write(text), "w", encoding="utf-8")


def _save_shard(path, emb, ok, errors):
    def write(f):
        np.savez(f, emb=emb, ok=ok, error=np.array(errors, dtype=np.str_))

    atomic_write(path, write, "wb")


def embed_items(
    dataset,
    collate_fn,
    encode_fn,
    shard_dir,
    name,
    batch_size,
    shard_size,
    dtype="float16",
    num_workers=0,
    rank=0,
    world_size=1,
    progress=True,
    config=None,
):
    """Embeds the items of ``dataset`` that this rank owns and that have no shard yet.

    Arguments
    ---------
    dataset : torch.utils.data.Dataset
        Items in output order.
    collate_fn : callable
        Items → batch.
    encode_fn : callable
        batch → ``(float32 [B, d] unit rows, ok [B] bool, errors [B] str)``.
    shard_dir : str
        Where shards go.
    name : str
        Shard file prefix (``audio``, ``text``).
    batch_size, shard_size : int
        Items per batch; items per shard (rounded up to a multiple of ``batch_size``).
    dtype : str
        ``"float16"`` or ``"float32"``.
    num_workers : int
        DataLoader workers.
    rank, world_size : int
        This process and the number of processes (shard k → rank k % world_size).
    progress : bool
        tqdm bar.
    config : dict, optional
        Options that must match between a run and its resumption: stored
        beside the shards by the first run, compared by later ones.

    Returns
    -------
    int
        Number of shards this call wrote.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"Embedding dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}.")
    shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
    os.makedirs(shard_dir, exist_ok=True)
    if config is not None:
        _check_shard_config(shard_dir, name, dict(config, batch_size=batch_size, shard_size=shard_size, dtype=dtype))
    pending = [
        (s, e) for k, (s, e) in enumerate(_shard_ranges(len(dataset), shard_size))
        if k % world_size == rank and not os.path.isfile(_shard_path(shard_dir, name, s, e))
    ]
    if not pending:
        return 0
    # Fixed batches inside fixed shards: a resumed shard sees the same batches, hence the same bytes.
    batches = [list(range(b, min(b + batch_size, e))) for s, e in pending for b in range(s, e, batch_size)]
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=num_workers,
        worker_init_fn=_single_thread_worker if num_workers else None,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(e - s for s, e in pending), desc=f"embedding {name}", unit="item", dynamic_ncols=True)
    storage = STORAGE_DTYPES[dtype]
    shard_iter = iter(pending)
    start, stop = next(shard_iter)
    embs, oks, errors = [], [], []
    done = 0
    with torch.inference_mode():
        for batch in loader:
            emb, ok, err = encode_fn(batch)
            embs.append(emb.astype(storage))
            oks.append(np.asarray(ok, dtype=bool))
            errors.extend(err)
            if bar is not None:
                bar.update(len(ok))
            if sum(len(o) for o in oks) == stop - start:
                _save_shard(_shard_path(shard_dir, name, start, stop), np.concatenate(embs), np.concatenate(oks),
                            errors)
                done += 1
                embs, oks, errors = [], [], []
                start, stop = next(shard_iter, (None, None))
    if bar is not None:
        bar.close()
    return done


def _single_thread_worker(_):
    # Each loader worker decodes and resamples one clip at a time; more threads only compete.
    torch.set_num_threads(1)


def _merge_shards(shard_dir, name, n_items, shard_size, batch_size, out_path, dim_hint=None):
    """Concatenates the rows of every shard whose ``ok`` is set into ``out_path``; returns (ok, errors)."""
    shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
    ranges = _shard_ranges(n_items, shard_size)
    missing = [r for r in ranges if not os.path.isfile(_shard_path(shard_dir, name, *r))]
    if missing:
        raise RuntimeError(
            f"Cannot merge '{name}': {len(missing)} shard(s) missing in {shard_dir}, e.g. items {missing[0]}."
        )
    ok_all = np.zeros(n_items, dtype=bool)
    errors = {}
    dtype, dim = None, dim_hint
    for s, e in ranges:
        with np.load(_shard_path(shard_dir, name, s, e)) as shard:
            ok_all[s:e] = shard["ok"]
            dtype, dim = shard["emb"].dtype, shard["emb"].shape[1]
            for i in np.flatnonzero(~shard["ok"]):
                errors[s + int(i)] = str(shard["error"][i])
    def fill(out):
        row = 0
        for s, e in ranges:
            with np.load(_shard_path(shard_dir, name, s, e)) as shard:
                rows = shard["emb"][shard["ok"]]
            out[row : row + len(rows)] = rows
            row += len(rows)

    n_ok = 0 if dtype is None else int(ok_all.sum())
    _write_rows(out_path, (n_ok, dim or 0), dtype or np.float16, fill)
    return ok_all, errors


def _write_rows(out_path, shape, dtype, fill):
    """Writes the ``.npy`` ``out_path`` of ``shape`` atomically, its rows set by ``fill(memmap)``.

    Written through a memmap (bounded memory for millions of rows) into a
    temporary file of the same folder, then moved into place; the temporary
    file is removed if anything fails.
    """
    folder = os.path.dirname(os.path.abspath(out_path))
    tmp = os.path.join(folder, f".{os.path.basename(out_path)}.{os.getpid()}.tmp")
    if shape[0] == 0:
        np.save(tmp, np.zeros(shape, dtype=dtype))
        os.replace(tmp + ".npy", out_path)
        return
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(out)
        out.flush()
        del out
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _merge_update(shard_dir, todo, reuse, old, n_items, shard_size, batch_size, dtype, out_path):
    """Writes the rows of an updated list into ``out_path``: reused rows from the old matrix, the rest from shards.

    Arguments
    ---------
    shard_dir : str
        Where the ``audio`` shards of the embedded items are.
    todo : numpy.ndarray
        int64, increasing: the items (list indices) that went through the model, in shard order.
    reuse : numpy.ndarray
        int64 ``[n_items]``: for each item, its index in the old listing (``old``), or -1.
    old : dict or None
        The old listing (:func:`_stored_listing`): ``emb_path``, ``rows`` (row in its matrix, -1 when
        it was unreadable) and ``errors``.
    n_items, shard_size, batch_size, dtype
        As for :func:`embed_items`.
    out_path : str
        The ``.npy`` file to write (atomically).

    Returns
    -------
    (ok, errors)
        ``ok`` bool ``[n_items]`` (the item has a row), ``errors`` ``{item: reason}`` for the others.
    """
    shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
    ranges = _shard_ranges(len(todo), shard_size)
    missing = [r for r in ranges if not os.path.isfile(_shard_path(shard_dir, "audio", *r))]
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
        with np.load(_shard_path(shard_dir, "audio", s, e)) as shard:
            ok[todo[s:e]] = shard["ok"]
            dim = shard["emb"].shape[1]
            for i in np.flatnonzero(~shard["ok"]):
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
            with np.load(_shard_path(shard_dir, "audio", s, e)) as shard:
                good = shard["ok"]
                out[out_row[todo[s:e][good]]] = shard["emb"][good]

    # On Linux the old matrix may be replaced while mapped: its data stays readable until unmapped.
    _write_rows(out_path, (int(ok.sum()), dim), storage, fill)
    return ok, errors


def _staged(shard_dir, name):
    return os.path.join(shard_dir, f"audio-next-{name}")


def _commit_update(out_dir, shard_dir):
    """Moves the staged audio files into ``out_dir``, then records their section: the end of an update.

    Idempotent: a run killed in the middle of it calls it again and ends in the same state.
    """
    with open(os.path.join(shard_dir, "audio-next.json"), encoding="utf-8") as f:
        section = json.load(f)
    for name in _STAGED:
        if os.path.isfile(_staged(shard_dir, name)):
            os.replace(_staged(shard_dir, name), os.path.join(out_dir, name))
    _update_info(out_dir, "audio", section)
    _remove_shards(shard_dir, "audio")
    return section


def _stored_listing(out_dir, done):
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


def _plan_update(paths, keys, old):
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


def _shared_keys(paths, world_size, progress):
    """The file keys of rank 0, on every rank (so that all ranks plan the same update)."""
    distributed = world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed:
        return file_keys(paths, progress)
    box = [file_keys(paths, progress) if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _remove_shards(shard_dir, name):
    for entry in os.listdir(shard_dir) if os.path.isdir(shard_dir) else []:
        if entry.startswith(f"{name}-"):
            os.remove(os.path.join(shard_dir, entry))
    if os.path.isdir(shard_dir) and not os.listdir(shard_dir):
        os.rmdir(shard_dir)


def load_embedding_info(out_dir):
    """The ``embeddings.json`` of an embedding folder (empty dict if absent)."""
    path = os.path.join(out_dir, INFO)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _update_info(out_dir, section, value):
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


def _prepare_shard_dir(shard_dir, name, config, dtype, batch_size, shard_size, rank, world_size):
    # Rank 0 validates (or records) the options before any rank adds a shard.
    if rank == 0:
        os.makedirs(shard_dir, exist_ok=True)
        shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
        _check_shard_config(shard_dir, name, dict(config, batch_size=batch_size, shard_size=shard_size, dtype=dtype))
    _wait_for_ranks(world_size)


def _wait_for_ranks(world_size):
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _up_to_date(done, section, precision):
    """True when a recorded section has the same inputs and options (an absent precision is fp32)."""
    return bool(done) and {k: done.get(k) for k in section} == section and done.get("precision", "fp32") == precision


def embed_audio_files(
    model,
    paths,
    out_dir,
    sample_rate,
    duration,
    crop="center",
    chunking=False,
    max_chunks=None,
    batch_size=32,
    shard_size=4096,
    num_workers=0,
    dtype="float16",
    device="cpu",
    rank=0,
    world_size=1,
    progress=True,
    model_id="",
    precision="fp32",
):
    """Embeds every clip of ``paths`` into ``out_dir/audio_emb.npy`` (+ ``audio_paths.txt``, ``audio_stat.npy``,
    ``audio_skipped.csv``).

    Each file is keyed on its path, size and modification time: when
    ``embeddings.json`` records the same options, a file whose key is
    unchanged keeps its row (or its place in ``audio_skipped.csv``), a changed
    or new file is embedded, a file no longer listed is dropped, and the log
    says how many of each. Nothing is done when nothing changed. A folder
    written without the keys (an older version) is embedded again. The
    embedding resumes from shards (see the module docstring).

    Arguments
    ---------
    model : models.clap.CLAP
        The teacher (in eval mode on ``device``).
    paths : list of str
        Audio files; output rows keep this order (minus unreadable files).
    out_dir : str
        The embedding folder.
    sample_rate, duration, crop, chunking, max_chunks
        See :class:`dataset.clips.AudioClips`.
    batch_size, shard_size, num_workers, dtype, rank, world_size, progress
        See :func:`embed_items`.
    device : str
        Where the model runs.
    model_id : str
        :func:`model_fingerprint` of the model (recorded, and part of the resume check).
    precision : str
        ``fp32``, ``bf16`` or ``fp16``: the model's precision (:func:`models.precision.autocast`),
        recorded (when not fp32) and part of the resume check.

    Returns
    -------
    dict
        The ``audio`` section of ``embeddings.json`` (counts, options; ``update``: the
        unchanged, changed, new and removed files of the last update), on every rank.
    """
    paths = list(paths)
    shard_dir = os.path.join(out_dir, SHARD_DIR)
    if rank == 0 and os.path.isfile(os.path.join(shard_dir, "audio-next.json")):
        logger.info("Finishing the interrupted update of the audio embeddings in %s.", out_dir)
        _commit_update(out_dir, shard_dir)
    _wait_for_ranks(world_size)
    options = {
        "model": model_id, "sample_rate": int(sample_rate), "duration": float(duration), "crop": crop,
        "chunking": bool(chunking), "max_chunks": max_chunks if chunking else None,
    }
    if precision != "fp32":  # fp32 files of earlier versions stay valid
        options["precision"] = precision
    options.update(dtype=dtype, batch_size=batch_size)
    keys = _shared_keys(paths, world_size, progress and rank == 0)
    files_digest = listing_digest(paths, keys)
    section = dict(options, items=len(paths), items_digest=list_digest(paths), cache_key=CACHE_KEY,
                   files_digest=files_digest)
    done = load_embedding_info(out_dir).get("audio")
    same_options = _up_to_date(done, options, precision)
    if (same_options and done.get("cache_key") == CACHE_KEY and done.get("files_digest") == files_digest
            and os.path.isfile(os.path.join(out_dir, AUDIO_EMB))):
        logger.info("Audio embeddings in %s are up to date (%d clips, every file unchanged); nothing to do.",
                    out_dir, done["rows"])
        if rank == 0:
            _remove_shards(shard_dir, "audio")
        return done
    old = None
    if same_options:
        old, reason = _stored_listing(out_dir, done)
        if old is None:
            logger.info("The audio embeddings in %s cannot be reused: %s; embedding all %d clips again.",
                        out_dir, reason, len(paths))
    elif done:
        differ = [k for k in options if k != "precision" and done.get(k) != options[k]]
        if done.get("precision", "fp32") != precision:
            differ.append("precision")
        logger.info("The audio embeddings in %s were made with other options (%s); embedding all %d clips again.",
                    out_dir, ", ".join(differ), len(paths))
    reuse, counts = _plan_update(paths, keys, old)
    todo = np.flatnonzero(reuse < 0)
    logger.info("Audio embeddings in %s: %d unchanged, %d changed (re-embedded), %d new, %d removed.",
                out_dir, counts["unchanged"], counts["changed"], counts["new"], counts["removed"])
    todo_paths = [paths[i] for i in todo]
    config = dict(options, cache_key=CACHE_KEY, items=len(todo),
                  items_digest=listing_digest(todo_paths, keys[todo]))
    for k in ("dtype", "batch_size"):  # added by _prepare_shard_dir
        config.pop(k)
    if rank == 0:
        _drop_old_version_shards(shard_dir)
    _prepare_shard_dir(shard_dir, "audio", config, dtype, batch_size, shard_size, rank, world_size)
    model.eval()
    dataset = AudioClips(todo_paths, sample_rate, duration, crop=crop, chunking=chunking, max_chunks=max_chunks)
    start = time.time()
    embed_items(
        dataset, collate_audio, audio_batch_encoder(model, device, batch_size, precision), shard_dir, "audio",
        batch_size,
        shard_size, dtype=dtype, num_workers=num_workers, rank=rank, world_size=world_size,
        progress=progress and rank == 0,
    )
    _wait_for_ranks(world_size)
    if rank == 0:
        ok, errors = _merge_update(shard_dir, todo, reuse, old, len(paths), shard_size, batch_size, dtype,
                                   _staged(shard_dir, AUDIO_EMB))
        write_path_list(_staged(shard_dir, AUDIO_PATHS), [p for p, good in zip(paths, ok) if good])
        save_npy(_staged(shard_dir, AUDIO_STAT), np.ascontiguousarray(keys[ok], dtype=np.int64))
        write_csv(
            _staged(shard_dir, AUDIO_SKIPPED),
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
        _commit_update(out_dir, shard_dir)
        logger.info(
            "Embedded %d files and kept %d: %d rows, %d unreadable (listed in %s), in %.0f s.",
            len(todo), counts["unchanged"], section["rows"], len(errors), AUDIO_SKIPPED, time.time() - start,
        )
        for i in sorted(errors)[:5]:
            logger.warning("Skipped %s: %s", paths[i], errors[i])
    _wait_for_ranks(world_size)
    return load_embedding_info(out_dir).get("audio", section)


def _drop_old_version_shards(shard_dir):
    """Partial audio shards of an older version (not keyed on the files) are removed, not resumed."""
    path = os.path.join(shard_dir, "audio-config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    if old.get("cache_key") != CACHE_KEY:
        logger.info("%s holds partial audio embeddings of an older version (not keyed on the files' size and "
                    "modification time); starting them over.", shard_dir)
        _remove_shards(shard_dir, "audio")


def embed_captions(
    model,
    tokenizer,
    table,
    out_dir,
    max_length=100,
    batch_size=256,
    shard_size=16384,
    dtype="float16",
    device="cpu",
    rank=0,
    world_size=1,
    progress=True,
    model_id="",
    prefix="text",
    precision="fp32",
):
    """Embeds the captions of a caption table into ``<prefix>_emb.npy`` + ``<prefix>_captions.csv``.

    Same resuming and skipping rules (and ``precision``) as :func:`embed_audio_files`.

    Returns
    -------
    dict
        The ``<prefix>`` section of ``embeddings.json``.
    """
    texts = [entry["caption"] for entry in table]
    config = {"items": len(texts), "items_digest": list_digest(texts), "model": model_id, "max_length": int(max_length)}
    if precision != "fp32":
        config["precision"] = precision
    section = dict(config, dtype=dtype, batch_size=batch_size)
    emb_path = os.path.join(out_dir, f"{prefix}_emb.npy")
    done = load_embedding_info(out_dir).get(prefix)
    if _up_to_date(done, section, precision) and os.path.isfile(emb_path):
        logger.info("Caption embeddings in %s are up to date (%d captions); nothing to do.", out_dir, done["rows"])
        return done
    shard_dir = os.path.join(out_dir, SHARD_DIR)
    _prepare_shard_dir(shard_dir, prefix, config, dtype, batch_size, shard_size, rank, world_size)
    model.eval()
    embed_items(
        _Texts(texts), _text_collate, _text_encoder(model, tokenizer, max_length, device, precision), shard_dir, prefix,
        batch_size, shard_size, dtype=dtype, num_workers=0, rank=rank, world_size=world_size,
        progress=progress and rank == 0,
    )
    _wait_for_ranks(world_size)
    if rank == 0:
        _merge_shards(shard_dir, prefix, len(texts), shard_size, batch_size, emb_path)
        write_caption_table(os.path.join(out_dir, f"{prefix}_captions.csv"), table)
        section["rows"] = len(texts)
        _update_info(out_dir, prefix, section)
        _remove_shards(shard_dir, prefix)
        logger.info("Embedded %d distinct captions into %s.", len(texts), emb_path)
    _wait_for_ranks(world_size)
    return load_embedding_info(out_dir).get(prefix, section)


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


def update_info(out_dir, section, value):
    """Sets one section of ``embeddings.json`` (written atomically)."""
    _update_info(out_dir, section, value)


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
