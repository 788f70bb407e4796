"""What an embedding row is keyed on: the model's weights, the items listed, each audio file's state.

- :func:`model_fingerprint`: which weights made the rows;
- :func:`list_digest`: which paths or captions, in which order;
- :func:`file_keys` and :func:`listing_digest`: which files, in which state
  (size and modification time, :data:`CACHE_KEY`), in which order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from dataset.manifest import file_key

__all__ = ["CACHE_KEY", "model_fingerprint", "list_digest", "file_keys", "listing_digest", "shared_file_keys"]

#: What an audio row is keyed on besides its path: the file's size and modification time.
CACHE_KEY = "stat"


def model_fingerprint(model, protocol=None):
    """A short hash of a model's parameters and buffers (which weights made an embedding file).

    ``protocol`` (:mod:`evaluation.protocols`) is part of the hash unless it
    is ``None`` or ``"paper"`` (our windows, which every fingerprint written
    before protocols existed stands for): rows made with LAION's or MS CLAP's
    audio handling are never mistaken for rows made with ours, and back.

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> model_fingerprint(a) == model_fingerprint(a), model_fingerprint(a) == model_fingerprint(b)
    (True, False)
    >>> model_fingerprint(a, "paper") == model_fingerprint(a), model_fingerprint(a, "laion") == model_fingerprint(a)
    (True, False)
    """
    digest = hashlib.blake2b(digest_size=12)
    if protocol not in (None, "paper"):
        digest.update(f"protocol={protocol}\x00".encode())
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


def shared_file_keys(paths, world_size, progress):
    """The file keys of rank 0, on every rank (so that all ranks plan the same update)."""
    distributed = world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed:
        return file_keys(paths, progress)
    box = [file_keys(paths, progress) if torch.distributed.get_rank() == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]

