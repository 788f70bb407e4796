"""Where the pipeline's data comes from: the teacher, the unpaired audio, the caption pool and the target sets.

:func:`check_user_inputs` reads a pipeline YAML's input keys and fails, before
anything is written, with one line naming the key and the fix;
:class:`Sources` then tells :class:`pipeline.plan.SeedPlan` which files and
flags each stage gets. The toy world's sources are
:func:`pipeline.sources.toy_sources`.
"""

import json
import os
import re

from dataset.audio import AUDIO_EXTENSIONS, list_audio_files, walk_audio_files
from dataset.manifest import atomic_write, read_caption_csv, read_csv, write_csv
from pipeline.toy import ROWS

__all__ = ["Target", "Sources", "ZEROSHOT_SETS", "check_user_inputs", "user_sources", "list_unpaired",
           "merge_caption_pool", "yaml_flow"]

#: Target sets with a zero-shot recipe: name -> (dataset of the zero-shot recipe, its hparams folder,
#: DS/ADS YAML short name or None (labels through a written label list), title).
ZEROSHOT_SETS = {
    "esc50": ("esc50", "esc", "esc", "ESC-50"),
    "us8k": ("us8k", "us8k", "us8k", "UrbanSound8K"),
    "tut17": ("tut17", "tut17", "tut", "TUT2017"),
    "vggsound": ("vggsound", "vggsound", None, "VGGSound"),
    "tau19": ("tau19", "tau19", None, "TAU2019"),
}


#: What a folder of unpaired audio may hold: audio files, or webdataset shards.
_AUDIO_OR_SHARD = AUDIO_EXTENSIONS + (".tar",)


class Target:
    """One target domain: a scored set (a folder in a known layout) and/or a label list (DS/ADS only).

    ``short`` names the curation YAMLs of the set (``{set}`` in ``ds_hparams``);
    a set without its own (VGGSound, TAU 2019, a user's labels) uses ESC-50's
    with the labels given as a list and its own caption set name.
    """

    def __init__(self, name, dataset=None, folder=None, label_list=None, short=None, zeroshot_dir=None):
        self.name, self.dataset, self.folder, self.label_list = name, dataset, folder, label_list
        self.short = short or "esc"
        self.zeroshot_dir = zeroshot_dir or name
        self.own = short is None  # labels from label_list, outputs named after the target

    @property
    def caption_set(self):
        return f"ds_{self.name}" if self.own else f"ds_{self.dataset}"

    def ds_flags(self):
        if not self.own:
            return [f"--zs_data_folder={self.folder}"]
        return [f"--label_encoder_path={self.label_list}", f"--caption_set={self.caption_set}", "--zs_data_folder="]

    def ads_flags(self):
        return [f"--caption_set={self.caption_set}", f"--curation_name=ads_{self.name}"] if self.own else []


class Sources:
    """The inputs of a pipeline run, as :class:`pipeline.plan.SeedPlan` reads them.

    Arguments
    ---------
    hparams : dict
        The pipeline YAML's keys.
    targets : dict
        name -> :class:`Target`, in table order.
    scored : list of str
        Targets with a zero-shot scoring set.
    unpaired_list : str
        The path list of the unpaired audio (written by the input stage).
    """

    train_script = "recipes/microsoft_clap_train.py"

    def __init__(self, hparams, targets, scored, unpaired_list, world=None, train_flags=(), teacher_file=None,
                 teacher_format=None, teacher_run=None, model_flags=(), curation_flags=(), caption_files=None,
                 selection=None):
        self.h, self.targets, self.scored = hparams, targets, scored
        self.unpaired_list, self.world = unpaired_list, world
        self.curated_targets = list(targets)
        self._train_flags = list(train_flags)
        self.teacher_file, self.teacher_format, self.teacher_run = teacher_file, teacher_format, teacher_run
        self.model_flags, self.curation_flags = list(model_flags), list(curation_flags)
        self.caption_files = caption_files  # None: the teacher's training captions alone
        self.selection = selection
        self.init_flags = []  # the teacher's starting weights (teacher: train)

    def train_data_flags(self):
        return list(self._train_flags)

    def caption_csv(self, plan):
        """A callable giving the caption pool CSV (the teacher's training captions, or the merged pool)."""
        if self.caption_files is None:
            return lambda: os.path.join(plan.teacher_save, "train_raw.csv")
        return lambda: os.path.join(plan.out, "inputs", "captions.csv")

    def caption_pool(self, plan):
        """``(files, with_teacher)`` of the pool to merge per seed; None when it is the teacher's captions alone."""
        if self.caption_files is None:
            return None
        return [f for f in self.caption_files if f != "teacher"], "teacher" in self.caption_files

    def replay_csv(self, plan, caption_csv):
        """The DU student's replay set: the teacher's training pairs (or the caption pool's pairs with audio)."""
        return caption_csv()

    def selection_csv(self, plan):
        """Held-out caption pairs that rank a round's students (never a target's test clips)."""
        if self.selection:
            return lambda: self.selection
        return lambda: os.path.join(os.path.dirname(plan.teacher_save), "valid.csv")

    def ds_threshold(self, target):
        h = self.h
        return _per_target(h, "ds", target, h.get("ds_threshold", 0.7))

    def fixed_threshold(self, kind, target):
        h = self.h
        if kind == "du":
            return h.get("du_threshold")
        return _per_target(h, "ads", target, h.get("ads_threshold"))


def _per_target(h, kind, target, default):
    """``<kind>_threshold_<target>`` when the YAML sets it, else ``<kind>_thresholds[target]``, else ``default``."""
    if h.get(f"{kind}_threshold_{target}") is not None:
        return h[f"{kind}_threshold_{target}"]
    table = h.get(f"{kind}_thresholds") or {}
    return table.get(target, default)


def yaml_flow(value):
    """A value as YAML flow text for a ``--key=value`` flag (``{size: tiny}``, ``[2, 2]``, ``null``)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


# -------------------------------------------------------------- checks
def _fail(key, message):
    raise SystemExit(f"--{key}: {message}")


def check_students(hparams):
    allowed = [r for r in ROWS if r != "teacher"]
    students = hparams.get("students") or []
    bad = [s for s in students if s not in allowed]
    if bad or not students:
        _fail("students", f"unknown student(s) {bad or students!r}; choose a non-empty subset of {allowed}.")


def _check_teacher(h):
    """``(file, format, run save folder, architecture)`` of an existing teacher; all None for ``teacher: train``."""
    teacher = h.get("teacher")
    if teacher in (None, "", "train"):
        data = teacher_data(h)
        if not data:
            _fail("teacher_data_folder", "teacher: train needs captioned corpora: teacher_data_folder (the prepared "
                  "Clotho, AudioCaps, MACS folders, as --data_annot_folder) and/or teacher_csvs (caption CSVs).")
        for key, value in data.items():
            for path in (value if isinstance(value, list) else [value]):
                if not os.path.exists(path):
                    _fail("teacher_csvs" if key == "user_csvs" else "teacher_data_folder", f"{path} does not exist.")
        init = h.get("teacher_init")
        if init and not os.path.exists(init):
            _fail("teacher_init", f"{init} does not exist.")
        return None, None, None, None
    path = os.path.abspath(os.fspath(teacher))
    if not os.path.exists(path):
        _fail("teacher", f"{path} does not exist; give 'train' or a checkpoint file or folder "
              "(LAION .pt, MS CLAP .pth, Hugging Face ClapModel folder, or one of our experiment folders).")
    if os.path.isdir(os.path.join(path, "save")) or os.path.basename(path) == "save":
        from experiment.weights import read_architecture

        save = path if os.path.basename(path) == "save" else os.path.join(path, "save")
        from experiment.checkpoints import checkpoint_dirs

        if not checkpoint_dirs(save):
            _fail("teacher", f"{save} holds no checkpoint (CKPT+* folders); give a finished run's folder.")
        params = os.path.join(os.path.dirname(save), "hyperparams.yaml")
        arch = read_architecture(params) if os.path.isfile(params) else {}
        return None, None, save, arch
    from models.convert import read_checkpoint

    try:
        fmt, _, arch = read_checkpoint(path)
    except Exception as err:  # every reader error becomes one line naming the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        _fail("teacher", f"{path} is not a checkpoint of a known architecture ({first}); give a LAION-CLAP .pt, "
              "an MS CLAP .pth, a Hugging Face ClapModel folder or one of our experiment folders.")
    return path, fmt, None, arch


def teacher_data(h):
    """The training recipe's corpus flags of ``teacher: train``: ``{data_annot_folder: ..., user_csvs: [...]}``."""
    data = {}
    if h.get("teacher_data_folder"):
        data["data_annot_folder"] = os.path.abspath(h["teacher_data_folder"])
    if h.get("teacher_csvs"):
        data["user_csvs"] = [os.path.abspath(p) for p in h["teacher_csvs"]]
    return data


def target_folder(h, name):
    """The folder of a scored target set: ``<name>_folder`` (or ``target_folders[name]``)."""
    return h.get(f"{name}_folder") or (h.get("target_folders") or {}).get(name)


def label_lists(h):
    """Your own label lists: ``label_list`` (named ``label_list_name``) and the ``label_lists`` mapping."""
    lists = dict(h.get("label_lists") or {})
    if h.get("label_list"):
        lists[h.get("label_list_name") or "own"] = h["label_list"]
    return lists


def _has_audio(folder):
    """True as soon as one audio file or ``.tar`` shard is found below ``folder``."""
    for _ in walk_audio_files(folder, extensions=_AUDIO_OR_SHARD):
        return True
    return False


def _check_unpaired(h):
    spec = h.get("unpaired_audio")
    if not spec:
        _fail("unpaired_audio", "give a folder of audio, a list file (.txt), a CSV with a wav_path column, or "
              "webdataset shards (a .tar, a folder of .tar, a glob or /d/shard-{000..009}.tar).")
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        if not _has_audio(spec):
            _fail("unpaired_audio", f"{spec} holds no audio file (.wav, .flac, .ogg, .mp3) and no .tar shard.")
        return
    if _is_shard_spec(spec):
        from dataset.shards import expand_shards

        try:
            expand_shards(spec)
        except (OSError, ValueError) as err:
            _fail("unpaired_audio", str(err))
        return
    if not os.path.isfile(spec):
        _fail("unpaired_audio", f"{spec} does not exist.")
    if spec.endswith(".csv"):
        rows = read_csv(spec)
        if not rows or _path_column(rows[0]) is None:
            _fail("unpaired_audio", f"{spec} has no rows or no wav_path (or path) column.")
    elif not any(line.strip() for line in open(spec, encoding="utf-8")):
        _fail("unpaired_audio", f"{spec} lists no audio file.")


def _is_shard_spec(spec):
    return spec.endswith(".tar") or "{" in spec or any(c in spec for c in "*?[")


def _check_targets(h):
    names = list(h.get("target_sets") or [])
    unknown = [n for n in names if n not in ZEROSHOT_SETS]
    if unknown:
        _fail("target_sets", f"unknown set(s) {unknown}; choose from {list(ZEROSHOT_SETS)}, or give your own "
              "labels as label_lists: {name: labels.txt}.")
    from dataset.prepare_zeroshot import find_dataset_root

    for name in names:
        folder = target_folder(h, name)
        if not folder:
            _fail(f"{name}_folder", f"give the folder of {name} (--{name}_folder=/data/...).")
        if not os.path.isdir(folder):
            _fail(f"{name}_folder", f"{folder} is not a folder.")
        try:
            find_dataset_root(folder, ZEROSHOT_SETS[name][0])
        except FileNotFoundError as err:
            _fail(f"{name}_folder", f"{folder} is not in the {ZEROSHOT_SETS[name][3]} layout ({err}).")
    lists = label_lists(h)
    key = "label_list" if h.get("label_list") else "label_lists"
    for name, path in lists.items():
        if name in ZEROSHOT_SETS:
            _fail("label_list_name", f"{name!r} is a scored set's name; name your label list otherwise.")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            _fail("label_list_name", f"{name!r}: a label list's name may hold letters, digits, '_' and '-' only.")
        if not path or not os.path.isfile(path):
            _fail(key, f"{path} is not a file; give a text file of class names, one a line.")
        from dataset.labels import read_label_file

        try:
            labels = read_label_file(path)
        except (OSError, ValueError) as err:
            _fail(key, f"{path}: {err}")
        if not labels:
            _fail(key, f"{path} holds no class name.")
    if not names and not lists:
        _fail("target_sets", "give at least one target: target_sets (scored) or label_lists (your labels).")


def _check_pool(h, trained):
    pool = list(h.get("caption_pool") or ["teacher"])
    for entry in pool:
        if entry == "teacher":
            if not trained:
                _fail("caption_pool", "'teacher' (the teacher's training captions) needs teacher: train; list "
                      "caption CSVs or text files (one caption a line) instead.")
        elif not os.path.isfile(entry):
            _fail("caption_pool", f"{entry} is not a file (a caption CSV or a text file of captions).")
        elif entry.endswith(".csv"):
            try:
                read_caption_csv(entry)
            except Exception as err:
                _fail("caption_pool", f"{entry}: {err}")
    return pool


def check_user_inputs(h):
    """Checks every input key of a pipeline YAML; returns what the plan needs. Writes nothing.

    Returns
    -------
    dict
        ``teacher_file``, ``teacher_format``, ``teacher_run``, ``arch`` (of an existing teacher) and ``pool``.
    """
    check_students(h)
    rounds = h.get("rounds") or 1
    if not isinstance(rounds, int) or rounds < 1:
        _fail("rounds", f"must be a whole number >= 1; got {rounds!r}.")
    teacher_file, fmt, run, arch = _check_teacher(h)
    _check_unpaired(h)
    _check_targets(h)
    pool = _check_pool(h, trained=teacher_file is None and run is None)
    selection = h.get("selection_csv")
    if selection and not os.path.isfile(selection):
        _fail("selection_csv", f"{selection} is not a file (a caption CSV of held-out pairs).")
    if rounds > 1 and not selection and (teacher_file or run):
        per_target = [s for s in h["students"] if s != "du"]
        candidates = len(per_target) * (len(h.get("target_sets") or []) + len(label_lists(h))) \
            + ("du" in h["students"])
        if candidates > 1:
            _fail("selection_csv", "rounds > 1 with an existing teacher and several students: give held-out "
                  "caption pairs (a caption CSV) that rank the students; the target sets are never used for it.")
    if "du" in h["students"] and pool == ["teacher"] and (teacher_file or run):
        _fail("students", "du needs replay pairs: list a caption CSV with audio in caption_pool.")
    return {"teacher_file": teacher_file, "teacher_format": fmt, "teacher_run": run, "arch": arch or {},
            "pool": pool}


# -------------------------------------------------------------- inputs
def _path_column(row):
    for key in ("wav_path", "path", "filepath", "file_name", "filename"):
        if key in row:
            return key
    return None


def list_unpaired(spec, folder, exclude=None):
    """Writes ``folder/unpaired_paths.txt`` (one audio path or shard member a line) and returns its outputs.

    ``spec``: a folder (recursive), a list file, a CSV (``wav_path`` column) or
    webdataset shards (:func:`dataset.shards.expand_shards`), read shard by
    shard and resumable (``folder/shard_index/``). A truncated shard gives its
    readable samples; the rest are counted in ``unpaired_report.json``.
    """
    from embeddings.keys import list_digest
    from embeddings.lists import read_path_list, write_path_list

    spec = os.fspath(spec)
    report = []
    if os.path.isdir(spec) and not _has_tar_only(spec):
        paths = list_audio_files(spec, exclude=exclude)
    elif os.path.isdir(spec) or _is_shard_spec(spec):
        from dataset.shard_index import index_shards
        from dataset.shards import expand_shards

        paths, report = index_shards(expand_shards(spec), index_dir=os.path.join(folder, "shard_index"),
                                     progress=True)
    elif spec.endswith(".csv"):
        rows = read_csv(spec)
        column = _path_column(rows[0])
        base = os.path.dirname(os.path.abspath(spec))
        paths = [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))
                 for p in (r[column].strip() for r in rows) if p]
    else:
        paths = read_path_list(spec)
    if not paths:
        raise ValueError(f"unpaired_audio: {spec} gave no audio")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "unpaired_paths.txt")
    write_path_list(target, paths)
    unreadable = sum(int(r.get("unreadable", 0)) for r in report)
    atomic_write(os.path.join(folder, "unpaired_report.json"),
                 lambda f: f.write(json.dumps({"clips": len(paths), "shards": report}, indent=1) + "\n"), "w",
                 encoding="utf-8")
    for entry in report:
        if entry.get("unreadable") or entry.get("error"):
            print(f"    shard {entry['shard']}: {entry.get('samples', 0)} samples read, {entry.get('unreadable', 0)} "
                  f"not readable ({entry.get('error', '')})", flush=True)
    return {"paths": target, "clips": len(paths), "unreadable": unreadable, "digest": list_digest(paths)}


def _has_tar_only(folder):
    """A folder of shards: ``.tar`` files below it and no audio file."""
    tars = audio = False
    for path in walk_audio_files(folder, extensions=_AUDIO_OR_SHARD):
        if path.endswith(".tar"):
            tars = True
        else:
            audio = True
            break
    return tars and not audio


def merge_caption_pool(target, files):
    """Writes the caption pool: the rows of every caption CSV, then one row per line of each text file."""
    rows = []
    for i, path in enumerate(files):
        if path.endswith(".csv"):
            for row in read_caption_csv(path):
                rows.append({"ID": f"p{i}_{row['ID']}", "wav_path": row["wav_path"], "caption": row["caption"]})
        else:
            with open(path, encoding="utf-8") as f:
                captions = [line.strip() for line in f if line.strip()]
            rows += [{"ID": f"p{i}_{n}", "wav_path": "", "caption": c} for n, c in enumerate(captions)]
    if not rows:
        raise ValueError(f"the caption pool {files} holds no caption")
    write_csv(target, rows, fieldnames=["ID", "wav_path", "caption"])
    return {"csv": target, "captions": len(rows)}


def _write_arch(path, arch):
    import yaml

    from models.factory import ARCHITECTURE_KEYS

    keys = {k: v for k, v in arch.items() if k in ARCHITECTURE_KEYS}
    atomic_write(path, lambda f: f.write(yaml.safe_dump(keys, sort_keys=False)), "w", encoding="utf-8")


def user_sources(h, checked, out):
    """The :class:`Sources` of a run on the user's data (after :func:`check_user_inputs`)."""
    inputs = os.path.join(out, "inputs")
    targets = {}
    for name in h.get("target_sets") or []:
        dataset, zs_dir, short, _ = ZEROSHOT_SETS[name]
        label_list = None if short else os.path.join(inputs, f"labels_{name}.txt")
        targets[name] = Target(name, dataset, os.path.abspath(target_folder(h, name)), label_list, short, zs_dir)
    for name, path in label_lists(h).items():
        targets[name] = Target(str(name), label_list=os.path.abspath(path))
    model_flags = []
    if checked["arch"]:
        arch_file = os.path.join(inputs, "teacher_model.yaml")
        model_flags = [f"--model={arch_file}"]
    data = teacher_data(h)
    train_flags = [f"--{k}={yaml_flow(v) if isinstance(v, list) else v}" for k, v in data.items()]
    if "data_annot_folder" not in data:
        train_flags.insert(0, "--data_annot_folder=")
    pool = checked["pool"]
    sources = Sources(
        h, targets, list(h.get("target_sets") or []), os.path.join(inputs, "unpaired_paths.txt"), world=None,
        train_flags=train_flags, teacher_file=checked["teacher_file"], teacher_format=checked["teacher_format"],
        teacher_run=checked["teacher_run"], model_flags=model_flags, curation_flags=h.get("curation_model_flags") or [],
        caption_files=None if pool == ["teacher"] else [p if p == "teacher" else os.path.abspath(p) for p in pool],
        selection=os.path.abspath(h["selection_csv"]) if h.get("selection_csv") else None,
    )
    if h.get("teacher_init"):
        sources.init_flags = [f"--clap_ckpt_path={os.path.abspath(h['teacher_init'])}"]
    return sources


def prepare_inputs(h, checked, sources, out):
    """Writes what the commands name before any stage runs: the teacher's architecture and label lists."""
    inputs = os.path.join(out, "inputs")
    os.makedirs(inputs, exist_ok=True)
    if checked["arch"]:
        _write_arch(os.path.join(inputs, "teacher_model.yaml"), checked["arch"])
    for target in sources.targets.values():
        if target.own and target.dataset and not os.path.isfile(target.label_list or ""):
            from dataset.prepare_zeroshot import prepare_zeroshot, read_prepared

            folder = os.path.join(inputs, f"prepared_{target.name}")
            prepare_zeroshot(target.dataset, target.folder, folder, check_audio=False)
            labels = list(read_prepared(folder, target.dataset)[1])
            atomic_write(target.label_list, lambda f, labels=labels: f.write("".join(x + "\n" for x in labels)),
                         "w", encoding="utf-8")



def toy_sources(h, world):
    """The toy world's :class:`Sources`: its corpus trains the teacher, whose captions are the pool."""
    from pipeline.toy import TARGETS

    targets = {}
    for name in h["target_sets"]:
        folder, short, _ = TARGETS[name]
        targets[name] = Target(name, name, os.path.join(world, folder), short=short, zeroshot_dir=name)
    return Sources(h, targets, list(h["target_sets"]), os.path.join(world, "unpaired_paths.txt"), world=world,
                   train_flags=[f"--data_annot_folder={world}"], curation_flags=h.get("toy_model_flags") or [])
