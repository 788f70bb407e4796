"""Class lists of the zero-shot sets, in the paper's order, and the prompt text of a label.

ESC-50 is ordered by ``target``, UrbanSound8K by ``classID`` (alphabetical),
TUT Acoustic Scenes 2017 sorted. Prompts use the label with ``_`` and ``/``
turned into spaces (``sea_waves`` → ``sea waves``, ``cafe/restaurant`` →
``cafe restaurant``). The constants are the published lists; the
``*_from_folder`` readers take the list from a copy of the dataset (the toy
world uses other classes in the same layouts).
"""

import csv
import os

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
