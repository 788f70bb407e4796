"""AudioCaps (Kim et al., 2019): one caption per row, its clip found under the names AudioSet downloaders give it."""

import logging
import os

from dataset.audio import AUDIO_EXTENSIONS
from dataset.corpora.files import as_splits, caption_row, find_metadata, index_audio_files, lookup, require_columns
from dataset.manifest import read_csv

logger = logging.getLogger(__name__)

__all__ = ["read_audiocaps"]


def _time_forms(start_time):
    """Spellings of an AudioCaps start time in file names: as written, ``30``, ``30.0``, ``30.000``."""
    forms = [start_time]
    try:
        value = float(start_time)
    except ValueError:
        return forms
    if value.is_integer():
        forms.append(str(int(value)))
    forms += [str(value), f"{value:.1f}", f"{value:.3f}"]
    return list(dict.fromkeys(forms))


def _audiocaps_stems(youtube_id, start_time):
    stems = [f"{youtube_id}_{t}" for t in _time_forms(start_time)]
    stems += [f"Y{youtube_id}", youtube_id]
    try:
        # AudioSet downloaders also write Y<id>_<start>.000_<end>.000 for 10 s segments.
        start = float(start_time)
        stems.append(f"Y{youtube_id}_{start:.3f}_{start + 10:.3f}")
    except ValueError:
        pass
    return stems


def read_audiocaps(folder, splits=("train", "val")):
    """Reads AudioCaps captions; clips not downloaded are skipped and counted.

    Arguments
    ---------
    folder : str
        Folder holding ``<split>.csv`` (``audiocap_id,youtube_id,start_time,caption``),
        directly or one folder down (e.g. ``dataset/``), and the audio anywhere
        below it as ``{youtube_id}_{start_time}.wav|flac``, ``Y{youtube_id}.wav|flac``
        or ``{youtube_id}.wav|flac``.
    splits : tuple of str
        Which CSVs to read (``test`` is the retrieval test set).

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source="audiocaps", source_id`` (YouTube id).
    n_missing : int
        Captions whose clip was not found.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "-ab_c_30.flac"), "wb").close()
    >>> with open(os.path.join(d, "train.csv"), "w") as f:
    ...     _ = f.write("audiocap_id,youtube_id,start_time,caption\\n"
    ...                 "1,-ab_c,30.000,a dog barks\\n2,zzz,0,gone\\n")
    >>> rows, n_missing = read_audiocaps(d, splits=("train",))
    >>> [(r["source_id"], r["caption"]) for r in rows], n_missing
    ([('-ab_c', 'a dog barks')], 1)
    """
    folder = os.path.abspath(folder)
    splits = as_splits(splits)
    index = None
    rows, n_missing, n_found_csv = [], 0, 0
    for split in splits:
        path = find_metadata(folder, f"{split}.csv")
        if path is None:
            logger.warning("AudioCaps: no %s.csv in %s or one folder down; split skipped.", split, folder)
            continue
        n_found_csv += 1
        if index is None:
            index = index_audio_files(folder)
        records = read_csv(path)
        require_columns(path, records, ["youtube_id", "start_time", "caption"])
        for record in records:
            youtube_id = (record["youtube_id"] or "").strip()
            caption = (record["caption"] or "").strip()
            if not youtube_id or not caption:
                continue
            wav_path = None
            for stem in _audiocaps_stems(youtube_id, (record["start_time"] or "").strip()):
                for ext in AUDIO_EXTENSIONS:
                    wav_path = lookup(index, stem + ext)
                    if wav_path:
                        break
                if wav_path:
                    break
            if wav_path is None:
                n_missing += 1
                continue
            rows.append(caption_row("audiocaps", len(rows), wav_path, caption, youtube_id))
    if n_found_csv == 0:
        raise FileNotFoundError(
            f"AudioCaps folder {folder} holds none of {[f'{s}.csv' for s in splits]} "
            "(looked in it and one folder down)."
        )
    return rows, n_missing
