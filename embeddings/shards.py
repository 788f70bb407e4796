"""The shard store: the embedding loop that writes resumable shards, and their merge into one matrix.

The items to embed are cut into fixed shards of ``shard_size`` items, each
embedded in fixed batches and written atomically to
``shards/<name>-<start>-<stop>.npz``. A killed run keeps its finished shards;
run again, it embeds only the missing ones, and the merged files are byte for
byte those of an uninterrupted run (the same batches go through the same
model). Under ``torchrun`` shard ``k`` belongs to rank ``k % world_size``;
rank 0 merges once every shard exists. The options a set of shards was made
with are stored beside them (``shards/<name>-config.json``): shards made with
other options are never mixed in.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

from dataset.disk import DiskFullError
from dataset.manifest import atomic_write
from embeddings.store import STORAGE_DTYPES, write_rows

__all__ = [
    "shard_path", "shard_ranges", "check_shard_config", "embed_items", "merge_shards", "prepare_shard_dir",
    "wait_for_ranks", "remove_shards",
]


def shard_path(shard_dir, name, start, stop):
    """The shard file of items ``start`` to ``stop`` (excluded) of ``name``."""
    return os.path.join(shard_dir, f"{name}-{start:010d}-{stop:010d}.npz")


def shard_ranges(n_items, shard_size):
    """The ``(start, stop)`` item ranges of the shards of ``n_items`` items."""
    return [(s, min(s + shard_size, n_items)) for s in range(0, n_items, shard_size)]


def check_shard_config(shard_dir, name, config):
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
        check_shard_config(shard_dir, name, dict(config, batch_size=batch_size, shard_size=shard_size, dtype=dtype))
    mine = [(s, e) for k, (s, e) in enumerate(shard_ranges(len(dataset), shard_size)) if k % world_size == rank]
    pending = [(s, e) for s, e in mine if not os.path.isfile(shard_path(shard_dir, name, s, e))]
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
                try:
                    _save_shard(shard_path(shard_dir, name, start, stop), np.concatenate(embs),
                                np.concatenate(oks), errors)
                except DiskFullError as err:
                    err.kept = (f"{len(mine) - len(pending) + done} of {len(mine)} '{name}' shards are complete "
                                f"in {shard_dir} and kept")
                    raise
                done += 1
                embs, oks, errors = [], [], []
                start, stop = next(shard_iter, (None, None))
    if bar is not None:
        bar.close()
    return done


def _single_thread_worker(_):
    # Each loader worker decodes and resamples one clip at a time; more threads only compete.
    torch.set_num_threads(1)


def merge_shards(shard_dir, name, n_items, shard_size, batch_size, out_path, dim_hint=None):
    """Concatenates the rows of every shard whose ``ok`` is set into ``out_path``; returns (ok, errors)."""
    shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
    ranges = shard_ranges(n_items, shard_size)
    missing = [r for r in ranges if not os.path.isfile(shard_path(shard_dir, name, *r))]
    if missing:
        raise RuntimeError(
            f"Cannot merge '{name}': {len(missing)} shard(s) missing in {shard_dir}, e.g. items {missing[0]}."
        )
    ok_all = np.zeros(n_items, dtype=bool)
    errors = {}
    dtype, dim = None, dim_hint
    for s, e in ranges:
        with np.load(shard_path(shard_dir, name, s, e)) as shard:
            ok_all[s:e] = shard["ok"]
            dtype, dim = shard["emb"].dtype, shard["emb"].shape[1]
            for i in np.flatnonzero(~shard["ok"]):
                errors[s + int(i)] = str(shard["error"][i])
    def fill(out):
        row = 0
        for s, e in ranges:
            with np.load(shard_path(shard_dir, name, s, e)) as shard:
                rows = shard["emb"][shard["ok"]]
            out[row : row + len(rows)] = rows
            row += len(rows)

    n_ok = 0 if dtype is None else int(ok_all.sum())
    write_rows(out_path, (n_ok, dim or 0), dtype or np.float16, fill)
    return ok_all, errors


def prepare_shard_dir(shard_dir, name, config, dtype, batch_size, shard_size, rank, world_size):
    """Creates ``shard_dir``, checks (or records) the options of the shards of ``name``, then waits for every rank."""
    # Rank 0 validates (or records) the options before any rank adds a shard.
    if rank == 0:
        os.makedirs(shard_dir, exist_ok=True)
        shard_size = int(math.ceil(shard_size / batch_size) * batch_size)
        check_shard_config(shard_dir, name, dict(config, batch_size=batch_size, shard_size=shard_size, dtype=dtype))
    wait_for_ranks(world_size)


def wait_for_ranks(world_size):
    """A barrier of every rank when running under ``torchrun`` (nothing in a single process)."""
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def remove_shards(shard_dir, name):
    """Deletes the shards of ``name`` (and ``shard_dir`` once empty)."""
    for entry in os.listdir(shard_dir) if os.path.isdir(shard_dir) else []:
        if entry.startswith(f"{name}-"):
            os.remove(os.path.join(shard_dir, entry))
    if os.path.isdir(shard_dir) and not os.listdir(shard_dir):
        os.rmdir(shard_dir)
