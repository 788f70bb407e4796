"""MACS (Martín-Morató and Mesaros, 2021): annotator sentences of TAU Urban Acoustic Scenes 2019 clips."""

import os

import yaml

from dataset.corpora.files import caption_row, find_metadata, index_audio_files, lookup
from dataset.manifest import ManifestError

__all__ = ["read_macs"]


def read_macs(folder):
    """Reads MACS: one row per annotator sentence.

    Arguments
    ---------
    folder : str
        Folder holding ``MACS.yaml`` (directly or one folder down) and the TAU
        Urban Acoustic Scenes 2019 audio anywhere below it.

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source="macs", source_id=""``.
    n_missing : int
        Sentences whose audio file was not found.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "audio"))
    >>> open(os.path.join(d, "audio", "a.wav"), "wb").close()
    >>> with open(os.path.join(d, "MACS.yaml"), "w") as f:
    ...     _ = f.write("files:\\n- filename: a.wav\\n  annotations:\\n"
    ...                 "  - annotator_id: 1\\n    sentence: people talk\\n    tags: [adults_talking]\\n")
    >>> read_macs(d)[0][0]["caption"]
    'people talk'
    """
    folder = os.path.abspath(folder)
    path = find_metadata(folder, "MACS.yaml")
    if path is None:
        raise FileNotFoundError(f"MACS folder {folder} holds no MACS.yaml (looked in it and one folder down).")
    with open(path, encoding="utf-8") as f:
        meta = yaml.safe_load(f) or {}
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), list):
        raise ManifestError(f"{path} has no 'files:' list; is it the MACS annotation file?")
    index = index_audio_files(folder)
    rows, n_missing = [], 0
    for entry in meta["files"]:
        name = str(entry.get("filename") or "").strip()
        sentences = [str(a.get("sentence") or "").strip() for a in entry.get("annotations") or []]
        sentences = [s for s in sentences if s]
        if not name:
            continue
        wav_path = lookup(index, name, prefer=("audio",))
        if wav_path is None:
            n_missing += len(sentences)
            continue
        for sentence in sentences:
            rows.append(caption_row("macs", len(rows), wav_path, sentence))
    return rows, n_missing
