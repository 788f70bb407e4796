"""Class lists of the zero-shot sets, in the paper's order, and the prompt text of a label.

ESC-50 is ordered by ``target``, UrbanSound8K by ``classID`` (alphabetical),
TUT Acoustic Scenes 2017 sorted. Prompts use the label with ``_`` and ``/``
turned into spaces (``sea_waves`` → ``sea waves``, ``cafe/restaurant`` →
``cafe restaurant``). The constants are the published lists; the
``*_from_folder`` readers take the list from a copy of the dataset (the toy
world uses other classes in the same layouts). :func:`read_label_file` reads a
class list from a file (the paper code's SpeechBrain ``CategoricalEncoder``
files, or one label a line) and :func:`labels_in_file_order` applies its order.
"""

import csv
import os
import re

ESC50_LABELS = [
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
]
US8K_LABELS = [
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
]
TUT17_LABELS = [
    "beach", "bus", "cafe/restaurant", "car", "city_center", "forest_path", "grocery_store",
    "home", "library", "metro_station", "office", "park", "residential_area", "train", "tram",
]
DATASETS = ("esc50", "us8k", "tut17")
TUT_SETS = ("TUT-acoustic-scenes-2017-development", "TUT-acoustic-scenes-2017-evaluation")


def prompt_label(label):
    """The words of a label as used in prompts.

    Example
    -------
    >>> prompt_label("cafe/restaurant"), prompt_label("sea_waves")
    ('cafe restaurant', 'sea waves')
    """
    return " ".join(label.replace("_", " ").replace("/", " ").split())


def _no_rows(path, name, header):
    return (f"no rows in {path}: the {name} metadata must list one clip per row under its header ({header}); "
            "check the dataset folder given on the command line (--data_folder, --zs_data_folder or --data_zs_folder).")


def esc50_labels_from_folder(data_folder):
    """Categories of ``<data_folder>/meta/esc50.csv`` ordered by ``target``."""
    path = os.path.join(data_folder, "meta", "esc50.csv")
    with open(path, encoding="utf-8", newline="") as f:
        by_target = {int(r["target"]): r["category"].strip() for r in csv.DictReader(f)}
    if not by_target:
        raise ValueError(_no_rows(path, "ESC-50", "filename,fold,target,category,..."))
    return [by_target[t] for t in sorted(by_target)]


def us8k_labels_from_folder(data_folder):
    """Classes of ``<data_folder>/metadata/UrbanSound8K.csv`` ordered by ``classID``."""
    path = os.path.join(data_folder, "metadata", "UrbanSound8K.csv")
    with open(path, encoding="utf-8", newline="") as f:
        by_id = {int(r["classID"]): r["class"].strip() for r in csv.DictReader(f)}
    if not by_id:
        raise ValueError(_no_rows(path, "UrbanSound8K", "slice_file_name,fsID,...,fold,classID,class"))
    return [by_id[i] for i in sorted(by_id)]


def tut17_labels_from_folder(data_folder):
    """Sorted scene labels found in the ``meta.txt`` of both TUT 2017 sets under ``data_folder``."""
    scenes = set()
    for name in TUT_SETS:
        path = os.path.join(data_folder, name, "meta.txt")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    fields = [x.strip() for x in line.split("\t")]
                    if len(fields) >= 2 and fields[1]:
                        scenes.add(fields[1])
    if not scenes:
        found = [os.path.join(data_folder, name, "meta.txt") for name in TUT_SETS
                 if os.path.isfile(os.path.join(data_folder, name, "meta.txt"))]
        if found:
            raise ValueError(_no_rows(" and ".join(found), "TUT 2017", "none: <audio path><TAB><scene>..."))
        raise FileNotFoundError(f"No TUT 2017 meta.txt under {data_folder} (looked in {', '.join(TUT_SETS)}).")
    return sorted(scenes)


def dataset_labels(dataset, data_folder=None):
    """The class list of ``dataset`` (``esc50``, ``us8k`` or ``tut17``): from ``data_folder`` if given, else the
    published one.

    Example
    -------
    >>> len(dataset_labels("esc50")), dataset_labels("us8k")[:2], dataset_labels("tut17")[2]
    (50, ['air_conditioner', 'car_horn'], 'cafe/restaurant')
    """
    dataset = {"esc": "esc50", "tut": "tut17", "tut2017": "tut17", "urbansound8k": "us8k"}.get(dataset, dataset)
    if dataset not in DATASETS:
        raise ValueError(f"Unknown zero-shot dataset {dataset!r}; expected one of {DATASETS}.")
    if data_folder:
        reader = {"esc50": esc50_labels_from_folder, "us8k": us8k_labels_from_folder, "tut17": tut17_labels_from_folder}
        return reader[dataset](data_folder)
    return list({"esc50": ESC50_LABELS, "us8k": US8K_LABELS, "tut17": TUT17_LABELS}[dataset])


# ----------------------------------------------------------- label files
#: The line that ends the ``'label' => index`` part of a SpeechBrain ``CategoricalEncoder`` file.
ENCODER_SEPARATOR = "================"
# A quoted label followed by "=>": the first line of a CategoricalEncoder file (then parsed strictly).
_ENCODER_START = re.compile(r"""^\s*['"].*=>""")


def read_label_file(path):
    """The class labels of a label file, in class-index order.

    Two formats are read, told apart by their first non-blank line:

    - a SpeechBrain ``CategoricalEncoder`` file, as the paper's code ships them
      (``dataset/label_encoder_esc.txt``): ``'sea waves' => 11`` lines (Python
      literals), then ``================`` and extras such as
      ``'starting_index' => 0``; the classes are ordered by their index
      (an ``unk_label`` extra names a label that is not a class);
    - one label a line (blank lines and ``#`` comments skipped), in file order.

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        A malformed line, a non-string label, repeated labels or indices, or no label at all.

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "label_encoder.txt")
    >>> _ = open(p, "w").write("'rain' => 1\\n'sea waves' => 0\\n================\\n'starting_index' => 0\\n")
    >>> read_label_file(p)
    ['sea waves', 'rain']
    >>> _ = open(p, "w").write("# classes\\nsea_waves\\nrain\\n")
    >>> read_label_file(p)
    ['sea_waves', 'rain']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Label file not found: {path}.")
    with open(path, encoding="utf-8-sig") as f:
        lines = [line.rstrip("\r\n") for line in f]
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ValueError(f"{path} holds no label.")
    if _ENCODER_START.match(first):
        labels = _read_encoder_lines(path, lines)
    else:
        labels = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"{path}: the label(s) {repeated} appear more than once.")
    if not labels:
        raise ValueError(f"{path} holds no label.")
    return labels


def _read_encoder_lines(path, lines):
    import ast

    by_index, extras, in_extras = {}, {}, False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.strip() == ENCODER_SEPARATOR:
            in_extras = True
            continue
        key, sep, value = line.partition("=>")
        try:
            key, value = ast.literal_eval(key.strip()), ast.literal_eval(value.strip())
        except (SyntaxError, ValueError):
            sep = ""
        if not sep:
            raise ValueError(f"{path}, line {number}: expected 'label' => index (a SpeechBrain CategoricalEncoder "
                             f"file), got {line!r}.")
        if in_extras:
            extras[key] = value
        elif not isinstance(key, str) or not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{path}, line {number}: a class is a quoted string with an integer index, got {line!r}.")
        elif value in by_index:
            raise ValueError(f"{path}, line {number}: index {value} is given twice.")
        else:
            by_index[value] = key
    unk = extras.get("unk_label")
    return [by_index[i] for i in sorted(by_index) if by_index[i] != unk]


def labels_in_file_order(labels, path, flag="label_encoder_path", require_all=True):
    """The class list of a label file, spelled as the dataset spells its classes.

    A label of the file and a class of the dataset are the same class when
    their prompt words are (:func:`prompt_label`, case-insensitive): the
    paper's ``'sea waves'``, ``'cafe restaurant'`` are our ``sea_waves``,
    ``cafe/restaurant``, so the prompts stay those of the paper's code. The
    order and the candidate set are the file's (a label the dataset lacks stays
    a candidate, as in the paper's code).

    Arguments
    ---------
    labels : list of str
        The dataset's classes.
    path : str or None
        The label file (:func:`read_label_file`); None or empty: ``labels`` unchanged.
    flag : str
        The key that named the file, for messages.
    require_all : bool
        Every class of ``labels`` must be in the file (zero-shot scoring of
        clips of those classes needs it).

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "label_encoder.txt")
    >>> _ = open(p, "w").write("'rain' => 0\\n'sea waves' => 1\\n'wind' => 2\\n")
    >>> labels_in_file_order(["sea_waves", "rain"], p)
    ['rain', 'sea_waves', 'wind']
    >>> labels_in_file_order(["sea_waves", "rain"], None)
    ['sea_waves', 'rain']
    """
    if not path:
        return list(labels)
    try:
        file_labels = read_label_file(path)
    except (OSError, ValueError) as err:
        raise SystemExit(f"--{flag}={path}: {err}") from None

    def key(label):
        return prompt_label(label).casefold()

    ours = {}
    for label in labels:
        ours.setdefault(key(label), label)
    theirs = [key(label) for label in file_labels]
    clashes = sorted({label for label in file_labels if theirs.count(key(label)) > 1})
    if clashes:
        raise SystemExit(f"--{flag}={path}: the labels {clashes} are the same class once spelled as prompt words.")
    missing = [label for label in labels if key(label) not in theirs]
    if missing and require_all:
        raise SystemExit(
            f"--{flag}={path}: the class(es) {missing} of the dataset are not in this label file "
            f"({len(file_labels)} labels, e.g. {file_labels[:3]}); give the file of this dataset "
            "(or no file: the dataset's own order)."
        )
    return [ours.get(k, label) for k, label in zip(theirs, file_labels)]
