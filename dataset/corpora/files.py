"""Finding a corpus' files: one walk indexes its audio by file name, metadata is looked for one folder down.

Shared by the corpus readers of :mod:`dataset.corpora` and by the other
preparers that locate published metadata and audio the same way (the
retrieval sets, VGGSound).
"""

import os
import unicodedata

from dataset.audio import AUDIO_EXTENSIONS, walk_audio_files
from dataset.manifest import ManifestError, read_csv

__all__ = [
    "index_audio_files", "lookup", "find_metadata", "read_csv_any_encoding", "require_columns", "caption_row",
    "as_splits",
]


def _name_key(name):
    """Key under which a file name is indexed: NFC-normalised stem + lowercase extension.

    File systems (macOS, some archives) store decomposed accents while CSVs
    store composed ones, so both sides are compared after NFC normalisation.
    """
    stem, ext = os.path.splitext(name)
    return unicodedata.normalize("NFC", stem) + ext.lower()


def index_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Indexes every audio file below ``folder`` by file name, in one walk (:func:`dataset.audio.walk_audio_files`).

    Looking each of 10^5 rows up with ``glob``/``exists`` is slow on network
    file systems; one walk is not.

    Arguments
    ---------
    folder : str
        Root folder.
    extensions : tuple of str
        Lowercase extensions to index (case-insensitive on disk).

    Returns
    -------
    dict
        ``{name key: [absolute paths]}`` (see ``_name_key``), paths in sorted walk order.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "sub"))
    >>> open(os.path.join(d, "sub", "A b.WAV"), "wb").close()
    >>> open(os.path.join(d, "notes.txt"), "wb").close()
    >>> index = index_audio_files(d)
    >>> list(index), index["A b.wav"] == [os.path.join(d, "sub", "A b.WAV")]
    (['A b.wav'], True)
    """
    index = {}
    for path in walk_audio_files(folder, extensions):
        index.setdefault(_name_key(os.path.basename(path)), []).append(path)
    return index


def lookup(index, name, prefer=()):
    """Path of ``name`` in ``index``; among duplicates, one whose parent folder is in ``prefer``."""
    paths = index.get(_name_key(name))
    if not paths:
        return None
    for path in paths:
        if os.path.basename(os.path.dirname(path)) in prefer:
            return path
    return paths[0]


def find_metadata(folder, relative_path):
    """Finds ``folder/relative_path`` or ``folder/<any subfolder>/relative_path`` (one level down)."""
    candidate = os.path.join(folder, relative_path)
    if os.path.isfile(candidate):
        return candidate
    try:
        subfolders = sorted(e.path for e in os.scandir(folder) if e.is_dir())
    except OSError:
        return None
    for sub in subfolders:
        candidate = os.path.join(sub, relative_path)
        if os.path.isfile(candidate):
            return candidate
    return None


def read_csv_any_encoding(path):
    """Reads a CSV as UTF-8, falling back to ISO-8859-1 (Clotho's metadata files use it)."""
    try:
        return read_csv(path)
    except UnicodeDecodeError:
        return read_csv(path, encoding="iso-8859-1")


def require_columns(path, rows, columns):
    """Raises :class:`dataset.manifest.ManifestError` when the rows of ``path`` lack one of ``columns``."""
    missing = set(columns) - set(rows[0]) if rows else set()
    if missing:
        raise ManifestError(f"{path} lacks the column(s) {sorted(missing)} (found {sorted(rows[0])}).")


def caption_row(source, index, wav_path, caption, source_id=""):
    """One caption pair of a corpus, its ``ID`` the corpus and the row's index (``clotho_000007``)."""
    return {
        "ID": f"{source}_{index:06d}",
        "wav_path": wav_path,
        "caption": caption,
        "source": source,
        "source_id": source_id,
    }


def as_splits(splits):
    """``splits`` as a tuple (one split may be given as a string)."""
    return (splits,) if isinstance(splits, str) else tuple(splits)

