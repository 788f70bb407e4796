"""Prepares the teacher's caption corpus ("insper"): Clotho, AudioCaps, MACS, FSD50K and user CSVs.

Each corpus is read from the layout users unpack (README, "Data"),
its audio is located with one directory walk, unreadable clips are dropped,
and the merged caption pairs are split by clip into ``train_raw.csv`` and
``valid.csv`` (``ID,wav_path,caption,source,source_id``).

To run it alone::

    python -c "from dataset.prepare_insper import prepare_insper; \\
        prepare_insper('/data/insper', 'results/insper')"

Authors
 * clap-curation-recipes contributors
"""

import functools
import html
import json
import logging
import os
import random
import re
import unicodedata

import yaml
from tqdm import tqdm

from dataset.audio import AUDIO_EXTENSIONS, AudioReadError, probe_audio, walk_audio_files
from dataset.manifest import (
    ManifestError, atomic_write, read_caption_csv, read_csv, read_json_or_none, sources_digest, write_csv,
)

logger = logging.getLogger(__name__)

CORPORA = ("clotho", "audiocaps", "macs", "fsd50k")
#: The paper code's index files (its YAMLs' ``csv_paths``), read when ``data_annot_folder`` holds them.
PAPER_INDEX_FILES = {
    "clotho": "insper_clotho_index.tsv",
    "audiocaps": "insper_audiocaps_train_index.tsv",
    "macs": "insper_macs_index_notag.tsv",
    "fsd50k": "insper_fsd50k_dev_index_notag.tsv",
}
#: ``caption_cleaning``: the paper code's caption clean-up of the corpora, or captions as written.
CAPTION_CLEANING = ("paper", "none")
INSPER_FIELDS = ["ID", "wav_path", "caption", "source", "source_id"]
TRAIN_CSV = "train_raw.csv"
VALID_CSV = "valid.csv"
OPTIONS_JSON = "prepare_insper.json"

# Bumped when the manifests' content changes for the same options, so that
# old manifests are not silently reused.
_FORMAT_VERSION = 1

# IDs become dictionary keys in SpeechBrain and parts of file names later on.
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
_HTML_TAG = re.compile(r"<[^>]*>")
_WHITESPACE = re.compile(r"\s+")


# ---------------------------------------------------------------- file lookup
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


def _lookup(index, name, prefer=()):
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


def _require_columns(path, rows, columns):
    missing = set(columns) - set(rows[0]) if rows else set()
    if missing:
        raise ManifestError(f"{path} lacks the column(s) {sorted(missing)} (found {sorted(rows[0])}).")


def _row(source, index, wav_path, caption, source_id=""):
    return {
        "ID": f"{source}_{index:06d}",
        "wav_path": wav_path,
        "caption": caption,
        "source": source,
        "source_id": source_id,
    }


def _as_splits(splits):
    return (splits,) if isinstance(splits, str) else tuple(splits)


# -------------------------------------------------------------------- readers
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
    splits = _as_splits(splits)
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
        _require_columns(captions_path, records, ["file_name"])
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
            wav_path = _lookup(index, name, prefer=(split,))
            if wav_path is None:
                n_missing += len(captions)
                continue
            source_id = sound_ids.get(unicodedata.normalize("NFC", name), "")
            for caption in captions:
                rows.append(_row("clotho", len(rows), wav_path, caption, source_id))
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
    splits = _as_splits(splits)
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
        _require_columns(path, records, ["youtube_id", "start_time", "caption"])
        for record in records:
            youtube_id = (record["youtube_id"] or "").strip()
            caption = (record["caption"] or "").strip()
            if not youtube_id or not caption:
                continue
            wav_path = None
            for stem in _audiocaps_stems(youtube_id, (record["start_time"] or "").strip()):
                for ext in AUDIO_EXTENSIONS:
                    wav_path = _lookup(index, stem + ext)
                    if wav_path:
                        break
                if wav_path:
                    break
            if wav_path is None:
                n_missing += 1
                continue
            rows.append(_row("audiocaps", len(rows), wav_path, caption, youtube_id))
    if n_found_csv == 0:
        raise FileNotFoundError(
            f"AudioCaps folder {folder} holds none of {[f'{s}.csv' for s in splits]} "
            "(looked in it and one folder down)."
        )
    return rows, n_missing


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
        wav_path = _lookup(index, name, prefer=("audio",))
        if wav_path is None:
            n_missing += len(sentences)
            continue
        for sentence in sentences:
            rows.append(_row("macs", len(rows), wav_path, sentence))
    return rows, n_missing


def strip_html(text):
    """Plain text of an HTML snippet: tags removed, entities decoded, whitespace collapsed.

    Example
    -------
    >>> strip_html('Rain on a <a href="http://x.org">tin roof</a>.<br/>\\n Rec &amp; edit')
    'Rain on a tin roof . Rec & edit'
    """
    text = _HTML_TAG.sub(" ", text or "")
    # Escaped markup (&lt;b&gt;) becomes a tag only after unescaping.
    text = _HTML_TAG.sub(" ", html.unescape(text))
    return _WHITESPACE.sub(" ", text).strip()


def _fsd50k_caption(info, labels, caption_cleaning="none"):
    if caption_cleaning == "paper":
        return _fsd50k_paper_text(info, labels)
    caption = strip_html(info.get("description", "")) or strip_html(info.get("title", ""))
    if not caption:
        caption = ", ".join(label.replace("_", " ").strip() for label in labels.split(",") if label.strip())
    return caption


def _fsd50k_paper_text(info, labels):
    """The text :func:`clean_caption` turns into the caption under ``caption_cleaning: paper``: the raw description.

    The paper's code cleans the description as written (HTML included); when
    nothing is left (the paper's code would train on an empty caption), the
    title, then the labels, are the text instead.
    """
    label_text = ", ".join(label.strip() for label in labels.split(",") if label.strip())
    for text in (info.get("description") or "", info.get("title") or "", label_text):
        if clean_caption(text, "fsd50k"):
            return text
    return ""


def read_fsd50k(folder, splits=("dev",), caption_cleaning="none"):
    """Reads FSD50K: one row per clip, captioned by its Freesound description.

    The caption is the description without HTML; if empty, the title; if still
    empty, the labels (``Electric_guitar,Music`` → ``Electric guitar, Music``).
    With ``caption_cleaning="paper"`` it is the description as written (HTML
    included) for :func:`clean_captions` to clean as the paper's code does
    (title, then labels, when that leaves nothing).

    Arguments
    ---------
    folder : str
        FSD50K root holding ``FSD50K.ground_truth/<split>.csv``,
        ``FSD50K.metadata/<split>_clips_info_FSD50K.json`` and
        ``FSD50K.<split>_audio/<fname>.wav`` (directly or one folder down).
    splits : tuple of str
        ``"dev"`` and/or ``"eval"``.
    caption_cleaning : str
        ``"none"`` (captions as above) or ``"paper"`` (the raw text, see above).

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source="fsd50k", source_id`` (``fname``, a Freesound id).
    n_missing : int
        Clips whose audio file was not found.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for sub in ("FSD50K.ground_truth", "FSD50K.metadata", "FSD50K.dev_audio"):
    ...     os.makedirs(os.path.join(d, sub))
    >>> open(os.path.join(d, "FSD50K.dev_audio", "64760.wav"), "wb").close()
    >>> with open(os.path.join(d, "FSD50K.ground_truth", "dev.csv"), "w") as f:
    ...     _ = f.write('fname,labels,mids,split\\n64760,"Electric_guitar,Music","/m/1,/m/2",train\\n')
    >>> with open(os.path.join(d, "FSD50K.metadata", "dev_clips_info_FSD50K.json"), "w") as f:
    ...     _ = f.write('{"64760": {"title": "riff.wav", "description": "", "tags": []}}')
    >>> read_fsd50k(d)[0][0]["caption"]
    'riff.wav'
    """
    folder = os.path.abspath(folder)
    splits = _as_splits(splits)
    index = None
    rows, n_missing, n_found_csv = [], 0, 0
    for split in splits:
        gt_path = find_metadata(folder, os.path.join("FSD50K.ground_truth", f"{split}.csv"))
        if gt_path is None:
            logger.warning(
                "FSD50K: no FSD50K.ground_truth/%s.csv in %s or one folder down; split skipped.", split, folder
            )
            continue
        n_found_csv += 1
        if index is None:
            index = index_audio_files(folder)
        info_path = find_metadata(folder, os.path.join("FSD50K.metadata", f"{split}_clips_info_FSD50K.json"))
        clips_info = {}
        if info_path is None:
            logger.warning("FSD50K: no %s_clips_info_FSD50K.json; captions fall back to the labels.", split)
        else:
            with open(info_path, encoding="utf-8") as f:
                clips_info = json.load(f)
        records = read_csv(gt_path)
        _require_columns(gt_path, records, ["fname", "labels"])
        for record in records:
            fname = (record["fname"] or "").strip()
            if not fname:
                continue
            caption = _fsd50k_caption(clips_info.get(fname) or {}, record["labels"] or "", caption_cleaning)
            if not caption:
                continue
            wav_path = _lookup(index, fname + ".wav", prefer=(f"FSD50K.{split}_audio",))
            if wav_path is None:
                n_missing += 1
                continue
            rows.append(_row("fsd50k", len(rows), wav_path, caption, fname))
    if n_found_csv == 0:
        raise FileNotFoundError(
            f"FSD50K folder {folder} holds none of "
            f"{[os.path.join('FSD50K.ground_truth', s + '.csv') for s in splits]} (looked in it and one folder down)."
        )
    return rows, n_missing


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
            exists[wav_path] = bool(wav_path) and os.path.isfile(wav_path)
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


_READERS = {"clotho": read_clotho, "audiocaps": read_audiocaps, "macs": read_macs, "fsd50k": read_fsd50k}


# --------------------------------------------------- the paper code's layout
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
    returned as written (see :func:`clean_captions` for the paper's clean-up).

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
    import csv

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
                rows.append(_row(corpus, len(rows), wav_path, caption, source_id))
    return rows, n_missing


_PAPER_LINK = re.compile(r"<a.*</a>")


def clean_caption(text, corpus):
    """The paper code's clean-up of a corpus caption (``dataset/prepare_curation.py``).

    Commas are removed and underscores become spaces; FSD50K descriptions also
    lose their links (``<a ...>...</a>``, up to the last ``</a>`` of a line),
    ``$``, ``*`` and carriage returns, and their lines are joined.

    Example
    -------
    >>> clean_caption(" a dog_bark, then rain ", "clotho")
    'a dog bark then rain'
    >>> clean_caption('Rain* on a <a href="x">tin</a> roof, $5', "fsd50k")
    'Rain on a roof 5'
    """
    if corpus != "fsd50k":
        return text.replace(",", "").replace("_", " ").strip()
    pieces = _PAPER_LINK.split(text.strip())
    pieces = [p.strip().replace("\n", " ").replace("\r", "").replace(",", "").replace("$", "").replace("*", "")
              .replace("_", " ") for p in pieces]
    return " ".join(pieces).strip()


def clean_captions(rows, corpus):
    """Applies :func:`clean_caption` to a corpus' rows, as the paper's code prepares its corpora.

    Rows whose caption becomes empty are dropped; for Clotho and MACS, whose
    index rows hold all of a clip's captions, a clip keeps each cleaned
    caption once (the paper's code takes their set).

    Example
    -------
    >>> rows = [{"wav_path": "a.wav", "caption": "rain, hard"}, {"wav_path": "a.wav", "caption": "rain hard"},
    ...         {"wav_path": "a.wav", "caption": ","}]
    >>> [r["caption"] for r in clean_captions(rows, "clotho")], len(clean_captions(rows, "audiocaps"))
    (['rain hard'], 2)
    """
    out, seen = [], set()
    for row in rows:
        caption = clean_caption(row["caption"], corpus)
        if not caption:
            continue
        if corpus in ("clotho", "macs"):
            if (row["wav_path"], caption) in seen:
                continue
            seen.add((row["wav_path"], caption))
        out.append(dict(row, caption=caption))
    return out


# ------------------------------------------------------------------- preparer
def _check_fractions(valid_pct, subset_pct):
    try:
        valid_pct, subset_pct = float(valid_pct), float(subset_pct)
    except (TypeError, ValueError) as err:
        raise ValueError(f"valid_pct and subset_pct must be numbers, got {valid_pct!r} and {subset_pct!r}.") from err
    if not 0.0 <= valid_pct < 1.0:
        raise ValueError(f"valid_pct is a fraction of the clips in [0, 1) (e.g. 0.05 for 5 %); got {valid_pct}.")
    if not 0.0 < subset_pct <= 1.0:
        raise ValueError(
            f"subset_pct is a fraction of the training clips in (0, 1] (1 = the full set, "
            f"0.5 = half of it), not a percentage; got {subset_pct}."
        )
    return valid_pct, subset_pct


def _resolve_folders(data_annot_folder, explicit):
    """``{corpus: absolute folder or None}``; explicit folders must exist."""
    subfolders = {}
    if data_annot_folder not in (None, ""):
        root = os.path.abspath(os.fspath(data_annot_folder))
        if not os.path.isdir(root):
            raise ValueError(f"data_annot_folder={data_annot_folder!r} is not an existing folder.")
        names = sorted(e.name for e in os.scandir(root) if e.is_dir())
        # Case-insensitive (users unpack "Clotho", "AudioCaps", "MACS", "FSD50K"), exact name first.
        for name in names:
            subfolders.setdefault(name.lower(), os.path.join(root, name))
        for name in names:
            if name in CORPORA:
                subfolders[name] = os.path.join(root, name)
    folders = {}
    for corpus in CORPORA:
        given = explicit.get(corpus)
        if given not in (None, ""):
            given = os.fspath(given)
            if not os.path.isdir(given):
                raise ValueError(f"{corpus}_folder={given!r} does not exist or is not a folder.")
            folders[corpus] = os.path.abspath(given)
        else:
            folders[corpus] = subfolders.get(corpus)
    return folders


def user_csv_list(user_csvs):
    """The paths given as ``user_csvs``: a list (``--user_csvs=[a.csv,b.csv]``, or a YAML list), one string
    naming an existing file (commas allowed in its name), a string holding a YAML list, or comma-separated paths.

    Example
    -------
    >>> user_csv_list("a.csv, b.csv"), user_csv_list('["x,y.csv", b.csv]'), user_csv_list(None)
    (['a.csv', 'b.csv'], ['x,y.csv', 'b.csv'], [])
    """
    if user_csvs is None:
        return []
    if isinstance(user_csvs, (str, os.PathLike)):
        text = os.fspath(user_csvs).strip()
        if os.path.isfile(text):
            return [text]
        parsed = None
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
        user_csvs = parsed if isinstance(parsed, list) else text.split(",")
    items = [os.fspath(p) if isinstance(p, os.PathLike) else str(p) for p in user_csvs if p is not None]
    return [p.strip() for p in items if p.strip()]


def _as_path_list(user_csvs):
    paths = [os.path.abspath(p) for p in user_csv_list(user_csvs)]
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(
                f"user_csvs: file not found: {path}. Several CSVs: --user_csvs=[a.csv,b.csv] (or a.csv,b.csv); "
                'a path with a comma in it: --user_csvs=["/data/a,b.csv"].'
            )
    return paths


def _read_cleaned(reader, location, name, caption_cleaning):
    """``reader(location)``, its captions cleaned as ``caption_cleaning`` says (corpora only, not user CSVs)."""
    if caption_cleaning == "none" or name not in CORPORA:
        return reader(location)
    if reader is read_fsd50k:
        rows, n_missing = reader(location, caption_cleaning=caption_cleaning)
    else:
        rows, n_missing = reader(location)
    return clean_captions(rows, name), n_missing


def _make_ids_unique(rows):
    """Makes IDs CSV- and file-name-safe and unique (``a b`` → ``a_b``; a repeat gets ``_2``, ``_3``…)."""
    seen = set()
    for row in rows:
        base = _ID_UNSAFE.sub("_", str(row["ID"])).strip("_") or row["source"]
        new_id, k = base, 1
        while new_id in seen:
            k += 1
            new_id = f"{base}_{k}"
        seen.add(new_id)
        row["ID"] = new_id


def _probe_all(rows):
    """``{wav_path: readable}``, probing each file once (a clip carries up to five captions)."""
    paths = list(dict.fromkeys(row["wav_path"] for row in rows))
    readable = {}
    for path in tqdm(paths, desc="Checking insper audio", unit="file", dynamic_ncols=True):
        try:
            probe_audio(path)
            readable[path] = True
        except AudioReadError as e:
            logger.debug("%s", e)
            readable[path] = False
    return readable


def _split_by_clip(rows, valid_pct, subset_pct, seed):
    """Shuffles clips, splits off ``valid_pct`` of them, keeps ``subset_pct`` of the rest."""
    clips = {}
    for row in rows:
        clips.setdefault(row["wav_path"], []).append(row)
    order = list(clips)
    rng = random.Random(seed)
    rng.shuffle(order)
    n_valid = int(round(valid_pct * len(order)))
    if valid_pct > 0 and n_valid == 0 and len(order) > 1:
        n_valid = 1  # an empty validation set would crash the training loop's VALID stage
    n_valid = min(n_valid, len(order) - 1)  # leave at least one clip to train on
    valid_clips, train_clips = order[:n_valid], order[n_valid:]
    train_clips = train_clips[: max(1, int(round(subset_pct * len(train_clips))))]
    train = [row for clip in train_clips for row in clips[clip]]
    valid = [row for clip in valid_clips for row in clips[clip]]
    # Rows are shuffled too, so that a loader reading in file order does not put
    # a clip's five captions in one batch (false negatives for the contrastive loss).
    # Validation first: its order then does not depend on subset_pct.
    rng.shuffle(valid)
    rng.shuffle(train)
    return train, valid, len(train_clips), len(valid_clips)


def prepare_insper(
    data_annot_folder,
    save_folder,
    clotho_folder=None,
    audiocaps_folder=None,
    macs_folder=None,
    fsd50k_folder=None,
    user_csvs=None,
    valid_pct=0.05,
    subset_pct=1.0,
    seed=1234,
    check_audio=True,
    caption_cleaning="none",
):
    """Writes the teacher's caption manifests ``train_raw.csv`` and ``valid.csv``.

    Reads every corpus present, drops captions whose audio is missing or (with
    ``check_audio``) unreadable, gives each row a unique, CSV-safe ``ID``,
    shuffles the clips with ``seed``, splits off ``valid_pct`` of the clips as
    validation (the captions of one clip never straddle the split) and keeps
    the first ``subset_pct`` of the training clips. Clotho's evaluation split
    and AudioCaps' test split are not read: they are retrieval test sets.

    Nothing is redone when ``prepare_insper.json`` records the same options
    and the same sources, and both CSVs exist. The sources are the caption
    rows read (their audio located on disk) and the size and modification
    time of every audio file they name, recorded as a digest: the corpora
    are read again (a directory walk, no audio decoding) to compare.

    Arguments
    ---------
    data_annot_folder : str or None
        Root holding any of ``clotho/``, ``audiocaps/``, ``macs/``, ``fsd50k/``
        (names compared case-insensitively), or the paper code's index files
        (:data:`PAPER_INDEX_FILES`, read by :func:`read_paper_index`; when
        any is there, the corpora come from them, not from subfolders). May be
        None when corpus folders or user CSVs are given.
    save_folder : str
        Where the manifests and ``prepare_insper.json`` are written.
    clotho_folder, audiocaps_folder, macs_folder, fsd50k_folder : str, optional
        Override the corresponding folder under ``data_annot_folder``; must exist.
    user_csvs : list of str or str, optional
        Extra ``ID,wav_path,caption`` CSVs (a string may list several, comma-separated).
    valid_pct : float
        Fraction of the clips, in [0, 1), held out for validation.
    subset_pct : float
        Fraction of the training clips, in (0, 1], to keep (1 = all).
    seed : int
        Seed of the shuffle.
    check_audio : bool
        Probe every audio file's header and drop unreadable or empty ones.
    caption_cleaning : str
        ``"paper"``: the paper code's clean-up of the corpora's captions
        (:func:`clean_captions`); ``"none"``: captions as written. User CSVs
        are never changed.

    Returns
    -------
    dict
        ``{"train": path, "valid": path, "stats": {...}}``; ``stats["corpora"]``
        holds, per corpus, the folder and the numbers of captions (``rows``)
        and clips found, of captions whose audio is missing or unreadable, and
        of captions and clips kept (``kept``, ``kept_clips``); the other keys
        count the rows and clips of each split.

    Raises
    ------
    ValueError
        If no corpus is found, an explicit folder or user CSV does not exist,
        a fraction is out of range, or no usable caption remains.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> for k in range(4):
    ...     soundfile.write(os.path.join(d, f"{k}.wav"), np.zeros(160), 16000)
    >>> write_csv(os.path.join(d, "pairs.csv"),
    ...           [{"wav_path": f"{k}.wav", "caption": f"sound {k}, loud"} for k in range(4)])
    >>> out = prepare_insper(None, os.path.join(d, "out"), user_csvs=[os.path.join(d, "pairs.csv")],
    ...                      valid_pct=0.25)
    >>> out["stats"]["train_clips"], out["stats"]["valid_clips"]
    (3, 1)
    >>> sorted(read_csv(out["train"])[0])
    ['ID', 'caption', 'source', 'source_id', 'wav_path']
    """
    valid_pct, subset_pct = _check_fractions(valid_pct, subset_pct)
    if caption_cleaning not in CAPTION_CLEANING:
        raise ValueError(f"caption_cleaning must be one of {', '.join(CAPTION_CLEANING)}; got {caption_cleaning!r}.")
    explicit = {"clotho": clotho_folder, "audiocaps": audiocaps_folder, "macs": macs_folder, "fsd50k": fsd50k_folder}
    index_files = paper_index_files(data_annot_folder)
    if index_files:
        # The paper code's layout: its index files name the audio below data_annot_folder (whose subfolders
        # hold audio, not the published metadata); a corpus folder given explicitly still wins.
        folders = _resolve_folders(None, explicit)
        index_files = {c: p for c, p in index_files.items() if folders[c] is None}
        absent = [PAPER_INDEX_FILES[c] for c in CORPORA if c not in index_files and folders[c] is None]
        logger.info("insper: the paper code's index files in %s: %s%s", data_annot_folder,
                    ", ".join(os.path.basename(p) for p in index_files.values()),
                    f" (absent: {', '.join(absent)})" if absent else "")
    else:
        folders = _resolve_folders(data_annot_folder, explicit)
    csv_paths = _as_path_list(user_csvs)
    if not any(folders.values()) and not csv_paths and not index_files:
        raise ValueError(
            f"No caption corpus found: looked for the folders {', '.join(c + '/' for c in CORPORA)} "
            f"under data_annot_folder={data_annot_folder!r}, for the keys "
            f"{', '.join(c + '_folder' for c in CORPORA)}, and for user_csvs."
        )

    save_folder = os.path.abspath(os.fspath(save_folder))
    train_csv = os.path.join(save_folder, TRAIN_CSV)
    valid_csv = os.path.join(save_folder, VALID_CSV)
    json_path = os.path.join(save_folder, OPTIONS_JSON)
    options = {
        "format_version": _FORMAT_VERSION,
        "data_annot_folder": None if data_annot_folder in (None, "") else os.path.abspath(data_annot_folder),
        "folders": folders,
        "user_csvs": csv_paths,
        "valid_pct": valid_pct,
        "subset_pct": subset_pct,
        "seed": int(seed),
        "check_audio": bool(check_audio),
        "index_files": index_files,
        "caption_cleaning": caption_cleaning,
    }
    sources = []  # (name, folder or csv path, reader call)
    for corpus in CORPORA:
        if corpus in index_files:
            sources.append((corpus, index_files[corpus], functools.partial(read_paper_index, corpus=corpus)))
        elif folders[corpus] is None:
            logger.info("insper: no %s/ folder and no %s_folder given; %s skipped.", corpus, corpus, corpus)
        else:
            sources.append((corpus, folders[corpus], _READERS[corpus]))
    for path in csv_paths:
        sources.append((f"user:{path}", path, read_user_csv))

    corpus_rows, corpus_stats = [], {}
    for name, location, reader in sources:
        rows, n_missing = _read_cleaned(reader, location, name, caption_cleaning)
        corpus_rows.append((name, rows))
        corpus_stats[name] = {
            "folder": location,
            "rows": len(rows),
            "clips": len({row["wav_path"] for row in rows}),
            "missing": n_missing,
            "unreadable": 0,
        }
    # The manifests are keyed on the options, on the caption rows read (their audio located on
    # disk) and on the size/mtime of every audio file they name: reused only when all are unchanged.
    inputs = sources_digest({"rows": corpus_rows, "stats": corpus_stats},
                            sorted({row["wav_path"] for _, rows in corpus_rows for row in rows}))
    previous = read_json_or_none(json_path)
    if previous and previous.get("options") == options and os.path.isfile(train_csv) and os.path.isfile(valid_csv):
        if previous.get("sources") == inputs:
            logger.info("%s and %s exist for the same options and unchanged sources; skipping preparation.",
                        train_csv, valid_csv)
            return {"train": train_csv, "valid": valid_csv, "stats": previous.get("stats", {})}
        logger.info("%s and %s: %s; preparing them again.", train_csv, valid_csv,
                    "their caption files or audio files changed since (content, size or modification time)"
                    if previous.get("sources") else "written by an older version that did not record their sources")
    # The JSON marks a finished preparation: drop it first so that a crash
    # while writing new CSVs can never pair them with the old options.
    if os.path.exists(json_path):
        os.remove(json_path)

    if check_audio:
        readable = _probe_all([row for _, rows in corpus_rows for row in rows])
        for i, (name, rows) in enumerate(corpus_rows):
            kept = [row for row in rows if readable[row["wav_path"]]]
            corpus_stats[name]["unreadable"] = len(rows) - len(kept)
            bad = sorted({row["wav_path"] for row in rows if not readable[row["wav_path"]]})
            if bad:
                logger.warning(
                    "%s: %d unreadable or empty audio file(s) skipped, e.g. %s", name, len(bad), ", ".join(bad[:3])
                )
            corpus_rows[i] = (name, kept)
    for name, rows in corpus_rows:
        stats = corpus_stats[name]
        stats["kept"] = len(rows)
        stats["kept_clips"] = len({row["wav_path"] for row in rows})
        logger.info(
            "insper: %s: %d captions of %d clips found, %d missing audio, %d unreadable audio, "
            "%d captions of %d clips kept (%s)",
            name, stats["rows"], stats["clips"], stats["missing"], stats["unreadable"], stats["kept"],
            stats["kept_clips"], stats["folder"],
        )

    all_rows = [row for _, rows in corpus_rows for row in rows]
    if not all_rows:
        raise ValueError(
            "No usable caption: every corpus found had its audio missing or unreadable "
            f"({json.dumps(corpus_stats)}). Check where the audio files are."
        )
    _make_ids_unique(all_rows)
    train, valid, n_train_clips, n_valid_clips = _split_by_clip(all_rows, valid_pct, subset_pct, seed)
    write_csv(train_csv, train, fieldnames=INSPER_FIELDS)
    write_csv(valid_csv, valid, fieldnames=INSPER_FIELDS)
    stats = {
        "corpora": corpus_stats,
        "train_rows": len(train),
        "train_clips": n_train_clips,
        "valid_rows": len(valid),
        "valid_clips": n_valid_clips,
    }
    atomic_write(
        json_path,
        lambda f: json.dump({"options": options, "sources": inputs, "stats": stats}, f, indent=2, ensure_ascii=False),
        "w",
        encoding="utf-8",
    )
    logger.info(
        "insper: %d training captions (%d clips) in %s, %d validation captions (%d clips) in %s",
        len(train), n_train_clips, train_csv, len(valid), n_valid_clips, valid_csv,
    )
    return {"train": train_csv, "valid": valid_csv, "stats": stats}
