"""CSV manifests: caption pairs and labelled clips, written and read with real CSV quoting.

Captions keep commas, quotes, newlines, braces, dollar signs and non-ASCII
characters; every manifest goes through the ``csv`` module (never string
splitting) and is written atomically (temporary file, then rename), so a crash
never leaves half a manifest on disk.
"""

import csv
import hashlib
import json
import os
import tempfile

from dataset.disk import disk_full
from dataset.shards import member_size, shard_key, split_member_path

CAPTION_FIELDS = ["ID", "wav_path", "caption"]


class ManifestError(ValueError):
    """A manifest is missing, unreadable or lacks a required column."""


def atomic_write(path, write_fn, mode="w", **open_kwargs):
    """Writes ``path`` through ``write_fn(fileobj)`` into a temporary file, then renames.

    Arguments
    ---------
    path : str
        Destination file; its folder is created if needed.
    write_fn : callable
        Called with the open temporary file object.
    mode : str
        ``"w"`` (text) or ``"wb"`` (binary).
    **open_kwargs
        Passed to ``open`` (e.g. ``encoding``, ``newline``).

    Raises
    ------
    dataset.disk.DiskFullError
        The disk is full (``ENOSPC``, ``EDQUOT``): the temporary file is
        removed, the message names the folder and how much had been written.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> atomic_write(os.path.join(d, "a.txt"), lambda f: f.write("hi"))
    >>> open(os.path.join(d, "a.txt")).read()
    'hi'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except OSError as err:
        full = disk_full(err, path, 0)
        if full is not err:
            raise full from None
        raise
    # mkstemp creates 0600 files; outputs should get the usual permissions (umask).
    os.chmod(tmp, 0o666 & ~_current_umask())
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            write_fn(f)
        os.replace(tmp, path)
    except BaseException as err:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else None
        if os.path.exists(tmp):
            os.remove(tmp)
        full = disk_full(err, path, written)
        if full is not err:  # a full disk: one line naming the folder, nothing left under the final name
            raise full from None
        raise


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(path, rows, fieldnames=None):
    """Writes a list of dicts as a UTF-8 CSV (atomically).

    Arguments
    ---------
    path : str
        Output file.
    rows : list of dict
        The rows; missing keys are written empty.
    fieldnames : list of str, optional
        Column order; by default the keys of the first row, then any new keys
        of later rows in order of appearance.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> write_csv(p, [{"ID": "a", "wav_path": "/x.wav", "caption": 'a "dog", {barks}'}])
    >>> read_csv(p)[0]["caption"]
    'a "dog", {barks}'
    """
    rows = list(rows)
    if fieldnames is None:
        fieldnames = []
        for row in rows:
            fieldnames.extend(k for k in row if k not in fieldnames)
    fieldnames = list(fieldnames)

    def _write(f):
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fieldnames})

    atomic_write(path, _write, "w", encoding="utf-8", newline="")


def read_csv(path, encoding="utf-8"):
    """Reads a CSV into a list of dicts (a leading BOM is tolerated).

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> write_csv(p, [{"a": "1", "b": "x,y"}])
    >>> read_csv(p)
    [{'a': '1', 'b': 'x,y'}]
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ManifestError(f"CSV file not found: {path}")
    if encoding == "utf-8":
        encoding = "utf-8-sig"
    with open(path, encoding=encoding, newline="") as f:
        return [dict(row) for row in csv.DictReader(f)]


def read_caption_csv(path, base_dir=None):
    """Reads a caption-pair CSV: ``ID,wav_path,caption`` or ``wav_path,caption`` (+ any columns).

    Relative ``wav_path`` values are resolved against ``base_dir`` (default:
    the CSV's own folder). Rows without an ``ID`` get ``<csv stem>_<row>``.

    Arguments
    ---------
    path : str
        The CSV file.
    base_dir : str, optional
        Folder that relative audio paths are relative to.

    Returns
    -------
    list of dict
        Rows with at least ``ID``, ``wav_path`` (absolute) and ``caption``.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "pairs.csv")
    >>> write_csv(p, [{"wav_path": "a.wav", "caption": "rain, then thunder"}])
    >>> row = read_caption_csv(p)[0]
    >>> row["ID"], row["wav_path"] == os.path.join(d, "a.wav"), row["caption"]
    ('pairs_0', True, 'rain, then thunder')
    """
    path = os.path.abspath(os.fspath(path))
    rows = read_csv(path)
    columns = set(rows[0]) if rows else set()
    missing = {"wav_path", "caption"} - columns
    if rows and missing:
        raise ManifestError(
            f"{path} lacks the column(s) {sorted(missing)}; a caption CSV needs a header "
            f"'ID,wav_path,caption' or 'wav_path,caption' (found {sorted(columns)})."
        )
    base_dir = os.path.dirname(path) if base_dir is None else os.fspath(base_dir)
    stem = os.path.splitext(os.path.basename(path))[0]
    seen = set()
    for i, row in enumerate(rows):
        if not row.get("ID"):
            row["ID"] = f"{stem}_{i}"
        if row["ID"] in seen:
            raise ManifestError(f"{path}: duplicate ID {row['ID']!r} (row {i + 2}); IDs must be unique.")
        seen.add(row["ID"])
        wav = row["wav_path"]
        if wav and not os.path.isabs(wav):
            row["wav_path"] = os.path.normpath(os.path.join(base_dir, wav))
    return rows


def read_json_or_none(path):
    """The JSON object in ``path``, or None if it is absent or unreadable (callers then redo their work).

    Example
    -------
    >>> read_json_or_none("/nonexistent/options.json") is None
    True
    """
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def file_key(path):
    """``(st_size, st_mtime_ns)`` of a file: what a cached result derived from it is keyed on.

    A file rewritten in place changes its modification time (and usually its
    size), so a cache keyed on these two numbers sees it, at the cost of one
    ``stat`` call per file (no read). ``(-1, -1)`` for a path that cannot be
    stat'ed (missing, no permission). A member path (``<shard>.tar#<member>``,
    :mod:`dataset.shards`) is keyed on the member's size and the shard's
    modification time (rewriting a shard changes it for all its members);
    ``(-1, -1)`` when the shard or the member is missing or the shard unreadable.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> _ = open(p, "wb").write(b"RIFF")
    >>> os.utime(p, ns=(1, 2))
    >>> file_key(p), file_key(p + ".missing")
    ((4, 2), (-1, -1))
    """
    split = split_member_path(path)
    if split is not None:
        key = shard_key(split[0])
        try:
            return (-1, -1) if key is None else (member_size(path), key[1])
        except (OSError, ValueError):
            return (-1, -1)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return (int(st.st_size), int(st.st_mtime_ns))


def sources_digest(records, paths):
    """A short hash of parsed source records and of the size/mtime (:func:`file_key`) of the files they name.

    What a prepared manifest is keyed on besides its options: the metadata it
    was built from (its parsed content, so that re-saving a CSV unchanged does
    not count) and the audio files it lists.

    Arguments
    ---------
    records : JSON-serialisable
        The parsed metadata (e.g. the rows read from the CSVs).
    paths : iterable of str
        The files whose size and modification time matter.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> _ = open(p, "wb").write(b"RIFF")
    >>> before = sources_digest([{"wav_path": p}], [p])
    >>> before == sources_digest([{"wav_path": p}], [p])
    True
    >>> os.utime(p, ns=(1, 2))
    >>> before == sources_digest([{"wav_path": p}], [p])
    False
    """
    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps(records, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    for path in paths:
        size, mtime_ns = file_key(path)
        digest.update(f"\x00{path}\x00{size}\x00{mtime_ns}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()
