"""Prepares the teacher's caption corpus ("insper"): Clotho, AudioCaps, MACS, FSD50K and user CSVs.

Each corpus is read from the layout users unpack (README, "Data") by its
reader in :mod:`dataset.corpora`, its audio located with one directory walk;
unreadable clips are dropped, and the merged caption pairs are split by clip
into ``train_raw.csv`` and ``valid.csv`` (``ID,wav_path,caption,source,source_id``).

To run it alone::

    python -c "from dataset.prepare_insper import prepare_insper; \\
        prepare_insper('/data/insper', 'results/insper')"

Authors
 * clap-curation-recipes contributors
"""

import functools
import json
import logging
import os
import random
import re

import yaml
from tqdm import tqdm

from dataset.audio import AudioReadError, probe_audio
from dataset.corpora.audiocaps import read_audiocaps
from dataset.corpora.cleaning import CAPTION_CLEANING, clean_captions
from dataset.corpora.clotho import read_clotho
from dataset.corpora.fsd50k import read_fsd50k
from dataset.corpora.macs import read_macs
from dataset.corpora.paper_index import PAPER_INDEX_FILES, paper_index_files, read_paper_index
from dataset.corpora.user_csv import read_user_csv
from dataset.manifest import atomic_write, read_json_or_none, sources_digest, write_csv

logger = logging.getLogger(__name__)

CORPORA = ("clotho", "audiocaps", "macs", "fsd50k")
INSPER_FIELDS = ["ID", "wav_path", "caption", "source", "source_id"]
TRAIN_CSV = "train_raw.csv"
VALID_CSV = "valid.csv"
OPTIONS_JSON = "prepare_insper.json"

# Bumped when the manifests' content changes for the same options, so that
# old manifests are not silently reused.
_FORMAT_VERSION = 1

# IDs become dictionary keys in SpeechBrain and parts of file names later on.
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")

_READERS = {"clotho": read_clotho, "audiocaps": read_audiocaps, "macs": read_macs, "fsd50k": read_fsd50k}

#: ``audiocaps_splits`` values: the paper code's index (``insper_audiocaps_train_index.tsv``) is AudioCaps'
#: training split alone; ``train+val`` (ours) adds its validation split. Its test split is a retrieval test set.
AUDIOCAPS_SPLITS = ("train", "train+val")


def audiocaps_split_list(audiocaps_splits):
    """The AudioCaps CSVs ``audiocaps_splits`` names: ``"train"`` (the paper's) or ``"train+val"`` (ours).

    Example
    -------
    >>> audiocaps_split_list("train"), audiocaps_split_list("train+val")
    (('train',), ('train', 'val'))
    """
    if audiocaps_splits not in AUDIOCAPS_SPLITS:
        raise ValueError(f"audiocaps_splits must be one of {', '.join(AUDIOCAPS_SPLITS)} (train: the paper code's "
                         f"AudioCaps index; train+val: ours); got {audiocaps_splits!r}.")
    return tuple(audiocaps_splits.split("+"))


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


def _locate_corpora(data_annot_folder, explicit, user_csvs):
    """``(folders, index_files, csv_paths)``: where each corpus is read from, and the user CSVs.

    ``folders`` maps each corpus to its folder (or None), ``index_files`` to the
    paper code's index file that replaces its folder; raises when nothing is found.
    """
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
    return folders, index_files, csv_paths


def _read_corpora(folders, index_files, csv_paths, caption_cleaning, audiocaps_splits=("train",)):
    """``(corpus_rows, corpus_stats)``: the ``(name, rows)`` of every source read, and per source its folder
    and the numbers of captions, clips and captions whose audio is missing (AudioCaps: ``audiocaps_splits``)."""
    sources = []  # (name, folder or csv path, reader call)
    for corpus in CORPORA:
        if corpus in index_files:
            sources.append((corpus, index_files[corpus], functools.partial(read_paper_index, corpus=corpus)))
        elif folders[corpus] is None:
            logger.info("insper: no %s/ folder and no %s_folder given; %s skipped.", corpus, corpus, corpus)
        else:
            reader = _READERS[corpus]
            if corpus == "audiocaps":
                reader = functools.partial(read_audiocaps, splits=audiocaps_splits)
            sources.append((corpus, folders[corpus], reader))
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
    return corpus_rows, corpus_stats


def _still_prepared(json_path, options, inputs, train_csv, valid_csv):
    """The ``prepare_insper.json`` of manifests made from the same options and sources (None: prepare again)."""
    previous = read_json_or_none(json_path)
    if previous and previous.get("options") == options and os.path.isfile(train_csv) and os.path.isfile(valid_csv):
        if previous.get("sources") == inputs:
            logger.info("%s and %s exist for the same options and unchanged sources; skipping preparation.",
                        train_csv, valid_csv)
            return previous
        logger.info("%s and %s: %s; preparing them again.", train_csv, valid_csv,
                    "their caption files or audio files changed since (content, size or modification time)"
                    if previous.get("sources") else "written by an older version that did not record their sources")
    return None


def _drop_unreadable(corpus_rows, corpus_stats):
    """Drops (in place) the rows whose audio cannot be read, counting them in ``corpus_stats``."""
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


def _write_manifests(corpus_rows, corpus_stats, train_csv, valid_csv, valid_pct, subset_pct, seed):
    """Writes the rows kept into ``train_csv`` and ``valid_csv`` (split by clip); returns the statistics."""
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
    return {
        "corpora": corpus_stats,
        "train_rows": len(train),
        "train_clips": n_train_clips,
        "valid_rows": len(valid),
        "valid_clips": n_valid_clips,
    }


def prepare_insper(data_annot_folder, save_folder, clotho_folder=None, audiocaps_folder=None, macs_folder=None,
                   fsd50k_folder=None, user_csvs=None, valid_pct=0.05, subset_pct=1.0, seed=1234, check_audio=True,
                   caption_cleaning="none", audiocaps_splits="train"):
    """Writes the teacher's caption manifests ``train_raw.csv`` and ``valid.csv``.

    Reads every corpus present, drops captions whose audio is missing or (with
    ``check_audio``) unreadable, gives each row a unique, CSV-safe ``ID``,
    shuffles the clips with ``seed``, splits off ``valid_pct`` of the clips as
    validation (the captions of one clip never straddle the split) and keeps
    the first ``subset_pct`` of the training clips. Clotho's evaluation split
    and AudioCaps' test split are not read: they are retrieval test sets;
    AudioCaps' validation split only with ``audiocaps_splits="train+val"``.

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
    audiocaps_splits : str
        ``"train"`` (the paper code's AudioCaps index: the training split) or
        ``"train+val"`` (ours: the validation split's captions too).

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
    >>> from dataset.manifest import read_csv
    >>> sorted(read_csv(out["train"])[0])
    ['ID', 'caption', 'source', 'source_id', 'wav_path']
    """
    valid_pct, subset_pct = _check_fractions(valid_pct, subset_pct)
    if caption_cleaning not in CAPTION_CLEANING:
        raise ValueError(f"caption_cleaning must be one of {', '.join(CAPTION_CLEANING)}; got {caption_cleaning!r}.")
    splits = audiocaps_split_list(audiocaps_splits)
    explicit = {"clotho": clotho_folder, "audiocaps": audiocaps_folder, "macs": macs_folder, "fsd50k": fsd50k_folder}
    folders, index_files, csv_paths = _locate_corpora(data_annot_folder, explicit, user_csvs)
    save_folder = os.path.abspath(os.fspath(save_folder))
    train_csv = os.path.join(save_folder, TRAIN_CSV)
    valid_csv = os.path.join(save_folder, VALID_CSV)
    json_path = os.path.join(save_folder, OPTIONS_JSON)
    options = {
        "format_version": _FORMAT_VERSION,
        "data_annot_folder": None if data_annot_folder in (None, "") else os.path.abspath(data_annot_folder),
        "folders": folders, "user_csvs": csv_paths, "valid_pct": valid_pct, "subset_pct": subset_pct,
        "seed": int(seed), "check_audio": bool(check_audio), "index_files": index_files,
        "caption_cleaning": caption_cleaning,
    }
    if folders["audiocaps"] is not None:
        options["audiocaps_splits"] = audiocaps_splits  # recorded where it matters: other runs' JSONs stay valid
    corpus_rows, corpus_stats = _read_corpora(folders, index_files, csv_paths, caption_cleaning, splits)
    # The manifests are keyed on the options, on the caption rows read (their audio located on
    # disk) and on the size/mtime of every audio file they name: reused only when all are unchanged.
    inputs = sources_digest({"rows": corpus_rows, "stats": corpus_stats},
                            sorted({row["wav_path"] for _, rows in corpus_rows for row in rows}))
    previous = _still_prepared(json_path, options, inputs, train_csv, valid_csv)
    if previous is not None:
        return {"train": train_csv, "valid": valid_csv, "stats": previous.get("stats", {})}
    # The JSON marks a finished preparation: drop it first so that a crash
    # while writing new CSVs can never pair them with the old options.
    if os.path.exists(json_path):
        os.remove(json_path)
    if check_audio:
        _drop_unreadable(corpus_rows, corpus_stats)
    stats = _write_manifests(corpus_rows, corpus_stats, train_csv, valid_csv, valid_pct, subset_pct, seed)
    record = {"options": options, "sources": inputs, "stats": stats}
    atomic_write(json_path, lambda f: json.dump(record, f, indent=2, ensure_ascii=False), "w", encoding="utf-8")
    logger.info("insper: %d training captions (%d clips) in %s, %d validation captions (%d clips) in %s",
                stats["train_rows"], stats["train_clips"], train_csv, stats["valid_rows"], stats["valid_clips"],
                valid_csv)
    return {"train": train_csv, "valid": valid_csv, "stats": stats}
