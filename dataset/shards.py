"""Audio inside webdataset tar shards: member paths, shard lists and random access to one member.

LAION's audio-dataset (and webdataset generally) stores a corpus as tar
shards, each sample a group of members sharing a key: ``<key>.flac`` (or
``.wav``, ``.ogg``, ``.mp3``) and ``<key>.json``. The project names one audio
member with a *member path*, ``<path of the .tar>#<member name>``
(``/data/shard-000003.tar#Y1a2b.flac``), which goes wherever an audio path
goes: path lists, caption CSVs, :func:`dataset.audio.load_audio`.

- :func:`split_member_path`, :func:`member_path`: the naming;
- :func:`expand_shards`: a ``.tar``, a folder, a glob or webdataset's brace
  form into the sorted shard files;
- :func:`read_member_bytes`, :func:`member_size`, :func:`audio_exists`:
  random access. The first access to a shard walks its tar headers once with
  the stdlib ``tarfile`` (seeking over the data) into ``{member: (data
  offset, size)}``, cached per process and keyed on the shard's size and
  modification time, so a rewritten shard is indexed again. Only
  uncompressed tars are read this way: a gzip'ed shard is refused with a
  message saying so (random access into a gzip stream means decompressing
  it from the start for every clip).

Listing the audio of many shards in one streamed pass is
:func:`dataset.shard_index.index_shards`. This module imports nothing of the
project, so that :mod:`dataset.audio` and :mod:`dataset.manifest` can use it.
"""

import collections
import glob
import os
import tarfile
import threading

import braceexpand

__all__ = [
    "ShardSpecError", "ShardReadError", "split_member_path", "member_path", "is_member_path", "expand_shards",
    "shard_members", "read_member_bytes", "member_size", "audio_exists", "shard_key", "GZIP_MAGIC",
]

TAR_SUFFIX = ".tar"
GZIP_MAGIC = b"\x1f\x8b"
#: Shards whose member index a process keeps (a 10^4-member index is about 1 MB).
CACHED_SHARDS = 256


class ShardSpecError(ValueError):
    """A shard specification (file, folder, glob or brace form) names no shard, or a shard it lists is missing."""


class ShardReadError(OSError):
    """A shard cannot be read by member: not a tar file, gzip-compressed, or truncated inside the member."""


def split_member_path(path):
    """``(tar path, member name)`` of a member path, or None for an ordinary path.

    A member path is ``<...>.tar#<member>``: the ``#`` right after the first
    ``.tar`` (any case) that is followed by a member name. An existing
    regular file whose name merely contains ``.tar#`` stays an ordinary path.

    Example
    -------
    >>> split_member_path("/data/shard-000003.tar#Y1a2b.flac")
    ('/data/shard-000003.tar', 'Y1a2b.flac')
    >>> split_member_path("/data/a#b.wav") is None, split_member_path("/data/x.tar") is None
    (True, True)
    """
    path = os.fspath(path)
    lowered = path.lower()
    cut = lowered.find(TAR_SUFFIX + "#")
    if cut < 0:
        return None
    tar, member = path[: cut + len(TAR_SUFFIX)], path[cut + len(TAR_SUFFIX) + 1:]
    if not member or not os.path.basename(tar)[: -len(TAR_SUFFIX)] or os.path.isfile(path):
        return None
    return tar, member


def is_member_path(path):
    """True when ``path`` names a member of a tar shard (:func:`split_member_path`)."""
    return split_member_path(path) is not None


def member_path(tar, member):
    """The member path of ``member`` in the shard ``tar``.

    Example
    -------
    >>> member_path("/data/shard-000003.tar", "Y1a2b.flac")
    '/data/shard-000003.tar#Y1a2b.flac'
    """
    tar = os.fspath(tar)
    if not tar.lower().endswith(TAR_SUFFIX):
        raise ValueError(f"A member path needs a .tar shard, got {tar!r}.")
    if not member:
        raise ValueError(f"An empty member name in {tar!r}.")
    return f"{tar}#{member}"


# ------------------------------------------------------------ shard lists
def expand_shards(spec):
    """The shard files a specification names, sorted and absolute.

    Arguments
    ---------
    spec : str or os.PathLike or list
        A ``.tar`` file; a folder (every ``*.tar`` below it, recursively); a
        glob (``/d/*.tar``); webdataset's brace form
        (``/d/shard-{000000..000009}.tar``, every listed shard must exist);
        or a list of any of these.

    Returns
    -------
    list of str

    Raises
    ------
    ShardSpecError
        When nothing matches, or a file or a brace-listed shard is missing.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     open(os.path.join(d, f"shard-{i:06d}.tar"), "wb").close()
    >>> [os.path.basename(p) for p in expand_shards(os.path.join(d, "shard-{000001..000002}.tar"))]
    ['shard-000001.tar', 'shard-000002.tar']
    >>> len(expand_shards(d)), len(expand_shards(os.path.join(d, "*.tar")))
    (3, 3)
    """
    if isinstance(spec, (list, tuple)):
        found = set()
        for item in spec:
            found.update(expand_shards(item))
        if not found:
            raise ShardSpecError(f"No shard in the list {list(spec)!r}.")
        return sorted(found)
    spec = os.path.expanduser(os.fspath(spec))
    if os.path.isdir(spec):
        found = [os.path.join(root, name) for root, _, files in os.walk(spec, followlinks=True)
                 for name in files if name.lower().endswith(TAR_SUFFIX)]
        if not found:
            raise ShardSpecError(f"No .tar shard below the folder {spec}.")
    elif os.path.isfile(spec):
        found = [spec]
    elif "{" in spec and ".." in spec:
        found = list(braceexpand.braceexpand(spec))
        missing = [p for p in found if not os.path.isfile(p)]
        if missing:
            raise ShardSpecError(f"{len(missing)} of the {len(found)} shards of {spec} are missing, e.g. {missing[0]}.")
    elif glob.has_magic(spec):
        found = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
        if not found:
            raise ShardSpecError(f"No shard matches {spec}.")
    else:
        raise ShardSpecError(f"Shard not found: {spec} (give a .tar file, a folder, a glob or a brace form "
                             "such as shard-{000000..000009}.tar).")
    return sorted({os.path.abspath(p) for p in found})


# ------------------------------------------------------------ random access
_indexes = collections.OrderedDict()  # tar path -> (shard_key, {member: (offset, size)}, error or None)
_lock = threading.Lock()


def shard_key(tar):
    """``(size, mtime_ns)`` of a shard file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(tar)
    except (OSError, ValueError):
        return None
    return int(st.st_size), int(st.st_mtime_ns)


def _build_index(tar, size):
    """``({member: (data offset, size)}, error)``: the regular members whose headers can be read.

    A truncated shard keeps the members before the damage (a member cut
    inside its data keeps its entry; reading it fails, naming the truncation);
    ``error`` says where the walk stopped.
    """
    with open(tar, "rb") as f:
        if f.read(2) == GZIP_MAGIC:
            raise ShardReadError(f"{tar} is gzip-compressed; members are read from uncompressed tar shards only "
                                 "(decompress it: gunzip -c shard.tar.gz > shard.tar).")
        f.seek(0)
        members, error = {}, None
        try:
            archive = tarfile.open(fileobj=f, mode="r:")
        except tarfile.TarError as err:
            raise ShardReadError(f"{tar} is not a readable tar file ({err}).") from None
        while True:
            try:
                info = archive.next()
            except (tarfile.TarError, OSError) as err:
                error = f"{err} after byte {archive.offset} of {size}"
                break
            if info is None:
                break
            if info.isreg():
                members[info.name] = (int(info.offset_data), int(info.size))
            archive.members = []  # the index is all we keep
    return members, error


def shard_members(tar):
    """``({member: (data offset, size)}, error)`` of a shard, from the per-process cache.

    Raises
    ------
    FileNotFoundError
        If the shard does not exist.
    ShardReadError
        If it is not an uncompressed tar file.
    """
    tar = os.path.abspath(os.fspath(tar))
    key = shard_key(tar)
    if key is None:
        raise FileNotFoundError(f"Shard not found: {tar}")
    with _lock:
        cached = _indexes.get(tar)
        if cached is not None and cached[0] == key:
            _indexes.move_to_end(tar)
            return cached[1], cached[2]
    members, error = _build_index(tar, key[0])
    with _lock:
        _indexes[tar] = (key, members, error)
        _indexes.move_to_end(tar)
        while len(_indexes) > CACHED_SHARDS:
            _indexes.popitem(last=False)
    return members, error


def _locate(path):
    split = split_member_path(path)
    if split is None:
        raise ValueError(f"Not a member path (<shard>.tar#<member>): {path}")
    tar, member = split
    members, _ = shard_members(tar)
    if member not in members:
        raise FileNotFoundError(f"No member {member!r} in the shard {tar}")
    return tar, member, members[member]


def read_member_bytes(path):
    """The bytes of the member a member path names.

    Raises
    ------
    FileNotFoundError
        If the shard or the member does not exist.
    ShardReadError
        If the shard is not an uncompressed tar, or ends inside the member.

    Example
    -------
    >>> import io, tempfile
    >>> tar = os.path.join(tempfile.mkdtemp(), "s.tar")
    >>> with tarfile.open(tar, "w") as t:
    ...     info = tarfile.TarInfo("k.flac"); info.size = 3
    ...     t.addfile(info, io.BytesIO(b"abc"))
    >>> read_member_bytes(tar + "#k.flac")
    b'abc'
    """
    tar, member, (offset, size) = _locate(path)
    with open(tar, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise ShardReadError(f"The shard {tar} is truncated inside {member} (byte {offset + len(data)} "
                             f"of the member's {offset + size}).")
    return data


def member_size(path):
    """Size in bytes of the member a member path names (FileNotFoundError if absent)."""
    return _locate(path)[2][1]


def audio_exists(path):
    """True when ``path`` is an existing regular file or a member path naming an existing member.

    The one check of "does this audio path exist" of the project's path lists
    and caption CSVs (in place of ``os.path.isfile``).

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> audio_exists(d), audio_exists(os.path.join(d, "a.tar#k.flac"))
    (False, False)
    """
    if not path:
        return False
    if split_member_path(path) is None:
        return os.path.isfile(path)
    try:
        _locate(path)
    except (OSError, ValueError):
        return False
    return True
