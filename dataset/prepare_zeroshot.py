"""Prepares the zero-shot evaluation sets: ESC-50, UrbanSound8K, TUT Acoustic Scenes 2017, VGGSound and TAU Urban
Acoustic Scenes 2019.

Each preparer reads the layout users unpack (docs/zeroshot.md, ``data_folder``) and
writes one manifest ``zeroshot_<dataset>.csv`` with the columns
``ID,wav_path,class_name,fold,source_id`` (absolute ``wav_path``; the raw
class name, e.g. ``sea_waves`` or ``cafe/restaurant``; ``source_id`` the
Freesound id of ESC-50 and UrbanSound8K clips, the recording location of TUT
clips, the YouTube id of VGGSound clips, the city and location of TAU 2019
clips). Next to it, ``zeroshot_<dataset>.json`` records the options, the
class list in the paper's order (ESC-50 by ``target``, UrbanSound8K by
``classID``, TUT sorted; VGGSound and TAU 2019 the fixed lists of
``dataset/class_lists``, see :mod:`dataset.vggsound` and :mod:`dataset.tau19`)
and the counts; a later call with the same options
reuses the manifest unless the metadata's content or a listed audio file's
size or modification time changed (a digest of them is recorded too).
Clips listed in the metadata but absent on disk are skipped and counted, as
are files whose header cannot be read, and (VGGSound, TAU 2019) clips of a
class outside the fixed list.

To run it alone::

    python -c "from dataset.prepare_zeroshot import prepare_esc50; \\
        prepare_esc50('/data/ESC-50-master', 'results/esc50')"

Authors
 * clap-curation-recipes contributors
"""

import json
import logging
import os
import re

from tqdm import tqdm

from dataset import tau19, vggsound
from dataset.audio import AudioReadError, probe_audio
from dataset.labels import TUT_SETS, dataset_labels
from dataset.manifest import atomic_write, read_csv, read_json_or_none, sources_digest, write_csv
from dataset.shards import audio_exists

logger = logging.getLogger(__name__)

ZEROSHOT_FIELDS = ["ID", "wav_path", "class_name", "fold", "source_id"]
# Fold value of every clip of the TUT 2017 evaluation set.
TUT_EVAL_FOLD = "evaluation"
TUT_SET_NAMES = ("development", "evaluation")
# What each dataset's folds are called (the ``fold`` column of the manifest).
DATASET_FOLDS = {
    "esc50": [str(k) for k in range(1, 6)],
    "us8k": [str(k) for k in range(1, 11)],
    "tut17": [str(k) for k in range(1, 5)] + [TUT_EVAL_FOLD],
    "vggsound": list(vggsound.SPLITS),
    "tau19": list(tau19.SETUP_FILES),
}
# Sets scored over a fixed class list (the paper code's): rows of other classes are left out and counted.
FIXED_CLASS_LISTS = {"vggsound": vggsound.paper_labels, "tau19": tau19.paper_labels}
# The file that identifies each dataset's root folder.
_ROOT_MARKERS = {
    "esc50": (os.path.join("meta", "esc50.csv"),),
    "us8k": (os.path.join("metadata", "UrbanSound8K.csv"),),
    "tut17": tuple(os.path.join(name, "meta.txt") for name in TUT_SETS),
    "vggsound": (vggsound.VGGSOUND_CSV,) + tuple(
        os.path.join(base, split) for base in vggsound.CLASS_FOLDER_ROOTS for split in vggsound.SPLITS),
    "tau19": (tau19.SETUP_FILES["evaluate"],),
}
_ALIASES = {"esc": "esc50", "esc-50": "esc50", "tut": "tut17", "tut2017": "tut17", "urbansound8k": "us8k",
            "vgg-sound": "vggsound", "tauuas2019": "tau19", "tau2019": "tau19"}

# Bumped when the manifests' content changes for the same options, so that
# old manifests are not silently reused.
_FORMAT_VERSION = 1


def canonical_dataset(dataset):
    """The canonical name (``esc50``, ``us8k``, ``tut17``, ``vggsound``, ``tau19``) of a zero-shot set, accepting the
    YAML folder names.

    Example
    -------
    >>> canonical_dataset("esc"), canonical_dataset("US8K"), canonical_dataset("tut"), canonical_dataset("tauuas2019")
    ('esc50', 'us8k', 'tut17', 'tau19')
    """
    name = str(dataset).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in DATASET_FOLDS:
        raise ValueError(f"Unknown zero-shot dataset {dataset!r}; expected one of esc50 (esc), us8k, tut17 (tut), "
                         "vggsound, tau19.")
    return name


def manifest_paths(save_folder, dataset):
    """``(csv, json)`` paths of the manifest of ``dataset`` in ``save_folder``.

    Example
    -------
    >>> [os.path.basename(p) for p in manifest_paths("/tmp/out", "esc")]
    ['zeroshot_esc50.csv', 'zeroshot_esc50.json']
    """
    dataset = canonical_dataset(dataset)
    base = os.path.join(os.path.abspath(os.fspath(save_folder)), f"zeroshot_{dataset}")
    return base + ".csv", base + ".json"


def parse_folds(folds, dataset):
    """Normalises a fold selection into a sorted list of fold names, or None for all folds.

    Arguments
    ---------
    folds : None, int, str or list
        ``None`` (or ``""``) = every fold; an int; a string ``"1,2"`` or
        ``"[1, 2]"`` (what a ``--folds=`` flag gives); a list of ints or
        strings. TUT 2017 also has the fold ``"evaluation"`` (its evaluation set).
    dataset : str
        ``esc50`` (folds 1-5), ``us8k`` (1-10), ``tut17`` (1-4, evaluation),
        ``vggsound`` (train, test) or ``tau19`` (train, evaluate).

    Returns
    -------
    list of str or None

    Raises
    ------
    ValueError
        If a fold does not exist in that dataset, or the selection is empty.

    Example
    -------
    >>> parse_folds("2, 1", "esc50"), parse_folds(None, "us8k"), parse_folds([4, "evaluation"], "tut")
    (['1', '2'], None, ['4', 'evaluation'])
    >>> parse_folds(6, "esc50")
    Traceback (most recent call last):
    ...
    ValueError: esc50 has no fold '6' (folds=6); its folds are 1, 2, 3, 4, 5.
    """
    dataset = canonical_dataset(dataset)
    valid = DATASET_FOLDS[dataset]
    if folds is None or (isinstance(folds, str) and not folds.strip()):
        return None
    if isinstance(folds, str):
        items = [x for x in re.split(r"[\s,;\[\]]+", folds) if x]
    elif isinstance(folds, (list, tuple, set)):
        items = list(folds)
    else:
        items = [folds]
    if not items:
        raise ValueError(f"folds={folds!r} selects no fold of {dataset}; give null for all folds.")
    chosen = set()
    for item in items:
        if isinstance(item, bool):
            name = str(item)
        elif isinstance(item, float) and item.is_integer():
            name = str(int(item))
        else:
            name = str(item).strip().lower()
        if name not in valid:
            raise ValueError(
                f"{dataset} has no fold {name!r} (folds={folds!r}); its folds are {', '.join(valid)}."
            )
        chosen.add(name)
    return sorted(chosen, key=valid.index)


def find_dataset_root(data_folder, dataset):
    """The folder holding ``dataset``'s metadata: ``data_folder`` itself or one of its subfolders.

    The second case lets ``--data_folder`` point at a folder that holds the
    unpacked archive (``ESC-50-master/``, ``UrbanSound8K/``) or the toy world.

    Raises
    ------
    FileNotFoundError
        Naming the file looked for.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "ESC-50-master", "meta"))
    >>> open(os.path.join(d, "ESC-50-master", "meta", "esc50.csv"), "w").close()
    >>> find_dataset_root(d, "esc50") == os.path.join(d, "ESC-50-master")
    True
    """
    dataset = canonical_dataset(dataset)
    if not data_folder:
        raise FileNotFoundError(f"No data_folder given for {dataset}.")
    folder = os.path.abspath(os.fspath(data_folder))
    markers = _ROOT_MARKERS[dataset]

    def holds(root):
        return any(os.path.exists(os.path.join(root, m)) for m in markers)

    if holds(folder):
        return folder
    try:
        subfolders = sorted(e.path for e in os.scandir(folder) if e.is_dir())
    except OSError:
        subfolders = []
    for sub in subfolders:
        if holds(sub):
            return sub
    raise FileNotFoundError(
        f"{dataset}: found no {' or '.join(markers)} in {folder} or its subfolders; "
        f"--data_folder must be the root of the unpacked dataset (see docs/zeroshot.md, "
        f"the data_folder row of its flag table)."
    )


# ------------------------------------------------------------------ readers
def _strip_row(row):
    return {(k or "").strip(): (v or "").strip() for k, v in row.items()}


def _require(path, rows, columns):
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; is it the dataset's metadata file?")


def read_esc50(root):
    """Rows of ``meta/esc50.csv``: ``ID`` (file stem), ``wav_path``, ``class_name`` (``category``), ``fold``,
    ``source_id`` (``src_file``)."""
    path = os.path.join(root, "meta", "esc50.csv")
    rows = [_strip_row(r) for r in read_csv(path)]
    _require(path, rows, ["filename", "fold", "category", "src_file"])
    return [
        {
            "ID": os.path.splitext(r["filename"])[0],
            "wav_path": os.path.join(root, "audio", r["filename"]),
            "class_name": r["category"],
            "fold": str(int(r["fold"])),
            "source_id": r["src_file"],
        }
        for r in rows
    ]


def read_us8k(root):
    """Rows of ``metadata/UrbanSound8K.csv``; audio in ``audio/fold<k>/``; ``source_id`` is ``fsID``."""
    path = os.path.join(root, "metadata", "UrbanSound8K.csv")
    rows = [_strip_row(r) for r in read_csv(path)]
    _require(path, rows, ["slice_file_name", "fsID", "fold", "class"])
    out = []
    for r in rows:
        fold = str(int(r["fold"]))
        out.append({
            "ID": os.path.splitext(r["slice_file_name"])[0],
            "wav_path": os.path.join(root, "audio", f"fold{fold}", r["slice_file_name"]),
            "class_name": r["class"],
            "fold": fold,
            "source_id": r["fsID"],
        })
    return out


def _read_tsv(path):
    """Non-empty lines of a TUT text file, split at tabs (whitespace if a line has no tab), every field stripped."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line in f:
            fields = line.split("\t") if "\t" in line else line.split()
            fields = [x.strip() for x in fields]
            while fields and not fields[-1]:
                fields.pop()
            if fields:
                rows.append(fields)
    return rows


def _tut_dev_folds(set_root):
    """``{file: fold}`` from ``evaluation_setup/fold<k>_evaluate.txt`` (each clip is evaluated in one fold)."""
    folds = {}
    for k in range(1, 5):
        path = os.path.join(set_root, "evaluation_setup", f"fold{k}_evaluate.txt")
        if os.path.isfile(path):
            for fields in _read_tsv(path):
                folds[fields[0]] = str(k)
    return folds


def read_tut17(root, sets=TUT_SET_NAMES):
    """Rows of the TUT 2017 ``meta.txt`` files of ``sets`` (``development``, ``evaluation``).

    Development clips take their fold from ``evaluation_setup/fold<k>_evaluate.txt``
    (empty when a clip is in none); evaluation clips have the fold ``"evaluation"``.
    ``source_id`` is the recording location when ``meta.txt`` has a third column.
    """
    rows = []
    for set_name in sets:
        set_root = os.path.join(root, f"TUT-acoustic-scenes-2017-{set_name}")
        meta = os.path.join(set_root, "meta.txt")
        if not os.path.isfile(meta):
            raise FileNotFoundError(f"tut17: {meta} not found; the {set_name} set is needed (sets={list(sets)}).")
        if set_name == "development":
            folds = _tut_dev_folds(set_root)
            if not folds:
                logger.warning("tut17: no evaluation_setup/fold<k>_evaluate.txt in %s; development clips get no fold.",
                               set_root)
        prefix = "dev" if set_name == "development" else "eval"
        for i, fields in enumerate(_read_tsv(meta)):
            if len(fields) < 2:
                raise ValueError(f"{meta}, line {i + 1}: expected 'file<TAB>scene[<TAB>location]', got {fields!r}.")
            file_name, scene = fields[0], fields[1]
            fold = folds.get(file_name, "") if set_name == "development" else TUT_EVAL_FOLD
            stem = os.path.splitext(os.path.basename(file_name))[0]
            rows.append({
                "ID": f"{prefix}_{stem}",
                "wav_path": os.path.normpath(os.path.join(set_root, file_name)),
                "class_name": scene,
                "fold": fold,
                "source_id": fields[2] if len(fields) > 2 else "",
            })
    return rows


# --------------------------------------------------------------- preparation
def _check_rows(rows, labels, dataset):
    known = set(labels)
    unknown = sorted({r["class_name"] for r in rows} - known)
    if unknown and dataset not in FIXED_CLASS_LISTS:
        raise ValueError(f"{dataset}: class(es) {unknown} are not in the class list {labels}.")
    seen = set()
    for row in rows:
        if row["ID"] in seen:
            raise ValueError(f"{dataset}: duplicate clip ID {row['ID']!r} ({row['wav_path']}).")
        seen.add(row["ID"])


def _available(rows, check_audio, dataset):
    """Splits rows into (kept, missing, unreadable) by looking at the audio files."""
    kept, missing, unreadable = [], [], []
    for row in tqdm(rows, desc=f"Checking {dataset} audio", unit="file", dynamic_ncols=True,
                    disable=len(rows) < 1000):
        if not audio_exists(row["wav_path"]):
            missing.append(row)
            continue
        if check_audio:
            try:
                probe_audio(row["wav_path"])
            except AudioReadError as err:
                logger.debug("%s", err)
                unreadable.append(row)
                continue
        kept.append(row)
    return kept, missing, unreadable


def read_vggsound(root, audio_folder=None):
    """Rows of VGGSound under ``root``: ``vggsound.csv`` (clips looked up below ``audio_folder``, default ``root``),
    else the paper code's class-folder copy (see :mod:`dataset.vggsound`)."""
    if os.path.isfile(os.path.join(root, vggsound.VGGSOUND_CSV)):
        rows, duplicates = vggsound.rows_from_csv(root, audio_folder or root)
        if duplicates:
            logger.info("vggsound: %d repeated row(s) of %s listed once.", duplicates, vggsound.VGGSOUND_CSV)
        return rows
    base = vggsound.class_folder_root(root)
    if base is None:
        raise FileNotFoundError(
            f"vggsound: {root} holds neither {vggsound.VGGSOUND_CSV} (the published metadata, clips named "
            f"<youtube_id>_<start:06d>.wav below it) nor {' or '.join(vggsound.CLASS_FOLDER_ROOTS)}/test/<label>/ "
            "(the paper code's copy)."
        )
    logger.info("vggsound: no %s in %s; reading the class folders of %s.", vggsound.VGGSOUND_CSV, root, base)
    return vggsound.rows_from_class_folders(base)


def _exclude_other_classes(rows, labels, dataset):
    """Splits rows into (kept, left out) by the fixed class list; logs what was left out."""
    known = set(labels)
    kept = [r for r in rows if r["class_name"] in known]
    if len(kept) == len(rows):
        return rows, 0
    other = {}
    for row in rows:
        if row["class_name"] not in known:
            other[row["class_name"]] = other.get(row["class_name"], 0) + 1
    shown = ", ".join(f"{name!r} ({n})" for name, n in sorted(other.items())[:10])
    logger.warning("%s: %d clip(s) of %d class(es) outside the paper's class list (%d classes) were left out: %s%s",
                   dataset, len(rows) - len(kept), len(other), len(labels), shown, ", ..." if len(other) > 10 else "")
    return kept, len(rows) - len(kept)


_MISSING_HINT = {
    "vggsound": " (clips are looked for below --data_folder as <youtube_id>_<start:06d>.wav|flac|ogg|mp3, "
                "<youtube_id>_<start>.* or <youtube_id>_<start:06d>_<end:06d>.*)",
}


def _fold_order(fold):
    return (0, int(fold), "") if fold.isdigit() else (1, 0, fold)




def _prepare(dataset, data_folder, save_folder, folds, check_audio, sets=None):
    dataset = canonical_dataset(dataset)
    fold_list = parse_folds(folds, dataset)
    root = find_dataset_root(data_folder, dataset)
    if dataset == "tut17":
        sets = _parse_sets(sets)
        if fold_list:
            dev_folds = [f for f in fold_list if f != TUT_EVAL_FOLD]
            if dev_folds and "development" not in sets:
                raise ValueError(
                    f"tut17: folds {dev_folds} are development folds but sets={sets} has no development set."
                )
            if TUT_EVAL_FOLD in fold_list and "evaluation" not in sets:
                raise ValueError(f"tut17: fold 'evaluation' selected but sets={sets} has no evaluation set.")
    csv_path, json_path = manifest_paths(save_folder, dataset)
    options = {
        "format_version": _FORMAT_VERSION,
        "dataset": dataset,
        "data_folder": root,
        "folds": fold_list,
        "check_audio": bool(check_audio),
    }
    if dataset == "tut17":
        options["sets"] = list(sets)
    # The metadata is read (cheap) before deciding whether to reuse the manifest: it is
    # keyed on the options, on that content and on the size/mtime of every listed audio file.
    if dataset in FIXED_CLASS_LISTS:
        labels = FIXED_CLASS_LISTS[dataset]()
    else:
        labels = dataset_labels(dataset, root)
    if dataset == "esc50":
        rows = read_esc50(root)
    elif dataset == "us8k":
        rows = read_us8k(root)
    elif dataset == "vggsound":
        rows = read_vggsound(root, os.path.abspath(os.fspath(data_folder)))
    elif dataset == "tau19":
        rows = tau19.read_tau19(root)
    else:
        rows = read_tut17(root, sets)
    _check_rows(rows, labels, dataset)
    listed_total = len(rows)
    if fold_list is not None:
        rows = [r for r in rows if r["fold"] in fold_list]
    selected = len(rows)
    rows, excluded = _exclude_other_classes(rows, labels, dataset)
    sources = sources_digest({"labels": labels, "listed": listed_total, "rows": rows}, [r["wav_path"] for r in rows])
    previous = read_json_or_none(json_path)
    if previous and previous.get("options") == options and os.path.isfile(csv_path):
        if previous.get("sources") == sources:
            logger.info("%s exists for the same options and unchanged sources; skipping preparation.", csv_path)
            return {"csv": csv_path, "labels": previous["labels"], "stats": previous.get("stats", {}),
                    "reused": True}
        logger.info("%s: %s; preparing it again.", csv_path,
                    "its metadata or audio files changed since (content, size or modification time)"
                    if previous.get("sources") else "written by an older version that did not record its sources")
    # The JSON marks a finished preparation: drop it first so that a crash
    # while writing a new CSV can never pair it with the old options.
    if os.path.exists(json_path):
        os.remove(json_path)

    kept, missing, unreadable = _available(rows, check_audio, dataset)
    if missing:
        logger.warning("%s: %d listed clip(s) missing on disk were skipped, e.g. %s%s",
                       dataset, len(missing), ", ".join(r["wav_path"] for r in missing[:3]),
                       _MISSING_HINT.get(dataset, ""))
    if unreadable:
        logger.warning("%s: %d unreadable or empty audio file(s) were skipped, e.g. %s",
                       dataset, len(unreadable), ", ".join(r["wav_path"] for r in unreadable[:3]))
    if not kept:
        example = rows[0]["wav_path"] if rows else "(no clip of the class list in the selected folds)"
        raise ValueError(
            f"{dataset}: no readable audio among the {len(rows)} clips listed in folds "
            f"{fold_list or 'all'} under {root} (e.g. {example}). Check --data_folder and the folds."
            + _MISSING_HINT.get(dataset, "")
        )
    per_fold = {}
    for row in kept:
        per_fold[row["fold"]] = per_fold.get(row["fold"], 0) + 1
    stats = {
        "listed": listed_total,
        "selected": selected,
        "excluded": excluded,
        "kept": len(kept),
        "missing": len(missing),
        "unreadable": len(unreadable),
        "per_fold": {f: per_fold[f] for f in sorted(per_fold, key=_fold_order)},
    }
    write_csv(csv_path, kept, fieldnames=ZEROSHOT_FIELDS)
    atomic_write(
        json_path,
        lambda f: json.dump({"options": options, "sources": sources, "labels": labels, "stats": stats}, f, indent=2,
                            ensure_ascii=False),
        "w",
        encoding="utf-8",
    )
    logger.info(
        "%s: %d clips listed, %d in folds %s, %d of other classes, %d kept, %d missing, %d unreadable; "
        "%d classes -> %s",
        dataset, listed_total, selected, fold_list or "all", excluded, len(kept), len(missing), len(unreadable),
        len(labels), csv_path,
    )
    return {"csv": csv_path, "labels": labels, "stats": stats, "reused": False}


def _parse_sets(sets):
    if sets is None:
        return list(TUT_SET_NAMES)
    if isinstance(sets, str):
        sets = [s for s in re.split(r"[\s,;\[\]]+", sets) if s]
    sets = [str(s).strip().lower() for s in sets]
    bad = [s for s in sets if s not in TUT_SET_NAMES]
    if bad or not sets:
        raise ValueError(f"tut17: sets must be a non-empty subset of {list(TUT_SET_NAMES)}, got {sets!r}.")
    return [s for s in TUT_SET_NAMES if s in sets]


def prepare_esc50(data_folder, save_folder, folds=None, check_audio=True):
    """Writes the ESC-50 manifest ``zeroshot_esc50.csv`` (50 classes in ``target`` order, folds 1-5).

    Arguments
    ---------
    data_folder : str
        The folder holding ``audio/`` and ``meta/esc50.csv`` (or its parent).
    save_folder : str
        Where ``zeroshot_esc50.csv`` and ``zeroshot_esc50.json`` are written.
    folds : None, int, str or list
        Folds to keep (see :func:`parse_folds`); None keeps all five.
    check_audio : bool
        Read every file's header and skip unreadable or empty ones.

    Returns
    -------
    dict
        ``csv`` (manifest path), ``labels`` (class list in ``target`` order),
        ``stats`` (``listed``, ``selected`` (in the chosen folds), ``kept``,
        ``missing``, ``unreadable``, ``per_fold``) and ``reused`` (True when
        an earlier manifest for the same options was kept).

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "meta")); os.makedirs(os.path.join(d, "audio"))
    >>> with open(os.path.join(d, "meta", "esc50.csv"), "w") as f:
    ...     _ = f.write("filename,fold,target,category,esc10,src_file,take\\n"
    ...                 "1-1-A-1.wav,1,1,rain,False,1,A\\n2-2-A-0.wav,2,0,sea_waves,False,2,A\\n")
    >>> soundfile.write(os.path.join(d, "audio", "1-1-A-1.wav"), np.zeros(441), 44100)
    >>> out = prepare_esc50(d, os.path.join(d, "out"))
    >>> out["labels"], out["stats"]["kept"], out["stats"]["missing"]
    (['sea_waves', 'rain'], 1, 1)
    >>> prepare_esc50(d, os.path.join(d, "out"))["reused"]
    True
    """
    return _prepare("esc50", data_folder, save_folder, folds, check_audio)


def prepare_us8k(data_folder, save_folder, folds=None, check_audio=True):
    """Writes the UrbanSound8K manifest ``zeroshot_us8k.csv`` (10 classes in ``classID`` order, folds 1-10).

    Arguments
    ---------
    data_folder : str
        The folder holding ``audio/fold<k>/`` and ``metadata/UrbanSound8K.csv`` (or its parent).
    save_folder : str
        Where ``zeroshot_us8k.csv`` and ``zeroshot_us8k.json`` are written.
    folds : None, int, str or list
        Folds to keep (see :func:`parse_folds`); never reshuffled.
    check_audio : bool
        Read every file's header and skip unreadable or empty ones.

    Returns
    -------
    dict
        As :func:`prepare_esc50`.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "metadata")); os.makedirs(os.path.join(d, "audio", "fold3"))
    >>> with open(os.path.join(d, "metadata", "UrbanSound8K.csv"), "w") as f:
    ...     _ = f.write("slice_file_name,fsID,start,end,salience,fold,classID,class\\n"
    ...                 "7-3-0-0.wav,7,0,0.05,1,3,3,dog_bark\\n")
    >>> soundfile.write(os.path.join(d, "audio", "fold3", "7-3-0-0.wav"), np.zeros((1100, 2)), 22050)
    >>> out = prepare_us8k(d, os.path.join(d, "out"), folds=3)
    >>> out["stats"]["per_fold"], read_csv(out["csv"])[0]["source_id"]
    ({'3': 1}, '7')
    """
    return _prepare("us8k", data_folder, save_folder, folds, check_audio)


def prepare_tut17(data_folder, save_folder, folds=None, sets=TUT_SET_NAMES, check_audio=True):
    """Writes the TUT Acoustic Scenes 2017 manifest ``zeroshot_tut17.csv`` (15 scenes, sorted).

    The paper scores the development and evaluation sets together (the
    default ``sets``). Development clips take their fold (1-4) from
    ``evaluation_setup/fold<k>_evaluate.txt``; evaluation clips have the fold
    ``"evaluation"``. Every field of the text files is stripped.

    Arguments
    ---------
    data_folder : str
        The folder holding ``TUT-acoustic-scenes-2017-development/`` and/or
        ``TUT-acoustic-scenes-2017-evaluation/`` (or its parent).
    save_folder : str
        Where ``zeroshot_tut17.csv`` and ``zeroshot_tut17.json`` are written.
    folds : None, int, str or list
        Folds to keep: 1-4 and/or ``"evaluation"``; None keeps every clip of ``sets``.
    sets : tuple of str
        ``"development"``, ``"evaluation"`` or both.
    check_audio : bool
        Read every file's header and skip unreadable or empty ones.

    Returns
    -------
    dict
        As :func:`prepare_esc50`.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> ev = os.path.join(d, "TUT-acoustic-scenes-2017-evaluation")
    >>> os.makedirs(os.path.join(ev, "audio"))
    >>> with open(os.path.join(ev, "meta.txt"), "w") as f:
    ...     _ = f.write("audio/1.wav\\tcafe/restaurant \\r\\n")
    >>> soundfile.write(os.path.join(ev, "audio", "1.wav"), np.zeros((441, 2)), 44100, subtype="PCM_24")
    >>> out = prepare_tut17(d, os.path.join(d, "out"), sets=["evaluation"])
    >>> row = read_csv(out["csv"])[0]
    >>> row["ID"], row["class_name"], row["fold"], out["labels"]
    ('eval_1', 'cafe/restaurant', 'evaluation', ['cafe/restaurant'])
    """
    return _prepare("tut17", data_folder, save_folder, folds, check_audio, sets=sets)


def prepare_vggsound(data_folder, save_folder, folds=("test",), check_audio=True):
    """Writes the VGGSound manifest ``zeroshot_vggsound.csv`` over the paper's 308 classes (sorted).

    Reads ``vggsound.csv`` (``youtube_id,start_seconds,label,split``, no
    header) and finds each clip below ``data_folder`` as
    ``<youtube_id>_<start:06d>.wav`` (or ``.flac``, ``.ogg``, ``.mp3``; see
    :mod:`dataset.vggsound` for the other accepted names); without
    ``vggsound.csv``, the paper code's class-folder copy
    ``vgg-sound-16k/{train,test}/<label>/``. The paper scores the test split.
    Clips not downloaded are skipped and counted (``missing``), and so are
    clips of the one published class the paper's list lacks, ``cupboard
    opening or closing`` (``excluded``).

    Arguments
    ---------
    data_folder : str
        The folder holding ``vggsound.csv`` (or its parent) with the clips anywhere below it.
    save_folder : str
        Where ``zeroshot_vggsound.csv`` and ``zeroshot_vggsound.json`` are written.
    folds : None, str or list
        Splits to keep: ``test`` (the paper's), ``train``; None keeps both.
    check_audio : bool
        Read every file's header and skip unreadable or empty ones.

    Returns
    -------
    dict
        As :func:`prepare_esc50`; ``stats`` also has ``excluded``.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "vggsound.csv"), "w") as f:
    ...     _ = f.write('-x_y,30,"bee, wasp, etc. buzzing",test\\nabc,5,cupboard opening or closing,test\\n'
    ...                 'gone,0,dog barking,test\\nzzz,0,dog barking,train\\n')
    >>> os.makedirs(os.path.join(d, "audio"))
    >>> soundfile.write(os.path.join(d, "audio", "-x_y_000030.flac"), np.zeros(1600), 16000)
    >>> out = prepare_vggsound(d, os.path.join(d, "out"))
    >>> [(r["ID"], r["class_name"]) for r in read_csv(out["csv"])], len(out["labels"])
    ([('-x_y_000030', 'bee, wasp, etc. buzzing')], 308)
    >>> {k: out["stats"][k] for k in ("listed", "selected", "excluded", "kept", "missing")}
    {'listed': 4, 'selected': 3, 'excluded': 1, 'kept': 1, 'missing': 1}
    """
    return _prepare("vggsound", data_folder, save_folder, folds, check_audio)


def prepare_tau19(data_folder, save_folder, folds=("evaluate",), check_audio=True):
    """Writes the TAU Urban Acoustic Scenes 2019 manifest ``zeroshot_tau19.csv`` (10 scenes, sorted).

    Reads the development set's ``evaluation_setup/fold1_train.csv`` (fold
    ``train``) and ``fold1_evaluate.csv`` (fold ``evaluate``, the paper's
    test split), audio in ``audio/``; ``source_id`` is the ``identifier``
    (city and location) of ``meta.csv`` when present.

    Arguments
    ---------
    data_folder : str
        The ``TAU-urban-acoustic-scenes-2019-development`` folder (or its parent).
    save_folder : str
        Where ``zeroshot_tau19.csv`` and ``zeroshot_tau19.json`` are written.
    folds : None, str or list
        ``evaluate`` (the paper's), ``train``; None keeps both.
    check_audio : bool
        Read every file's header and skip unreadable or empty ones.

    Returns
    -------
    dict
        As :func:`prepare_vggsound`.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile
    >>> d = tempfile.mkdtemp()
    >>> dev = os.path.join(d, "TAU-urban-acoustic-scenes-2019-development")
    >>> os.makedirs(os.path.join(dev, "evaluation_setup")); os.makedirs(os.path.join(dev, "audio"))
    >>> for fold, name in (("train", "bus-lyon-1-2-a"), ("evaluate", "metro_station-milan-3-4-a")):
    ...     with open(os.path.join(dev, "evaluation_setup", f"fold1_{fold}.csv"), "w") as f:
    ...         _ = f.write(f"filename\\tscene_label\\naudio/{name}.wav\\t{name.split('-')[0]}\\n")
    ...     soundfile.write(os.path.join(dev, "audio", f"{name}.wav"), np.zeros((480, 2)), 48000, subtype="PCM_24")
    >>> out = prepare_tau19(d, os.path.join(d, "out"))
    >>> [(r["ID"], r["class_name"], r["fold"]) for r in read_csv(out["csv"])]
    [('metro_station-milan-3-4-a', 'metro_station', 'evaluate')]
    """
    return _prepare("tau19", data_folder, save_folder, folds, check_audio)


def prepare_zeroshot(dataset, data_folder, save_folder, folds=None, check_audio=True):
    """Calls the preparer of ``dataset`` (``esc50``/``esc``, ``us8k``, ``tut17``/``tut``, ``vggsound``, ``tau19``;
    TUT: both sets). ``folds`` None keeps every fold (VGGSound: both splits; TAU 2019: train and evaluate).

    Example
    -------
    >>> prepare_zeroshot("mnist", "/nowhere", "/tmp")
    Traceback (most recent call last):
    ...
    ValueError: Unknown zero-shot dataset 'mnist'; expected one of esc50 (esc), us8k, tut17 (tut), vggsound, tau19.
    """
    return _prepare(canonical_dataset(dataset), data_folder, save_folder, folds, check_audio)


def read_prepared(save_folder, dataset):
    """``(csv path, labels, stats)`` of a finished preparation in ``save_folder``.

    Raises
    ------
    FileNotFoundError
        If the dataset was not prepared there.
    """
    csv_path, json_path = manifest_paths(save_folder, dataset)
    previous = read_json_or_none(json_path)
    if previous is None or not os.path.isfile(csv_path):
        raise FileNotFoundError(
            f"No prepared {canonical_dataset(dataset)} manifest in {save_folder}; run its preparer first."
        )
    return csv_path, previous["labels"], previous.get("stats", {})
