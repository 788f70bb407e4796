"""The paper code's layout of the corpora: its index files (``insper_<corpus>_index.tsv``) next to the audio."""

import csv
import os

from dataset.corpora.files import caption_row

__all__ = ["PAPER_INDEX_FILES", "paper_index_files", "read_paper_index"]

#: The paper code's index files (its YAMLs' ``csv_paths``), read when ``data_annot_folder`` holds them.
PAPER_INDEX_FILES = {
    "clotho": "insper_clotho_index.tsv",
    "audiocaps": "insper_audiocaps_train_index.tsv",
    "macs": "insper_macs_index_notag.tsv",
    "fsd50k": "insper_fsd50k_dev_index_notag.tsv",
}


def paper_index_files(data_annot_folder):
    """``{corpus: path}`` of the paper code's index files present in ``data_annot_folder`` (empty: none).

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "insper_clotho_index.tsv"), "w").close()
    >>> paper_index_files(d) == {"clotho": os.path.join(d, "insper_clotho_index.tsv")}
    True
    """
    if data_annot_folder in (None, "") or not os.path.isdir(data_annot_folder):
        return {}
    root = os.path.abspath(os.fspath(data_annot_folder))
    return {corpus: os.path.join(root, name) for corpus, name in PAPER_INDEX_FILES.items()
            if os.path.isfile(os.path.join(root, name))}


def read_paper_index(path, corpus):
    """Reads one of the paper code's index files: tab-separated, no header, ``<audio path><TAB><caption(s)>``.

    As the paper code reads them (``dataset/prepare_curation.py``): the audio
    path is relative to the file's folder (one leading ``/`` dropped); a
    Clotho or MACS row holds all the clip's captions, one a line inside a
    quoted field, and gives one row per caption; an AudioCaps or FSD50K row is
    one caption. Fields are CSV-quoted (``"``). Rows whose audio file is
    absent are skipped and counted; empty captions are dropped. Captions are
    returned as written (see :func:`dataset.corpora.cleaning.clean_captions` for the paper's clean-up).

    Arguments
    ---------
    path : str
        The index file (``insper_clotho_index.tsv``, ...).
    corpus : str
        ``clotho``, ``audiocaps``, ``macs`` or ``fsd50k``.

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source=corpus, source_id`` (FSD50K: the file
        stem when it is a Freesound id; else empty).
    n_missing : int
        Captions whose audio file was not found.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "clotho"))
    >>> open(os.path.join(d, "clotho", "rain.wav"), "wb").close()
    >>> with open(os.path.join(d, "insper_clotho_index.tsv"), "w") as f:
    ...     _ = f.write('/clotho/rain.wav\\t"rain, falling\\nrain_drops"\\nclotho/gone.wav\\tx\\n')
    >>> rows, n_missing = read_paper_index(os.path.join(d, "insper_clotho_index.tsv"), "clotho")
    >>> [r["caption"] for r in rows], n_missing
    (['rain, falling', 'rain_drops'], 1)
    """
    folder = os.path.dirname(os.path.abspath(path))
    rows, n_missing, exists = [], 0, {}
    with open(path, encoding="utf-8", newline="") as f:
        for record in csv.reader(f, delimiter="\t"):
            if not record or not record[0].strip():
                continue
            name = record[0][1:] if record[0].startswith("/") else record[0]
            text = record[1] if len(record) > 1 else ""
            if corpus in ("clotho", "macs"):
                captions = [c.strip() for c in text.strip().split("\n")]
            else:
                captions = [text.strip()]
            captions = [c for c in captions if c]
            wav_path = os.path.normpath(os.path.join(folder, name))
            if wav_path not in exists:
                exists[wav_path] = os.path.isfile(wav_path)
            if not exists[wav_path]:
                n_missing += len(captions)
                continue
            stem = os.path.splitext(os.path.basename(wav_path))[0]
            source_id = stem if corpus == "fsd50k" and stem.isdigit() else ""
            for caption in captions:
                rows.append(caption_row(corpus, len(rows), wav_path, caption, source_id))
    return rows, n_missing
