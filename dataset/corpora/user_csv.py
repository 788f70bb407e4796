"""A user's caption CSV: ``ID,wav_path,caption`` (or ``wav_path,caption``) pairs, kept as written."""

import logging

from dataset.manifest import ManifestError, read_caption_csv
from dataset.shards import audio_exists

logger = logging.getLogger(__name__)

__all__ = ["read_user_csv"]


def read_user_csv(path):
    """Reads a user's ``ID,wav_path,caption`` (or ``wav_path,caption``) CSV.

    Captions are kept exactly as written (only empty ones are dropped).

    Arguments
    ---------
    path : str
        The CSV; relative audio paths are relative to its folder. Optional
        ``source`` and ``source_id`` columns are kept.

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source`` (``"user"`` unless given), ``source_id``.
    n_missing : int
        Rows whose audio file does not exist.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "a.wav"), "wb").close()
    >>> from dataset.manifest import write_csv
    >>> write_csv(os.path.join(d, "p.csv"), [{"wav_path": "a.wav", "caption": " a, b"},
    ...                                      {"wav_path": "b.wav", "caption": "c"}])
    >>> rows, n_missing = read_user_csv(os.path.join(d, "p.csv"))
    >>> [(r["ID"], r["caption"], r["source"]) for r in rows], n_missing
    ([('p_0', ' a, b', 'user')], 1)
    """
    rows, n_missing, n_empty = [], 0, 0
    exists = {}
    records = read_caption_csv(path)
    if not records:
        raise ManifestError(f"no rows in {path}: a caption CSV needs a header ID,wav_path,caption "
                            "(or wav_path,caption) and one row per pair.")
    for record in records:
        caption = record.get("caption") or ""
        if not caption.strip():
            n_empty += 1
            continue
        wav_path = record["wav_path"]
        if wav_path not in exists:
            exists[wav_path] = audio_exists(wav_path)  # a file, or a shard's member (dataset.shards)
        if not exists[wav_path]:
            n_missing += 1
            continue
        rows.append(
            {
                "ID": record["ID"],
                "wav_path": wav_path,
                "caption": caption,
                "source": (record.get("source") or "").strip() or "user",
                "source_id": (record.get("source_id") or "").strip(),
            }
        )
    if n_empty:
        logger.warning("%s: %d row(s) with an empty caption skipped.", path, n_empty)
    return rows, n_missing
