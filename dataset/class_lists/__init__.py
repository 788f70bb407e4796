"""Fixed class lists of zero-shot sets, one class per line in the order the paper's code scores them.

``vggsound.txt`` (308 classes) and ``tau19.txt`` (10 scenes) are written in
this project's format: UTF-8, one class per line as the dataset's metadata
spells it, ``#`` lines are comments. The paper's code keeps the same lists
in SpeechBrain label-encoder files (``label_encoder_*_ordered.txt``).
"""

import os

CLASS_LIST_DIR = os.path.dirname(os.path.abspath(__file__))


def read_class_list(name_or_path):
    """Classes of a class-list file (a name in this folder, e.g. ``"tau19"``, or a path), in order.

    Example
    -------
    >>> read_class_list("tau19")[:3], len(read_class_list("vggsound"))
    (['airport', 'bus', 'metro'], 308)
    """
    path = str(name_or_path)
    if os.sep not in path and "/" not in path and not path.endswith(".txt"):
        path = os.path.join(CLASS_LIST_DIR, path + ".txt")
    with open(path, encoding="utf-8") as f:
        labels = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"{path}: a class list needs one class per line, each once.")
    return labels
