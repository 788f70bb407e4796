"""Clotho v2 / v2.1 (Drossos et al., 2020): five captions per clip, Freesound ids from its metadata files."""

import logging
import os
import unicodedata

from dataset.corpora.files import (
    as_splits, caption_row, find_metadata, index_audio_files, lookup, read_csv_any_encoding, require_columns,
)

logger = logging.getLogger(__name__)

__all__ = ["read_clotho"]


def read_clotho(folder, splits=("development", "validation")):
    """Reads Clotho v2/v2.1 captions: five rows per clip, one per non-empty caption.

    The evaluation split is left out by default: it is the retrieval test set.

    Arguments
    ---------
    folder : str
        Folder holding ``clotho_captions_<split>.csv`` (directly, in
        ``csv_files/`` or in any subfolder one level down) and the audio
        (``<split>/`` or anywhere below ``folder``).
    splits : tuple of str
        Which splits to read.

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source="clotho", source_id`` (Freesound
        ``sound_id`` from ``clotho_metadata_<split>.csv``, empty if unknown).
    n_missing : int
        Captions whose audio file was not found.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "development"))
    >>> open(os.path.join(d, "development", "rain, café.wav"), "wb").close()
    >>> with open(os.path.join(d, "clotho_captions_development.csv"), "w") as f:
    ...     _ = f.write('file_name,caption_1,caption_2\\n"rain, café.wav","rain falls, hard",a storm\\n')
    >>> rows, n_missing = read_clotho(d, splits=("development",))
    >>> [r["caption"] for r in rows], n_missing
    (['rain falls, hard', 'a storm'], 0)
    """
    folder = os.path.abspath(folder)
    splits = as_splits(splits)
    index = None
    rows, n_missing, n_found_csv = [], 0, 0
    for split in splits:
        captions_path = find_metadata(folder, f"clotho_captions_{split}.csv")
        if captions_path is None:
            logger.warning("Clotho: no clotho_captions_%s.csv in %s or one folder down; split skipped.", split, folder)
            continue
        n_found_csv += 1
        if index is None:
            index = index_audio_files(folder)
        records = read_csv_any_encoding(captions_path)
        require_columns(captions_path, records, ["file_name"])
        sound_ids = _clotho_sound_ids(folder, split)
        for record in records:
            name = (record.get("file_name") or "").strip()
            if not name:
                continue
            captions = [
                (value or "").strip()
                for key, value in record.items()
                if key and key.startswith("caption") and isinstance(value, str)
            ]
            captions = [c for c in captions if c]
            wav_path = lookup(index, name, prefer=(split,))
            if wav_path is None:
                n_missing += len(captions)
                continue
            source_id = sound_ids.get(unicodedata.normalize("NFC", name), "")
            for caption in captions:
                rows.append(caption_row("clotho", len(rows), wav_path, caption, source_id))
    if n_found_csv == 0:
        raise FileNotFoundError(
            f"Clotho folder {folder} holds none of "
            f"{[f'clotho_captions_{s}.csv' for s in splits]} (looked in it and one folder down)."
        )
    return rows, n_missing


def _clotho_sound_ids(folder, split):
    """``{NFC file name: Freesound id}`` from ``clotho_metadata_<split>.csv`` (empty if absent)."""
    path = find_metadata(folder, f"clotho_metadata_{split}.csv")
    if path is None:
        logger.info("Clotho: no clotho_metadata_%s.csv; Freesound ids left empty.", split)
        return {}
    ids = {}
    for record in read_csv_any_encoding(path):
        name = (record.get("file_name") or "").strip()
        sound_id = (record.get("sound_id") or "").strip()
        # Freesound ids are integers; anything else is a mis-parsed row.
        if name and sound_id.isdigit():
            ids[unicodedata.normalize("NFC", name)] = sound_id
    return ids
