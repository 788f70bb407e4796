"""Dataset layouts of the toy world: what each set holds and the metadata files that describe it.

Every set is *planned* (file names, labels, formats, the events of each clip)
before any audio is rendered, with decisions drawn from per-clip streams, so
a plan depends only on the seed and the size. A plan section holds the clip
specs that :func:`dataset.toy.render.write_clips` renders and the metadata
rows that the ``write_*`` functions of this module write, in the real
layouts:

- ``clotho/``: a captioned corpus in the Clotho v2 layout (clean, dry audio);
- ``pairs.csv``: the development + validation pairs as ``ID,wav_path,caption``;
- ``unpaired/`` + ``unpaired_paths.txt``: an unpaired pool (AudioSet's role),
  named like downloaded AudioSet clips (``Y<YouTube id>.wav``);
- ``ESC-50/``, ``UrbanSound8K/``, ``TUT2017/``: the three zero-shot sets.

Simplifications, all for speed: TUT clips are 4 s long (10 s in the real
set), Clotho clips 3-6 s (15-30 s).

The planners take ``cfg``, one entry of :data:`dataset.toy.world.SIZES`.
"""

import csv
import os

import numpy as np

from dataset.manifest import atomic_write, write_csv
from dataset.toy.captions import make_captions
from dataset.toy.conditions import CLEAN_FLOOR_SNR_DB, CONDITION
from dataset.toy.events import ESC10, ESC50_CLASSES, EVENT_KEYS, EVENTS, SCENE_KEYS, SCENES, US8K_CLASSES, US8K_EVENT
from dataset.toy.signals import stream

# Durations (seconds) and formats. Clotho is 15-30 s in reality; the toy keeps
# clips short so that the demo trains in minutes.
CLOTHO_SR = 44100
CLOTHO_SECONDS = (3.0, 6.0)
UNPAIRED_SR = 32000
UNPAIRED_SECONDS = (4.0, 10.0)
ESC50_SR = 44100
ESC50_SECONDS = 5.0
US8K_SECONDS_MAX = 4.0
US8K_SHORT_SECONDS = 0.3
TUT_SR = 44100
TUT_SECONDS = 4.0  # the real clips are 10 s long


# ---------------------------------------------------------------------------
# Planning: every set is described (names, labels, formats) before any audio
# is rendered, with decisions drawn from per-clip streams.
# ---------------------------------------------------------------------------


def _event_plan(seed, name, index, n_events_round):
    """Events of the ``index``-th plain clip: the first round cycles single events, so each
    event has at least one single-event clip; later rounds add a second event half the time."""
    rng = stream(seed, "plan", name, index)
    first = EVENT_KEYS[index % len(EVENT_KEYS)]
    if index < n_events_round or rng.random() < 0.5:
        return [first]
    others = [e for e in EVENT_KEYS if e != first]
    return [first, others[rng.integers(len(others))]]


def _scene_plan(seed, name, index, scene):
    rng = stream(seed, "plan", name, index)
    info = SCENES[scene]
    return list(info["events"]) + [e for e in info["optional"] if rng.random() < 0.5]


def _mixed_plan(seed, name, count, scene_fraction):
    """(events, scene) per clip: ``scene_fraction`` scene mixtures (cycling scenes), the rest plain."""
    n_scene = round(count * scene_fraction)
    plans = []
    for i in range(count):
        if i < n_scene:
            scene = SCENE_KEYS[i % len(SCENE_KEYS)]
            plans.append((_scene_plan(seed, name, i, scene), scene))
        else:
            plans.append((_event_plan(seed, name, i - n_scene, len(EVENT_KEYS)), None))
    return plans


_NON_ASCII_PLACES = ["Café", "Zürich", "São Paulo", "Straße", "Córdoba", "Århus", "Malmö", "Niño"]
_USERS = ["field_rec", "soundhunter", "José_Ramón", "audio-lab", "birdnerd", "Amélie", "klanggarten"]
_LICENSES = ["http://creativecommons.org/licenses/by/3.0/",
             "http://creativecommons.org/publicdomain/zero/1.0/",
             "http://creativecommons.org/licenses/by-nc/3.0/"]


def _clotho_name(index, events, scene, rng):
    """Clotho-like file names; some carry spaces, commas, parentheses and non-ASCII letters."""
    if scene is not None:
        base = f"{scene.replace('/', ' and ').replace('_', ' ').capitalize()} ambience"
    else:
        base = " with ".join(EVENTS[e]["title"] if i == 0 else EVENTS[e]["title"].lower()
                             for i, e in enumerate(events))
    place = _NON_ASCII_PLACES[rng.integers(len(_NON_ASCII_PLACES))]
    style = index % 6
    if style == 1:
        return f"{base}, take {index}.wav"
    if style == 3:
        return f"{base} ({place}) {index:03d}.wav"
    if style == 5:
        return f"{place} - {base.lower()} {index}.wav"
    return f"{base} {index:03d}.wav"


def _unique_ids(seed, name, count, low=10000, high=600000):
    """Distinct fake Freesound ids for a set (sorted draws keep them stable)."""
    rng = stream(seed, "ids", name)
    return [int(x) for x in rng.choice(np.arange(low, high), size=count, replace=False)]


def plan_clotho(out_dir, seed, cfg):
    """Plans the captioned corpus (Clotho v2 layout, clean and dry audio).

    A quarter of the clips (``clotho_scene_fraction``) are scene mixtures
    with the scene words in their captions; the others hold one or two
    events. File names carry spaces, commas, parentheses and non-ASCII
    letters, as real ones do.

    Arguments
    ---------
    out_dir : str
        Folder of the world (absolute, as :func:`dataset.toy.world.plan_world` gives it).
    seed : int
        World seed.
    cfg : dict
        One entry of ``SIZES``.

    Returns
    -------
    dict
        ``clips``, ``captions`` and ``metadata``: each a dict from split
        (``development``, ``validation``, ``evaluation``) to the split's clip
        specs (sorted by path) or rows of ``clotho_captions_<split>.csv`` /
        ``clotho_metadata_<split>.csv`` (sorted by file name). The clips'
        events are only in the specs, as the real corpus does not list them.

    Example
    -------
    >>> from dataset.toy.world import SIZES
    >>> clotho = plan_clotho("/data/toy", 0, SIZES["tiny"])
    >>> len(clotho["clips"]["development"]), len(clotho["captions"]["development"][0])
    (72, 6)
    """
    root = os.path.join(out_dir, "clotho")
    clips, captions, metadata = {}, {}, {}
    ids = _unique_ids(seed, "clotho", sum(cfg["clotho"].values()), 20000, 500000)
    id_pos = 0
    for split in ("development", "validation", "evaluation"):
        count = cfg["clotho"][split]
        plans = _mixed_plan(seed, f"clotho-{split}", count, cfg["clotho_scene_fraction"])
        rows, meta_rows, specs = [], [], []
        for i, (events, scene) in enumerate(plans):
            rng = stream(seed, "names", split, i)
            file_name = _clotho_name(i, events, scene, rng)
            seconds = round(float(rng.uniform(*CLOTHO_SECONDS)), 3)
            caps = make_captions(events, scene, stream(seed, "captions", split, i))
            sound_id = ids[id_pos]
            id_pos += 1
            user = _USERS[rng.integers(len(_USERS))]
            start = int(rng.integers(0, 20)) * CLOTHO_SR
            keywords = ";".join(dict.fromkeys(
                w for e in events for w in EVENTS[e]["keywords"].split(";")))
            if scene is not None:
                keywords = scene.replace("/", ";").replace("_", " ") + ";" + keywords
            specs.append({"key": ("clotho", split, i), "path": os.path.join(root, split, file_name),
                          "sr": CLOTHO_SR, "seconds": seconds, "channels": 1, "subtype": "PCM_16",
                          "events": events, "scene": scene, "shifted": False})
            row = {"file_name": file_name}
            row.update({f"caption_{k + 1}": c for k, c in enumerate(caps)})
            rows.append(row)
            meta_rows.append({
                "file_name": file_name, "keywords": keywords, "sound_id": sound_id,
                "sound_link": f"https://freesound.org/people/{user}/sounds/{sound_id}/",
                "start_end_samples": f"[{start}, {start + round(seconds * CLOTHO_SR)}]",
                "manufacturer": user, "license": _LICENSES[rng.integers(len(_LICENSES))]})
        names = [r["file_name"] for r in rows]
        if len(set(names)) != len(names):
            raise RuntimeError(f"duplicate Clotho file names in {split}")
        clips[split] = sorted(specs, key=lambda s: s["path"])
        captions[split] = sorted(rows, key=lambda r: r["file_name"])
        metadata[split] = sorted(meta_rows, key=lambda r: r["file_name"])
    return {"clips": clips, "captions": captions, "metadata": metadata}


_YT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def plan_unpaired(out_dir, seed, cfg):
    """Plans the unpaired pool (AudioSet's role): clips in the shifted condition, named
    like downloaded AudioSet clips (``unpaired/Y<YouTube id>.wav``).

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    seed : int
        World seed.
    cfg : dict
        One entry of ``SIZES``.

    Returns
    -------
    dict
        ``clips``: the clip specs, sorted by path.

    Example
    -------
    >>> from dataset.toy.world import SIZES
    >>> clips = plan_unpaired("/data/toy", 0, SIZES["tiny"])["clips"]
    >>> len(clips), clips[0]["sr"], clips[0]["shifted"]
    (96, 32000, True)
    """
    specs = []
    plans = _mixed_plan(seed, "unpaired", cfg["unpaired"], cfg["unpaired_scene_fraction"])
    for i, (events, scene) in enumerate(plans):
        rng = stream(seed, "names", "unpaired", i)
        ytid = "".join(_YT_ALPHABET[j] for j in rng.integers(0, 64, 11))
        seconds = round(float(rng.uniform(*UNPAIRED_SECONDS)), 3)
        specs.append({"key": ("unpaired", i), "path": os.path.join(out_dir, "unpaired", f"Y{ytid}.wav"),
                      "sr": UNPAIRED_SR, "seconds": seconds, "channels": 1, "subtype": "PCM_16",
                      "events": events, "scene": scene, "shifted": True})
    if len({s["path"] for s in specs}) != len(specs):
        raise RuntimeError("duplicate unpaired file names; change the seed")
    return {"clips": sorted(specs, key=lambda s: s["path"])}


def plan_esc50(out_dir, seed, cfg):
    """Plans ESC-50: 5 folds, ``target`` in the relative order of the real numbering,
    several takes of a recording (``src_file``) within one fold.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    seed : int
        World seed.
    cfg : dict
        One entry of ``SIZES``.

    Returns
    -------
    dict
        ``clips``: the clip specs, sorted by path; ``rows``: the rows of
        ``meta/esc50.csv``, sorted by file name.

    Example
    -------
    >>> from dataset.toy.world import SIZES
    >>> esc50 = plan_esc50("/data/toy", 0, SIZES["tiny"])
    >>> len(esc50["clips"]), sorted(esc50["rows"][0])
    (100, ['category', 'esc10', 'filename', 'fold', 'src_file', 'take', 'target'])
    """
    root = os.path.join(out_dir, "ESC-50")
    per = cfg["esc50_per_class_per_fold"]
    ids = _unique_ids(seed, "esc50", 5 * len(ESC50_CLASSES) * per, 10000, 300000)
    specs, rows = [], []
    id_pos = 0
    for fold in range(1, 6):
        for target, category in enumerate(ESC50_CLASSES):
            src, take = None, "A"
            for j in range(per):
                rng = stream(seed, "plan", "esc50", fold, target, j)
                # Like the real set, some recordings give several takes (A, B, ...), all in one fold.
                if src is not None and rng.random() < 0.5:
                    take = chr(ord(take) + 1)
                else:
                    src, take = ids[id_pos], "A"
                    id_pos += 1
                filename = f"{fold}-{src}-{take}-{target}.wav"
                specs.append({"key": ("esc50", fold, target, j), "path": os.path.join(root, "audio", filename),
                              "sr": ESC50_SR, "seconds": ESC50_SECONDS, "channels": 1, "subtype": "PCM_16",
                              "events": [category], "scene": None, "shifted": True})
                rows.append({"filename": filename, "fold": fold, "target": target, "category": category,
                             "esc10": "True" if category in ESC10 else "False", "src_file": src,
                             "take": take})
    return {"clips": sorted(specs, key=lambda s: s["path"]), "rows": sorted(rows, key=lambda r: r["filename"])}


# UrbanSound8K formats cycle with co-prime periods so every size mixes sample
# rates, channel counts and bit depths (the real set has all of them).
_US8K_RATES = [44100, 48000, 22050]
_US8K_CHANNELS = [2, 1]
_US8K_SUBTYPES = ["PCM_16", "PCM_24", "PCM_16", "PCM_16", "PCM_24"]


def plan_us8k(out_dir, seed, cfg):
    """Plans UrbanSound8K: 10 folds, ``classID`` the alphabetical index of the class,
    mixed sample rates, channel counts and bit depths, some clips far shorter than 4 s.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    seed : int
        World seed.
    cfg : dict
        One entry of ``SIZES``.

    Returns
    -------
    dict
        ``clips``: the clip specs, sorted by path; ``rows``: the rows of
        ``metadata/UrbanSound8K.csv``, sorted by file name.

    Example
    -------
    >>> from dataset.toy.world import SIZES
    >>> us8k = plan_us8k("/data/toy", 0, SIZES["tiny"])
    >>> len(us8k["rows"]), sorted({c["sr"] for c in us8k["clips"]})
    (80, [22050, 44100, 48000])
    """
    root = os.path.join(out_dir, "UrbanSound8K")
    per = cfg["us8k_per_class_per_fold"]
    ids = _unique_ids(seed, "us8k", 10 * len(US8K_CLASSES) * per, 10000, 200000)
    specs, rows = [], []
    g = 0
    for fold in range(1, 11):
        for class_id, name in enumerate(US8K_CLASSES):
            for j in range(per):
                rng = stream(seed, "plan", "us8k", fold, class_id, j)
                fs_id = ids[g]
                if g % 9 == 4:
                    seconds = US8K_SHORT_SECONDS  # the real set has clips of a fraction of a second
                elif rng.random() < 0.6:
                    seconds = US8K_SECONDS_MAX
                else:
                    seconds = round(float(rng.uniform(1.0, US8K_SECONDS_MAX)), 6)
                occurrence, slice_idx = int(rng.integers(0, 3)), int(rng.integers(0, 40))
                start = round(slice_idx * 2.0 + float(rng.uniform(0, 2)), 6)
                sr = _US8K_RATES[g % 3]
                filename = f"{fs_id}-{class_id}-{occurrence}-{slice_idx}.wav"
                specs.append({"key": ("us8k", fold, class_id, j),
                              "path": os.path.join(root, "audio", f"fold{fold}", filename),
                              "sr": sr, "seconds": seconds, "channels": _US8K_CHANNELS[(g // 3) % 2],
                              "subtype": _US8K_SUBTYPES[g % 5], "events": [US8K_EVENT[name]],
                              "scene": None, "shifted": True})
                rows.append({"slice_file_name": filename, "fsID": fs_id, "start": start,
                             "end": round(start + seconds, 6), "salience": int(rng.integers(1, 3)),
                             "fold": fold, "classID": class_id, "class": name})
                g += 1
    return {"clips": sorted(specs, key=lambda s: s["path"]),
            "rows": sorted(rows, key=lambda r: r["slice_file_name"])}


def plan_tut(out_dir, seed, cfg):
    """Plans TUT Acoustic Scenes 2017: a development set with four location-based folds
    and an evaluation set that hides locations behind numbered names.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    seed : int
        World seed.
    cfg : dict
        One entry of ``SIZES``.

    Returns
    -------
    dict
        ``clips``: the clip specs of both sets, sorted by path;
        ``development``: rows ``file, scene, location, fold`` sorted by file;
        ``evaluation``: rows ``file, original, scene, events, key`` in
        numbered order; ``development_root`` and ``evaluation_root``: the two
        set folders.

    Example
    -------
    >>> from dataset.toy.world import SIZES
    >>> tut = plan_tut("/data/toy", 0, SIZES["tiny"])
    >>> len(tut["development"]), len(tut["evaluation"]), tut["evaluation"][0]["file"]
    (24, 12, 'audio/1.wav')
    """
    root = os.path.join(out_dir, "TUT2017")
    dev_root = os.path.join(root, "TUT-acoustic-scenes-2017-development")
    eval_root = os.path.join(root, "TUT-acoustic-scenes-2017-evaluation")
    specs, dev_rows, eval_rows = [], [], []
    for s, scene in enumerate(SCENE_KEYS):
        for loc in range(cfg["tut_dev_locations_per_scene"]):
            location = f"{'ab'[loc % 2]}{s * 20 + loc + 1:03d}"
            for k in range(cfg["tut_dev_clips_per_location"]):
                start = int(stream(seed, "plan", "tut-dev-offset", scene, loc).integers(0, 20)) * 4 + k * 4
                name = f"audio/{location}_{start}_{start + int(TUT_SECONDS)}.wav"
                events = _scene_plan(seed, "tut-dev", f"{scene}-{loc}-{k}", scene)
                specs.append({"key": ("tut-dev", scene, loc, k), "path": os.path.join(dev_root, name),
                              "sr": TUT_SR, "seconds": TUT_SECONDS, "channels": 2, "subtype": "PCM_24",
                              "events": events, "scene": scene, "shifted": True})
                # Locations rotate over the four folds, so each location is evaluated in exactly one.
                dev_rows.append({"file": name, "scene": scene, "location": location,
                                 "fold": loc % 4 + 1})
        for loc in range(cfg["tut_eval_locations_per_scene"]):
            location = f"{'ab'[loc % 2]}{200 + s * 20 + loc + 1:03d}"
            for k in range(cfg["tut_eval_clips_per_location"]):
                original = f"audio/{location}_{k * 4}_{k * 4 + int(TUT_SECONDS)}.wav"
                events = _scene_plan(seed, "tut-eval", f"{scene}-{loc}-{k}", scene)
                eval_rows.append({"original": original, "scene": scene, "events": events,
                                  "key": ("tut-eval", scene, loc, k)})
    # The evaluation set hides locations behind numbered names (audio/1.wav, ...).
    order = stream(seed, "plan", "tut-eval-order").permutation(len(eval_rows))
    for number, idx in enumerate(order, start=1):
        row = eval_rows[idx]
        row["file"] = f"audio/{number}.wav"
        specs.append({"key": row["key"], "path": os.path.join(eval_root, row["file"]),
                      "sr": TUT_SR, "seconds": TUT_SECONDS, "channels": 2, "subtype": "PCM_24",
                      "events": row["events"], "scene": row["scene"], "shifted": True})
    dev_rows.sort(key=lambda r: r["file"])
    eval_rows.sort(key=lambda r: int(r["file"][len("audio/"):-len(".wav")]))
    return {"clips": sorted(specs, key=lambda s: s["path"]), "development": dev_rows, "evaluation": eval_rows,
            "development_root": dev_root, "evaluation_root": eval_root}


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _write_text(path, lines, encoding="utf-8"):
    atomic_write(path, lambda f: f.write("".join(line + "\n" for line in lines)), "w",
                 encoding=encoding, newline="")


def _write_tsv(path, rows):
    _write_text(path, ["\t".join(str(v) for v in row) for row in rows])


def _write_dataset_csv(path, rows, fieldnames, encoding="utf-8"):
    """A metadata CSV of a public dataset: ``\\n`` line ends, as in the real files
    (``write_csv`` writes the csv module's ``\\r\\n``, fine for our own manifests)."""
    def write(f):
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, "w", encoding=encoding, newline="")


def write_clotho(out_dir, clotho):
    """Writes ``clotho/clotho_captions_<split>.csv`` (UTF-8) and
    ``clotho/clotho_metadata_<split>.csv`` (ISO-8859-1, as the real files are).

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    clotho : dict
        The section made by :func:`plan_clotho`.

    Returns
    -------
    str
        The Clotho folder.
    """
    root = os.path.join(out_dir, "clotho")
    caption_fields = ["file_name"] + [f"caption_{k}" for k in range(1, 6)]
    meta_fields = ["file_name", "keywords", "sound_id", "sound_link", "start_end_samples",
                   "manufacturer", "license"]
    for split in ("development", "validation", "evaluation"):
        _write_dataset_csv(os.path.join(root, f"clotho_captions_{split}.csv"),
                           clotho["captions"][split], caption_fields)
        _write_dataset_csv(os.path.join(root, f"clotho_metadata_{split}.csv"),
                           clotho["metadata"][split], meta_fields, encoding="iso-8859-1")
    return root


def write_pairs(out_dir, clotho):
    """Writes ``pairs.csv``: what a teacher trains on (Clotho development + validation),
    one row ``ID,wav_path,caption`` per caption.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    clotho : dict
        The section made by :func:`plan_clotho`.

    Returns
    -------
    list of dict
        The rows written.
    """
    root = os.path.join(out_dir, "clotho")
    pairs = []
    for split in ("development", "validation"):
        for i, row in enumerate(clotho["captions"][split]):
            wav = os.path.join(root, split, row["file_name"])
            for k in range(1, 6):
                pairs.append({"ID": f"clotho_{split}_{i:04d}_{k}", "wav_path": wav,
                              "caption": row[f"caption_{k}"]})
    write_csv(os.path.join(out_dir, "pairs.csv"), pairs, ["ID", "wav_path", "caption"])
    return pairs


def write_unpaired(out_dir, unpaired):
    """Writes ``unpaired_paths.txt`` (one path a line) and ``unpaired_labels.csv``
    (the events and scene of each clip, for analyses only).

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    unpaired : dict
        The section made by :func:`plan_unpaired`.
    """
    clips = unpaired["clips"]
    _write_text(os.path.join(out_dir, "unpaired_paths.txt"), [s["path"] for s in clips])
    write_csv(os.path.join(out_dir, "unpaired_labels.csv"),
              [{"wav_path": s["path"], "events": ";".join(s["events"]), "scene": s["scene"] or ""}
               for s in clips], ["wav_path", "events", "scene"])


def write_esc50(out_dir, esc50):
    """Writes ``ESC-50/meta/esc50.csv``.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    esc50 : dict
        The section made by :func:`plan_esc50`.

    Returns
    -------
    str
        The ESC-50 folder.
    """
    root = os.path.join(out_dir, "ESC-50")
    _write_dataset_csv(os.path.join(root, "meta", "esc50.csv"), esc50["rows"],
                       ["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    return root


def write_us8k(out_dir, us8k):
    """Writes ``UrbanSound8K/metadata/UrbanSound8K.csv``.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    us8k : dict
        The section made by :func:`plan_us8k`.

    Returns
    -------
    str
        The UrbanSound8K folder.
    """
    root = os.path.join(out_dir, "UrbanSound8K")
    _write_dataset_csv(os.path.join(root, "metadata", "UrbanSound8K.csv"), us8k["rows"],
                       ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
    return root


def write_tut(out_dir, tut):
    """Writes the TUT2017 lists: development ``meta.txt`` and the four location-based
    folds, evaluation ``meta.txt`` and ``evaluation_setup/{test,evaluate,map}.txt``.

    Arguments
    ---------
    out_dir : str
        Folder of the world.
    tut : dict
        The section made by :func:`plan_tut` (it holds both set folders).

    Returns
    -------
    str
        The TUT2017 folder.
    """
    tut_dev, tut_eval = tut["development"], tut["evaluation"]
    _write_tsv(os.path.join(tut["development_root"], "meta.txt"),
               [(r["file"], r["scene"], r["location"]) for r in tut_dev])
    setup = os.path.join(tut["development_root"], "evaluation_setup")
    for fold in range(1, 5):
        evaluate = [r for r in tut_dev if r["fold"] == fold]
        train = [r for r in tut_dev if r["fold"] != fold]
        _write_tsv(os.path.join(setup, f"fold{fold}_train.txt"), [(r["file"], r["scene"]) for r in train])
        _write_tsv(os.path.join(setup, f"fold{fold}_evaluate.txt"), [(r["file"], r["scene"]) for r in evaluate])
        _write_tsv(os.path.join(setup, f"fold{fold}_test.txt"), [(r["file"],) for r in evaluate])
    _write_tsv(os.path.join(tut["evaluation_root"], "meta.txt"), [(r["file"], r["scene"]) for r in tut_eval])
    eval_setup = os.path.join(tut["evaluation_root"], "evaluation_setup")
    _write_tsv(os.path.join(eval_setup, "test.txt"), [(r["file"],) for r in tut_eval])
    _write_tsv(os.path.join(eval_setup, "evaluate.txt"), [(r["file"], r["scene"]) for r in tut_eval])
    _write_tsv(os.path.join(eval_setup, "map.txt"), [(r["file"], r["original"]) for r in tut_eval])
    return os.path.join(out_dir, "TUT2017")


def formats_summary():
    """The audio format of each set, as ``world.json`` records it under ``formats``.

    Returns
    -------
    dict

    Example
    -------
    >>> formats_summary()["us8k"]["sample_rates"]
    [22050, 44100, 48000]
    """
    return {
        "clotho": {"sample_rate": CLOTHO_SR, "seconds": list(CLOTHO_SECONDS), "channels": 1, "subtype": "PCM_16",
                   "condition": "clean", "clean_floor": "pink noise",
                   "clean_floor_snr_db": list(CLEAN_FLOOR_SNR_DB)},
        "unpaired": {"sample_rate": UNPAIRED_SR, "seconds": list(UNPAIRED_SECONDS), "channels": 1,
                     "subtype": "PCM_16", "condition": CONDITION["name"]},
        "esc50": {"sample_rate": ESC50_SR, "seconds": ESC50_SECONDS, "channels": 1, "subtype": "PCM_16",
                  "condition": CONDITION["name"]},
        "us8k": {"sample_rates": sorted(set(_US8K_RATES)), "seconds_max": US8K_SECONDS_MAX,
                 "channels": sorted(set(_US8K_CHANNELS)), "subtypes": sorted(set(_US8K_SUBTYPES)),
                 "condition": CONDITION["name"]},
        "tut": {"sample_rate": TUT_SR, "seconds": TUT_SECONDS, "channels": 2, "subtype": "PCM_24",
                "condition": CONDITION["name"],
                "note": "4 s clips instead of the real 10 s, to keep generation fast"},
    }
