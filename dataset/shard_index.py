"""The audio members of a set of tar shards, listed in one streamed pass per shard, resumable by shard.

:func:`index_shards` reads each shard once from start to end with
webdataset's tar iterator (``webdataset.tariterators.tar_file_iterator``, the
reader webdataset's own pipelines use, so that a shard the project lists is a
shard webdataset reads): the audio members (``dataset.audio.AUDIO_EXTENSIONS``)
are read whole, which is what proves them complete, the other members
(``<key>.json``) are stepped over. The random access that reads one member
later (:mod:`dataset.shards`) walks the tar headers with the stdlib instead,
as webdataset has no per-member access.

Each shard's listing is recorded in ``index_dir/<shard file name>.json``
with the shard's size and modification time; run again, an unchanged shard
is not read again. A damaged shard (truncated, or a corrupt header) keeps
the members read before the damage; its report names the shard, how many
members could not be read (the one reading stopped at: nothing after it can
be found in a tar stream) and the error. A shard that cannot be opened at
all (not a tar file, gzip-compressed, unreadable) is reported the same way,
with nothing listed; no shard raises.
"""

import hashlib
import json
import logging
import os

from tqdm import tqdm
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from dataset.audio import AUDIO_EXTENSIONS
from dataset.manifest import atomic_write, read_json_or_none
from dataset.shards import GZIP_MAGIC, expand_shards, member_path, shard_key

logger = logging.getLogger(__name__)

__all__ = ["index_shards", "record_name"]

RECORD_VERSION = 1


def _is_audio(name):
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _first_line(err):
    """The message of an exception without the `` @ <stream>`` webdataset appends."""
    text = str(err.args[0]) if getattr(err, "args", None) else str(err)
    return text.split(" @ ")[0] or type(err).__name__


def _stream_shard(tar):
    """Reads one shard through: ``{"members": [...], "samples", "unreadable", "error"}``.

    ``members`` are the audio members read whole, in tar order; ``samples``
    the distinct sample keys (webdataset's ``<key>.<extension>``) with a
    member read whole or stepped over before any damage.
    """
    size = os.path.getsize(tar)
    members, keys, failures = [], set(), []

    def key_of(name):
        return base_plus_ext(name)[0] or name

    def select(name):
        if not _is_audio(name):
            keys.add(key_of(name))
            return False
        return True

    def stop(err):
        failures.append(err)
        return False  # a tar stream cannot resume after a damaged member

    with open(tar, "rb") as f:
        if f.read(2) == GZIP_MAGIC:
            return dict(members=[], samples=0, unreadable=1,
                        error="gzip-compressed: only uncompressed tar shards are read (gunzip it)")
        f.seek(0)
        try:
            for sample in tar_file_iterator(f, handler=stop, select_files=select):
                members.append(sample["fname"])
                keys.add(key_of(sample["fname"]))
        except Exception as err:  # noqa: BLE001 - tarfile and zlib raise many types; all mean "damaged here"
            failures.append(err)
        position = f.tell()
    error = None
    if failures:
        if position >= size:
            error = f"{_first_line(failures[0])}: truncated at byte {size}"
        elif keys:
            error = f"{_first_line(failures[0])}: damaged before byte {position} of {size}"
        else:
            error = f"not a tar file ({_first_line(failures[0])})"
    return dict(members=list(dict.fromkeys(members)), samples=len(keys), unreadable=1 if failures else 0,
                error=error)


def record_name(tar, names):
    """The file name of ``tar``'s record: ``<shard file name>.json``, or with a hash of its path when
    ``names`` (the file names of all shards listed) holds that name twice."""
    name = os.path.basename(tar)
    if names.count(name) > 1:
        name += "." + hashlib.blake2b(tar.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return name + ".json"


def _read_shard(tar, key):
    """One shard's record: streamed, or ``{"error": ...}`` when it cannot be opened."""
    try:
        found = _stream_shard(tar)
    except OSError as err:
        found = dict(members=[], samples=0, unreadable=1, error=f"cannot be read: {err}")
    return dict(version=RECORD_VERSION, shard=tar, size=key[0] if key else -1, mtime_ns=key[1] if key else -1,
                **found)


def index_shards(shards, index_dir=None, progress=False):
    """Lists the audio members of ``shards``, each shard read once and its listing recorded.

    Arguments
    ---------
    shards : str or list of str
        Shard files, or a specification :func:`dataset.shards.expand_shards` takes.
    index_dir : str, optional
        Folder of the per-shard records (``<shard file name>.json``); a shard
        whose record has its current size and modification time is not read.
        None: nothing recorded, every shard read.
    progress : bool
        A progress bar over the shards.

    Returns
    -------
    member_paths : list of str
        ``<shard>#<member>`` of every readable audio member, shards in the
        given order (sorted for a specification), members in tar order.
    report : list of dict
        One per shard: ``shard``, ``samples`` (sample keys read), ``audio``
        (audio members listed), ``unreadable`` (members that could not be
        read; 1 for a shard that cannot be opened), ``error`` (None, or what
        went wrong and where), ``reused`` (True: from its record).

    Example
    -------
    >>> import io, tarfile, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with tarfile.open(os.path.join(d, "shard-000000.tar"), "w") as t:
    ...     for name in ["k1.flac", "k1.json"]:
    ...         info = tarfile.TarInfo(name); info.size = 2
    ...         t.addfile(info, io.BytesIO(b"{}"))
    >>> paths, report = index_shards(d)
    >>> [os.path.basename(p) for p in paths], report[0]["samples"], report[0]["error"]
    (['shard-000000.tar#k1.flac'], 1, None)
    """
    shards = expand_shards(shards) if isinstance(shards, (str, os.PathLike)) else [os.path.abspath(s) for s in shards]
    names = [os.path.basename(s) for s in shards]
    member_paths, report = [], []
    for tar in tqdm(shards, desc="Listing shards", unit="shard", disable=not progress, dynamic_ncols=True):
        key = shard_key(tar)
        record_path = os.path.join(index_dir, record_name(tar, names)) if index_dir else None
        record = read_json_or_none(record_path) if record_path else None
        reused = bool(record and key and record.get("version") == RECORD_VERSION and record.get("shard") == tar
                      and (record.get("size"), record.get("mtime_ns")) == key)
        if not reused:
            record = _read_shard(tar, key) if key else dict(
                version=RECORD_VERSION, shard=tar, size=-1, mtime_ns=-1, members=[], samples=0, unreadable=1,
                error="shard not found")
            if record_path and key:
                atomic_write(record_path, lambda f, r=record: json.dump(r, f, ensure_ascii=False, indent=0),
                             "w", encoding="utf-8")
        member_paths += [member_path(tar, m) for m in record["members"]]
        report.append(dict(shard=tar, samples=record["samples"], audio=len(record["members"]),
                           unreadable=record["unreadable"], error=record["error"], reused=reused))
    damaged = [r for r in report if r["error"]]
    if damaged:
        logger.warning("%d of %d shards are damaged or unreadable (%d members lost), e.g. %s: %s",
                       len(damaged), len(report), sum(r["unreadable"] for r in damaged), damaged[0]["shard"],
                       damaged[0]["error"])
    return member_paths, report
