"""Bad inputs stopped before any work starts, each with a message that names the input and what to do.

:func:`check_overrides` runs in :func:`experiment.arguments.load_hparams`
(so in every recipe, through ``setup``) before hyperpyyaml builds anything:

- an unknown ``--key`` gets the closest keys of the YAML file;
- a value must have the type of the key's default in the YAML (int; float,
  ints accepted; bool; str; list; mapping); a null, ``!ref``,
  ``!PLACEHOLDER`` or other tagged default accepts anything, and so does a
  ``!ref`` value;
- a key of :data:`RANGES` must be in the range its meaning has (positive
  batch sizes, cosine thresholds in [-1, 1], probabilities in [0, 1], ...);
  this table is the one place these ranges are written;
- the input files and folders of :data:`INPUT_FILES` and
  :data:`EMBEDDING_FOLDERS` must exist and hold rows: a header-only CSV or a
  blank path list is "no rows in FILE", a missing embedding folder names the
  command that writes it (before any folder is created inside it).

Every problem found is reported at once, as ``--key=value: expected ...
(hparams/x.yaml)`` lines in one ``SystemExit``.
"""

import csv
import dataclasses
import difflib
import math
import os
import re

from dataset.clips import EVAL_CROPS
from experiment.checkpoints import SELECTIONS
from models.loss import LOGIT_CLAMPS, SOFTCLAP_TARGETS
from models.projection import PROJECTIONS
from models.text_encoder import TEXT_POOLINGS

__all__ = ["Range", "RANGES", "CHOICES", "INPUT_FILES", "EMBEDDING_FOLDERS", "check_overrides", "positive_int",
           "has_rows", "has_lines"]


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a key's meaning allows: ``text`` says it in words ("a positive integer").

    Example
    -------
    >>> RANGES["batch_size"].accepts(-4), RANGES["sim_threshold"].accepts(0.75), RANGES["sim_threshold"].accepts(2)
    (False, True, False)
    """

    text: str
    integer: bool = False
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False  # null has a meaning (e.g. "no cap") even where the YAML's default is a number

    def accepts(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


_POSITIVE_INT = Range("a positive integer", integer=True, low=1)
_NON_NEGATIVE_INT = Range("an integer >= 0", integer=True, low=0)
_COSINE = Range("a cosine in [-1, 1]", low=-1.0, high=1.0)
_PROBABILITY = Range("a probability in [0, 1]", low=0.0, high=1.0)
_BELOW_ONE = Range("a number in [0, 1)", low=0.0, high=1.0, high_open=True)
_ABOVE_ZERO = Range("a fraction in (0, 1]", low=0.0, high=1.0, low_open=True)
_POSITIVE = Range("a positive number", low=0.0, low_open=True)
_NON_NEGATIVE = Range("a number >= 0", low=0.0)

#: The range of every key whose meaning has one (any YAML that has the key). A key not listed here
#: only has to match the type of its default.
RANGES = {
    # counts and sizes
    **dict.fromkeys(
        ("batch_size", "number_of_epochs", "teacher_epochs", "student_steps", "jobs", "text_batch_size",
         "shard_size", "audio_bs", "text_bs", "caption_bs", "top_k", "sample_rate", "text_max_length",
         "window_size", "hop_size", "mel_bins", "classes_num", "out_emb", "txt_emb_dim", "d_proj"),
        _POSITIVE_INT),
    "max_chunks": dataclasses.replace(_POSITIVE_INT, text="a positive integer (or null: no cap)", nullable=True),
    **dict.fromkeys(("num_workers", "warmup_steps"), _NON_NEGATIVE_INT),
    # cosine thresholds
    **dict.fromkeys(
        ("sim_threshold", "du_threshold", "ads_threshold_esc50", "ads_threshold_us8k", "ads_threshold_tut17",
         "ds_threshold_esc50", "ds_threshold_us8k", "ds_threshold_tut17"),
        _COSINE),
    # probabilities and fractions
    "softclap_beta": _PROBABILITY,
    **dict.fromkeys(("valid_pct", "proj_dropout"), _BELOW_ONE),
    "curation_prob": _PROBABILITY,  # 1 only with curation_mixing=replace (training.run.check_options)
    **dict.fromkeys(("subset_pct", "du_clip_fraction", "ads_clip_fraction"), _ABOVE_ZERO),
    # optimisation
    **dict.fromkeys(("base_lr", "teacher_lr", "student_lr", "max_grad_norm", "max_logit_scale"), _POSITIVE),
    **dict.fromkeys(("final_lr", "weight_decay"), _NON_NEGATIVE),
    "lr_plateau_factor": Range("a factor in (0, 1]", low=0.0, high=1.0, low_open=True),
    **dict.fromkeys(("lr_plateau_patience", "lr_plateau_dont_halve_until_epoch"), _NON_NEGATIVE_INT),
    # audio
    **dict.fromkeys(("train_duration", "eval_duration", "audio_width", "fmax"), _POSITIVE),
    "fmin": _NON_NEGATIVE,
}

# The paper code's training keys (experiment/aliases.py).
RANGES.update({
    "num_ckpt_keep": _POSITIVE_INT,
    "num_epoch_save": _POSITIVE_INT,
    "overfit_size": dataclasses.replace(_POSITIVE_INT, text="a positive number of pairs (or null: off)", nullable=True),
})

#: Keys whose value is one of a few names (any YAML that has the key).
CHOICES = {
    "softclap_targets": SOFTCLAP_TARGETS,
    # replace: the paper code's mixing; insert: ours (training.mixer)
    "curation_mixing": ("replace", "insert"),
    "caption_cleaning": ("paper", "none"),  # dataset.prepare_insper.CAPTION_CLEANING
    # the paper code's per-epoch ReduceLROnPlateau, or our per-step cosine (training.schedule)
    "lr_schedule": ("plateau", "cosine"),
    # torch.optim.Adam (the paper's code) or AdamW (training.schedule.make_optimizer)
    "optimizer": ("adam", "adamw"),
    # null: the paper code's use_maxacc_ep / use_minloss_ep decide (experiment.checkpoints.resolve_selection)
    "ssl_select": SELECTIONS + (None,),
    # deterministic crops of a long clip (dataset.clips); paper: the paper code's curation-embedding crop
    "eval_crop": EVAL_CROPS,
    "curation_eval_crop": EVAL_CROPS,  # the toy pipeline's eval_crop of the embedding step
    # per_row: the paper code's DU/ADS pair multiplicity; distinct: ours (curation.builders.CAPTION_ROWS)
    "caption_rows": ("per_row", "distinct"),
    # logits: the paper code's clamp of each scaled cosine; scale: ours, of the temperature (models.loss)
    "logit_clamp": LOGIT_CLAMPS,
    # the text tower's token pooling and both towers' head (models.text_encoder, models.projection)
    "text_pooling": TEXT_POOLINGS,
    "projection": PROJECTIONS,
}

_CAPTION_CSV = "a caption CSV with a header ID,wav_path,caption (or wav_path,caption) and one row per pair"
_PATH_LIST = "a text file with one audio path per line"
_LABEL_FILE = ("a label file: the paper code's label_encoder_*.txt ('label' => index lines, SpeechBrain's "
               "CategoricalEncoder) or one label per line")
#: Keys naming an input file, checked when given on the command line in a YAML where the key is an input
#: (its default is null or !PLACEHOLDER; where it is a !ref, the run writes it).
INPUT_FILES = {
    "train_csv_path": _CAPTION_CSV,
    "curation_csv": _CAPTION_CSV,
    "user_csvs": _CAPTION_CSV,
    "text_pathfile": _CAPTION_CSV,
    "target_csv_path": _CAPTION_CSV,
    "audio_pathfile": _PATH_LIST,
    "aud_ds_path": _PATH_LIST,
    "txt_ds_path": _CAPTION_CSV,
    "label_encoder_path": _LABEL_FILE,
    "zs_label_encoder_path": _LABEL_FILE,
}
#: Keys naming an embedding folder (read by the curation joins), with the command that writes it.
EMBEDDING_FOLDERS = {
    "emb_dir": (
        "It is the 'save' folder written by the embedding step, recipes/microsoft_curation_toemb.py "
        "(<its --output_folder>/save): run that first, and give --emb_dir=<output_folder>/save. "
        "(retrieve_ds_t2t.py may also start a new folder: create it first.)"
    ),
}


# --------------------------------------------------------------- YAML reading
def _tag(node):
    """The YAML tag of a round-trip node (``!ref``, ``!new:...``), or None."""
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", tag) if tag is not None and not isinstance(tag, str) else tag


def _load_round_trip(text_or_stream):
    """The YAML as hyperpyyaml reads it before resolving anything (ruamel.yaml round trip: tags kept)."""
    import ruamel.yaml

    return ruamel.yaml.YAML().load(text_or_stream)


def _raw_values(overrides):
    """``{key: value text}`` of one-line ``key: value`` overrides (to quote the user's own spelling)."""
    raw = {}
    for line in overrides.splitlines():
        match = re.match(r"^([A-Za-z_][\w.-]*)\s*:\s?(.*)$", line)
        if match:
            raw[match.group(1)] = match.group(2).strip()
    return raw


def _shown(key, value, raw):
    text = raw.get(key)
    if text is None:
        text = "null" if value is None else str(value)
    return f"--{key}={text}"


# ---------------------------------------------------------------- type check
_TYPE_TEXT = {"bool": "True or False", "int": "an integer", "float": "a number",
              "str": "a single value (not a list or mapping)", "list": "a list, e.g. [a, b]",
              "mapping": "a mapping, e.g. {key: value}"}


def _kind(default):
    """The type a key's default asks of an override, or None (anything goes)."""
    if default is None or _tag(default):
        return None
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        return "list"
    if isinstance(default, dict):
        return "mapping"
    return None


def _type_ok(kind, value):
    if kind is None:
        return True
    if value is None:
        return kind in ("str", "list")
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return not isinstance(value, (list, tuple, dict))
    if kind == "list":
        return not isinstance(value, dict)
    return isinstance(value, dict)


def _value_problem(key, default, value):
    """What is wrong with ``value`` for ``key`` (whose YAML default is ``default``), or None."""
    if _tag(value):
        return None  # a !ref (or other tag) is resolved by hyperpyyaml
    if key in CHOICES and not _tag(default):
        if value not in CHOICES[key]:
            return "expected one of " + ", ".join("null" if c is None else str(c) for c in CHOICES[key])
        return None
    rng = RANGES.get(key)
    # A !ref default (base_lr: !ref <batch_size> * 0.001 / 1024) still stands for a number of that range.
    if rng is not None and _tag(default) in (None, "!ref"):
        if value is None and (default is None or rng.nullable):
            return None
        if not rng.accepts(value):
            return f"expected {rng.text}" + (" or null" if default is None and not rng.nullable else "")
        return None
    kind = _kind(default)
    if not _type_ok(kind, value):
        example = f", like the default {default}" if kind in ("bool", "int", "float") else ""
        return f"expected {_TYPE_TEXT[kind]}{example}"
    return None


# ---------------------------------------------------------------- input files
def has_rows(path):
    """True when the CSV ``path`` has a non-empty row after its header.

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("ID,wav_path,caption\\n\\n")
    >>> has_rows(p)
    False
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return any(any(cell.strip() for cell in row) for row in reader)


def has_lines(path):
    """True when the text file ``path`` has a non-blank line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return any(line.strip() for line in f)


def _file_problem(key, path):
    if not os.path.exists(path):
        return f"file not found ({os.path.abspath(path)}); {key} names {INPUT_FILES[key]}"
    if not os.path.isfile(path):
        return f"{path} is a folder; {key} names {INPUT_FILES[key]}"
    check = has_lines if INPUT_FILES[key] in (_PATH_LIST, _LABEL_FILE) else has_rows
    if not check(path):
        return f"no rows in {path}: it must be {INPUT_FILES[key]}"
    return None


def _input_problems(key, default, value):
    """``[(shown value, problem)]`` of an input file or folder override."""
    if value is None or _tag(value) or not (default is None or _tag(default) == "!PLACEHOLDER"):
        return []
    if key in EMBEDDING_FOLDERS:
        path = str(value)
        if not os.path.isdir(path):
            return [(path, f"no such folder ({os.path.abspath(path)}). {EMBEDDING_FOLDERS[key]}")]
        return []
    if key not in INPUT_FILES:
        return []
    if key == "user_csvs":
        from dataset.prepare_insper import user_csv_list

        paths = user_csv_list(value)
    else:
        paths = [str(value)]
    return [(path, problem) for path in paths for problem in [_file_problem(key, path)] if problem]


def _parse_overrides(overrides):
    """The overrides as hyperpyyaml reads them; a line that is not YAML is named with how to quote it."""
    import ruamel.yaml

    try:
        return _load_round_trip(overrides)
    except ruamel.yaml.YAMLError:
        bad = []
        for line in overrides.splitlines():
            try:
                _load_round_trip(line)
            except ruamel.yaml.YAMLError as err:
                key, _, value = line.partition(":")
                bad.append(f"--{key.strip()}={value.strip()}: not a YAML value ({getattr(err, 'problem', err)}); "
                           f"quote it, e.g. --{key.strip()}='\"{value.strip()}\"'")
        raise SystemExit("\n".join(bad) or f"The overrides are not valid YAML: {overrides!r}") from None


def _nested_problem(default, value):
    """Unknown keys of a mapping override (``--train_dataloader_opts={batch_size: 4}``), or None."""
    if not (isinstance(default, dict) and isinstance(value, dict)) or _tag(default) or _tag(value):
        return None
    for key, sub in value.items():
        if key not in default:
            close = difflib.get_close_matches(str(key), [str(k) for k in default], n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else f"its keys: {', '.join(map(str, default))}"
            return f"no key {key!r} in this mapping; {hint}"
        problem = _nested_problem(default[key], sub)
        if problem:
            return problem
    return None


# ---------------------------------------------------------------- entry point
def check_overrides(param_file, overrides):
    """Checks the ``--key=value`` overrides of a run against its YAML file before anything is built.

    Arguments
    ---------
    param_file : str
        The hyperpyyaml file.
    overrides : str or dict or None
        The overrides (a YAML string, as :func:`experiment.arguments.overrides_to_yaml` writes them).

    Raises
    ------
    SystemExit
        Naming every unknown key (with the closest keys), every value of the
        wrong type or out of range, every missing or empty input file and
        every missing embedding folder.
    """
    if not overrides:
        return
    raw = _raw_values(overrides) if isinstance(overrides, str) else {}
    given = _parse_overrides(overrides) if isinstance(overrides, str) else overrides
    if not given:
        return
    if not isinstance(given, dict):
        raise SystemExit(f"{param_file}: the overrides must be --key=value flags; got {overrides!r}.")
    with open(param_file, encoding="utf-8") as f:
        defaults = _load_round_trip(f) or {}
    keys = [k for k in defaults if not str(k).startswith("__")]
    problems, unknown = [], False
    for key, value in given.items():
        if key not in defaults:
            unknown = True
            close = difflib.get_close_matches(str(key), keys, n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join('--' + c for c in close)}?" if close
                    else f"see the keys of {param_file}.")
            problems.append(f"{_shown(key, value, raw)}: {param_file} has no key {key!r}; {hint}")
            continue
        problem = _value_problem(key, defaults[key], value) or _nested_problem(defaults[key], value)
        if problem:
            problems.append(f"{_shown(key, value, raw)}: {problem} ({param_file})")
            continue
        problems += [f"--{key}={path}: {problem}" for path, problem in _input_problems(key, defaults[key], value)]
    if unknown:
        problems.append("Every --flag must be a key of the YAML file (or a SpeechBrain run option such as --device).")
    if problems:
        raise SystemExit("\n".join(problems))


def positive_int(text):
    """argparse ``type=`` of a flag that counts something (``--topk``, ``--batch_size``): an integer >= 1.

    Example
    -------
    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
