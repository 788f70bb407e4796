"""The item lists an embedding folder is made from: audio path lists and caption tables.

A path list holds one audio file a line; its order is the order of the
audio rows. A caption table holds the distinct captions of a caption CSV,
one row each, in the order of the text rows.
"""

from __future__ import annotations

import json
import os

from dataset.manifest import atomic_write, write_csv

__all__ = [
    "CAPTION_TABLE_FIELDS", "read_path_list", "write_path_list", "caption_table", "write_caption_table",
    "read_caption_table",
]

CAPTION_TABLE_FIELDS = ["ID", "caption", "wav_path", "source", "source_ids", "n_rows"]


def _needs_quoting(path):
    """True for a path one plain line cannot give back: a line break or another control character, spaces at
    either end, a leading quote, or bytes that are not UTF-8 (held as surrogates, as ``os.listdir`` gives them)."""
    return (path != path.strip() or path.startswith('"')
            or any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in path))


def _decode_line(line):
    """The path of a list line: a JSON string (how :func:`write_path_list` writes an unusual name) or the line."""
    if len(line) >= 2 and line.startswith('"') and line.endswith('"'):
        try:
            value = json.loads(line)
        except ValueError:
            return line
        if isinstance(value, str):
            return value
    return line


def read_path_list(path):
    r"""Reads a list of audio files, one path a line (blank lines ignored).

    Relative paths are taken relative to the list's folder. A line written
    as a JSON string (``"..."``) is decoded: that is how
    :func:`write_path_list` stores a name holding a line break, spaces at an
    end or bytes that are not UTF-8, so that any legal file name comes back
    as it was.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "list.txt")
    >>> _ = open(p, "w").write('/a/Y1.wav\n\nb.wav\n"/a/two\\nlines.wav"\n')
    >>> read_path_list(p) == ["/a/Y1.wav", os.path.join(d, "b.wav"), "/a/two\nlines.wav"]
    True
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio path list not found: {path} (expected one audio file path per line).")
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        lines = [_decode_line(line.strip()) for line in f]
    return [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p)) for p in lines if p]


def write_path_list(path, paths):
    r"""Writes one path a line (atomically); a name that a plain line cannot hold is written as a JSON string.

    Lists written before (plain lines only) read as they did: a plain path
    never starts with a quote.

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "paths.txt")
    >>> write_path_list(p, ["/a/Y1.wav", "/a/Y 2,b.wav", "/a/new\nline.wav", "/a/space at the end.wav "])
    >>> open(p).read().splitlines()[2:]
    ['"/a/new\\nline.wav"', '"/a/space at the end.wav "']
    >>> read_path_list(p)
    ['/a/Y1.wav', '/a/Y 2,b.wav', '/a/new\nline.wav', '/a/space at the end.wav ']
    """
    def line(p):
        return json.dumps(p) if _needs_quoting(p) else p

    atomic_write(path, lambda f: f.write("".join(line(p) + "\n" for p in paths)), "w", encoding="utf-8",
                 newline="")


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

