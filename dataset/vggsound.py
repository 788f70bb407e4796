"""VGGSound as a zero-shot set: the paper's class list and the two layouts its clips come in.

VGGSound (Chen et al., ICASSP 2020) publishes ``vggsound.csv``: no header,
one clip per row, ``youtube_id,start_seconds,label,split`` (``split`` is
``train`` or ``test``; labels with commas are quoted, e.g.
``"alligators, crocodiles hissing"``); 309 classes. The audio is not
distributed: users download the 10 s segments and name them
``<youtube_id>_<start_seconds:06d>.wav`` (the official repository's loader
and test list use that stem), or ``<youtube_id>_<start>`` unpadded, or
``<youtube_id>_<start:06d>_<end:06d>``; any of ``.wav``, ``.flac``,
``.ogg``, ``.mp3`` anywhere below the data folder. YouTube ids may start
with ``-`` and contain ``_``. Clips not downloaded are normal: they are
skipped and counted by the preparer.

The paper's code reads another layout, its own 16 kHz copy with one folder
per class: ``vgg-sound-16k/{train,test}/<label>/<clip>.ogg``. It is read too
(``vgg-sound-16k/`` or ``vgg-sound/``, any audio extension), the label
being the folder name.

The paper's code scores the test split over the 308 classes of its label
encoder (the classes with more than ten training clips in its copy): every
published class but ``cupboard opening or closing``. That list, in the same
(sorted) order, is ``class_lists/vggsound.txt``; clips of another class are
left out and counted.
"""

import csv
import os
import re

from dataset.audio import AUDIO_EXTENSIONS, walk_audio_files
from dataset.class_lists import read_class_list
from dataset.corpora.files import index_audio_files

VGGSOUND_CSV = "vggsound.csv"
SPLITS = ("train", "test")
#: The paper code's class-folder copies, the first found is read.
CLASS_FOLDER_ROOTS = ("vgg-sound-16k", "vgg-sound")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.\-]+")


def paper_labels():
    """The 308 VGGSound classes of the paper's zero-shot evaluation, in its (sorted) order.

    Example
    -------
    >>> labels = paper_labels()
    >>> len(labels), labels[0], "cupboard opening or closing" in labels
    (308, 'air conditioning noise', False)
    """
    return read_class_list("vggsound")


def clip_id(youtube_id, start_seconds):
    """The clip's ID and file stem in the official naming, ``<youtube_id>_<start:06d>``.

    Example
    -------
    >>> clip_id("-0Gj8-vB1q4", 30)
    '-0Gj8-vB1q4_000030'
    """
    return f"{youtube_id}_{int(start_seconds):06d}"


def clip_stems(youtube_id, start_seconds):
    """File stems a downloaded clip may have, the official one first.

    Example
    -------
    >>> clip_stems("abc", 7)
    ['abc_000007', 'abc_7', 'abc_000007_000017']
    """
    start = int(start_seconds)
    return list(dict.fromkeys([clip_id(youtube_id, start), f"{youtube_id}_{start}",
                               f"{youtube_id}_{start:06d}_{start + 10:06d}"]))


def class_folder_root(root):
    """The paper code's class-folder copy under ``root`` (``vgg-sound-16k/`` or ``vgg-sound/``), or None."""
    for name in CLASS_FOLDER_ROOTS:
        base = os.path.join(root, name)
        if any(os.path.isdir(os.path.join(base, split)) for split in SPLITS):
            return base
    return None


def _parse_start(text, path, line):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value.is_integer() or value < 0:
        raise ValueError(f"{path}, line {line}: start_seconds {text!r} is not a whole number of seconds; "
                         "expected rows youtube_id,start_seconds,label,split (no header).")
    return int(value)


def read_vggsound_csv(path):
    """Rows of ``vggsound.csv``: ``(youtube_id, start_seconds, label, split)``, every field stripped.

    A first line that is a header (its second field is not a number) is
    skipped, and so are ``#`` comment lines; any other malformed row is an
    error naming its line.

    Example
    -------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "vggsound.csv")
    >>> _ = open(p, "w").write('-a_b,30,"bee, wasp, etc. buzzing",test\\nxyz,0,dog barking,train\\n')
    >>> read_vggsound_csv(p)
    [('-a_b', 30, 'bee, wasp, etc. buzzing', 'test'), ('xyz', 0, 'dog barking', 'train')]
    """
    records = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line, fields in enumerate(csv.reader(f), start=1):
            fields = [x.strip() for x in fields]
            if not any(fields) or fields[0].startswith("#"):
                continue
            if len(fields) != 4:
                raise ValueError(f"{path}, line {line}: expected 4 fields youtube_id,start_seconds,label,split "
                                 f"(labels with commas quoted), got {len(fields)}: {fields!r}.")
            youtube_id, start, label, split = fields
            if not records and line == 1 and not re.fullmatch(r"[\d.]+", start):
                continue  # a header line
            split = split.lower()
            if split not in SPLITS:
                raise ValueError(f"{path}, line {line}: split {fields[3]!r} is not one of {', '.join(SPLITS)}.")
            if not youtube_id or not label:
                raise ValueError(f"{path}, line {line}: empty youtube_id or label: {fields!r}.")
            records.append((youtube_id, _parse_start(start, path, line), label, split))
    if not records:
        raise ValueError(f"no rows in {path}: expected one clip per line, youtube_id,start_seconds,label,split.")
    return records


def rows_from_csv(root, audio_folder):
    """Zero-shot rows of ``<root>/vggsound.csv``, each clip looked up below ``audio_folder``.

    Returns
    -------
    rows : list of dict
        ``ID`` (``<youtube_id>_<start:06d>``), ``wav_path`` (the file found, else
        ``<audio_folder>/<ID>.wav``, which the preparer counts as missing),
        ``class_name`` (the label as written), ``fold`` (the split) and
        ``source_id`` (the YouTube id). A row repeated with the same label and
        split is kept once.
    duplicates : int
        Repeated rows dropped.

    Raises
    ------
    ValueError
        When one clip is listed twice with different labels or splits.
    """
    path = os.path.join(root, VGGSOUND_CSV)
    records = read_vggsound_csv(path)
    index = index_audio_files(audio_folder)
    rows, seen, duplicates = [], {}, 0
    for youtube_id, start, label, split in records:
        cid = clip_id(youtube_id, start)
        if cid in seen:
            if seen[cid] != (label, split):
                raise ValueError(f"{path}: clip {cid} is listed twice with different labels or splits: "
                                 f"{seen[cid]} and {(label, split)}.")
            duplicates += 1
            continue
        seen[cid] = (label, split)
        wav_path = None
        for stem in clip_stems(youtube_id, start):
            for ext in AUDIO_EXTENSIONS:
                found = index.get(stem + ext)
                if found:
                    wav_path = found[0]
                    break
            if wav_path:
                break
        rows.append({
            "ID": cid,
            "wav_path": wav_path or os.path.join(audio_folder, cid + ".wav"),
            "class_name": label,
            "fold": split,
            "source_id": youtube_id,
        })
    return rows, duplicates


def rows_from_class_folders(base):
    """Zero-shot rows of the paper code's copy ``<base>/{train,test}/<label>/<clip>``.

    ``ID`` is the file stem, ``class_name`` the folder name, ``fold`` the
    split, ``source_id`` the YouTube id when the stem is ``<id>_<start>``.
    """
    rows = []
    for split in SPLITS:
        split_dir = os.path.join(base, split)
        if not os.path.isdir(split_dir):
            continue
        for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            for path in walk_audio_files(entry.path):
                stem = os.path.splitext(os.path.basename(path))[0]
                match = re.fullmatch(r"(.+?)_\d+(?:_\d+)?", stem)
                rows.append({
                    "ID": _UNSAFE_ID.sub("_", stem),
                    "wav_path": path,
                    "class_name": entry.name.strip(),
                    "fold": split,
                    "source_id": match.group(1) if match else "",
                })
    return rows
