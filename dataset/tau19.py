"""TAU Urban Acoustic Scenes 2019 (development set) as a zero-shot set: its scenes and its layout.

The development set unpacks to ``TAU-urban-acoustic-scenes-2019-development/``
holding ``audio/`` (14 400 clips of 10 s, 48 kHz, 24-bit, stereo, named
``<scene>-<city>-<location>-<segment>-<device>.wav``), ``meta.csv`` and
``evaluation_setup/``. Every metadata file is tab-separated with a header:

- ``meta.csv``: ``filename  scene_label  identifier  source_label``, e.g.
  ``audio/airport-barcelona-0-0-a.wav  airport  barcelona-0  a``
  (``identifier`` = city and location);
- ``evaluation_setup/fold1_train.csv`` (9 185 clips) and
  ``fold1_evaluate.csv`` (4 185 clips): ``filename  scene_label``;
  ``fold1_test.csv`` lists the evaluate clips without labels. The split is
  by recording location; 1 030 clips are in neither.

10 scenes: airport, bus, metro, metro_station, park, public_square,
shopping_mall, street_pedestrian, street_traffic, tram.

The paper's code scores ``fold1_evaluate.csv`` (its "test" split) with the
sorted scene list of ``fold1_train.csv``, ``_`` read as a space
(``class_lists/tau19.txt``). MACS captions are written for clips of this
development set: a model trained on MACS has heard some of these recordings.
"""

import csv
import os

from dataset.class_lists import read_class_list

TAU19_DEV = "TAU-urban-acoustic-scenes-2019-development"
#: fold -> setup file (relative to the development folder)
SETUP_FILES = {
    "train": os.path.join("evaluation_setup", "fold1_train.csv"),
    "evaluate": os.path.join("evaluation_setup", "fold1_evaluate.csv"),
}


def paper_labels():
    """The 10 scenes in the paper code's (sorted) order, spelt as in the metadata.

    Example
    -------
    >>> paper_labels()[:4]
    ['airport', 'bus', 'metro', 'metro_station']
    """
    return read_class_list("tau19")


def _read_tsv(path, columns):
    """Rows of a tab-separated file with a header, every field stripped; ``columns`` must be in the header."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = [(c or "").strip() for c in (reader.fieldnames or [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: its header {header} lacks {missing}; expected a tab-separated file with the "
                             f"header {'<TAB>'.join(columns)} (TAU Urban Acoustic Scenes 2019 development).")
        reader.fieldnames = header
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def read_tau19(root):
    """Zero-shot rows of the development set in ``root`` (the folder holding ``evaluation_setup/``).

    Returns
    -------
    list of dict
        ``ID`` (file stem), ``wav_path`` (``root/<filename>``), ``class_name``
        (``scene_label``), ``fold`` (``train`` or ``evaluate``) and
        ``source_id`` (``identifier`` from ``meta.csv`` when it is there).

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "evaluation_setup"))
    >>> for fold, name in (("train", "park-lyon-1-2-a"), ("evaluate", "tram-milan-3-4-a")):
    ...     _ = open(os.path.join(d, "evaluation_setup", f"fold1_{fold}.csv"), "w").write(
    ...         f"filename\\tscene_label\\naudio/{name}.wav\\t{name.split('-')[0]}\\n")
    >>> [(r["ID"], r["class_name"], r["fold"]) for r in read_tau19(d)]
    [('park-lyon-1-2-a', 'park', 'train'), ('tram-milan-3-4-a', 'tram', 'evaluate')]
    """
    missing = [f for f in SETUP_FILES.values() if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(f"tau19: {root} lacks {' and '.join(missing)}; --data_folder must be the "
                                f"{TAU19_DEV} folder (holding audio/, meta.csv, evaluation_setup/) or its parent.")
    identifiers = {}
    meta = os.path.join(root, "meta.csv")
    if os.path.isfile(meta):
        identifiers = {r["filename"]: r["identifier"]
                       for r in _read_tsv(meta, ["filename", "scene_label", "identifier"])}
    rows = []
    for fold, relative in SETUP_FILES.items():
        path = os.path.join(root, relative)
        records = _read_tsv(path, ["filename", "scene_label"])
        if not records:
            raise ValueError(f"no rows in {path}: expected one clip per line, filename<TAB>scene_label.")
        for record in records:
            name = record["filename"]
            rows.append({
                "ID": os.path.splitext(os.path.basename(name))[0],
                "wav_path": os.path.normpath(os.path.join(root, name)),
                "class_name": record["scene_label"],
                "fold": fold,
                "source_id": identifiers.get(name, ""),
            })
    return rows
