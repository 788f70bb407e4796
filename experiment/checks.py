"""The ``--key=value`` overrides of a run checked against its YAML, before anything is built.

:func:`check_overrides` runs in every recipe (:mod:`experiment.command_line`)
before hyperpyyaml builds anything:

- an unknown ``--key`` gets the closest keys of the YAML file;
- a value must have the type of the key's default in the YAML (int; float,
  ints accepted; bool; str; list; mapping); a null, ``!ref``,
  ``!PLACEHOLDER`` or other tagged default accepts anything, and so does a
  ``!ref`` value;
- a number must be finite (``.inf``, ``.nan`` are refused for every key);
- a key of :data:`experiment.key_tables.RANGES` must be in its range, one of
  :data:`~experiment.key_tables.CHOICES` one of its names;
- the input files and folders of :data:`~experiment.key_tables.INPUT_FILES`
  and :data:`~experiment.key_tables.EMBEDDING_FOLDERS` must exist and hold
  rows: a header-only CSV or a blank path list is "no rows in FILE", a
  caption CSV without a ``wav_path`` or ``caption`` column names them, a
  missing embedding folder names the command that writes it (before any
  folder is created inside it).

Every problem found is reported at once, as ``--key=value: expected ...
(hparams/x.yaml)`` lines in one ``SystemExit``.
"""

import csv
import difflib
import math
import os
import re

import ruamel.yaml

from experiment.key_tables import (
    CAPTION_CSV, CHOICES, EMBEDDING_FOLDERS, INPUT_FILES, LABEL_FILE, MAPPINGS, PATH_LIST, RANGES,
)

__all__ = ["round_trip", "tag", "raw_texts", "parse_overrides", "check_overrides", "has_rows", "has_lines",
           "missing_caption_columns"]


# --------------------------------------------------------------- YAML reading
def round_trip(text_or_stream):
    """The YAML as hyperpyyaml reads it before resolving anything (ruamel.yaml round trip: tags kept)."""
    return ruamel.yaml.YAML().load(text_or_stream)


def tag(node):
    """The YAML tag of a round-trip node (``!ref``, ``!new:...``), or None."""
    found = getattr(node, "tag", None)
    return getattr(found, "value", found) if found is not None and not isinstance(found, str) else found


def raw_texts(overrides):
    """``{key: value text}`` of ``key: value`` override lines (None for a key whose value spans lines).

    The user's own spelling of each value, for messages and for overrides passed on unchanged.

    Example
    -------
    >>> raw_texts("seed: 3\\nlr:  0.10")
    {'seed': '3', 'lr': '0.10'}
    """
    raw, key = {}, None
    for line in overrides.splitlines():
        match = re.match(r"^([A-Za-z_][\w.-]*)\s*:\s?(.*)$", line)
        if match:
            key = match.group(1)
            raw[key] = match.group(2).strip()
        elif key is not None and line.strip():
            raw[key] = None
    return raw


def parse_overrides(overrides):
    """The overrides as hyperpyyaml reads them; a line that is not YAML is named with how to quote it."""
    try:
        return round_trip(overrides)
    except ruamel.yaml.YAMLError:
        bad = []
        for line in overrides.splitlines():
            try:
                round_trip(line)
            except ruamel.yaml.YAMLError as err:
                key, _, value = line.partition(":")
                if key.strip() in MAPPINGS:  # quoting would not help: the value is read as YAML again
                    bad.append(_mapping_text(key.strip(), value.strip(), getattr(err, "problem", err)))
                    continue
                bad.append(f"--{key.strip()}={value.strip()}: not a YAML value ({getattr(err, 'problem', err)}); "
                           f"quote it, e.g. --{key.strip()}='\"{value.strip()}\"'")
        raise SystemExit("\n".join(bad) or f"The overrides are not valid YAML: {overrides!r}") from None


def _mapping_text(key, text, problem):
    return f"--{key}={text}: expected {MAPPINGS[key]}; {text} is not valid YAML ({problem})"


def _mapping_problem(key, value):
    """What is wrong with the value of a :data:`~experiment.key_tables.MAPPINGS` key, or None.

    The command line passes ``--audio_options={...}`` as one string (read where the model is built):
    it must read as a mapping (or null).
    """
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            return f"expected {MAPPINGS[key]}; it is not valid YAML ({getattr(err, 'problem', None) or err})"
    if value is None or isinstance(value, dict):
        return None
    got = "a list" if isinstance(value, list) else f"the text {value!r}" if isinstance(value, str) else repr(value)
    return f"expected {MAPPINGS[key]}; got {got}"


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
    if default is None or tag(default):
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
    if tag(value):
        return None  # a !ref (or other tag) is resolved by hyperpyyaml
    if isinstance(value, float) and not math.isfinite(value):
        # .inf / .nan parse as floats: no key's meaning has them (a learning rate of inf trains nothing).
        rng = RANGES.get(key)
        wanted = rng.text if rng is not None else "a number"
        return f"expected {wanted}; {value} is not a finite number"
    if key in MAPPINGS:
        return _mapping_problem(key, value)
    if key in CHOICES and not tag(default):
        if value not in CHOICES[key]:
            return "expected one of " + ", ".join("null" if c is None else str(c) for c in CHOICES[key])
        return None
    rng = RANGES.get(key)
    # A !ref default (base_lr: !ref <batch_size> * 0.001 / 1024) still stands for a number of that range.
    if rng is not None and tag(default) in (None, "!ref"):
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


def missing_caption_columns(path):
    """The columns a caption CSV needs (``wav_path``, ``caption``) that the header of ``path`` lacks, and the header.

    Example
    -------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write("ID,wav_path,text\\na,a.wav,a dog\\n")
    >>> missing_caption_columns(p)
    (['caption'], ['ID', 'wav_path', 'text'])
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        header = next(csv.reader(f), [])
    return sorted({"wav_path", "caption"} - set(header)), header


def _file_problem(key, path):
    if not os.path.exists(path):
        return f"file not found ({os.path.abspath(path)}); {key} names {INPUT_FILES[key]}"
    if not os.path.isfile(path):
        return f"{path} is a folder; {key} names {INPUT_FILES[key]}"
    check = has_lines if INPUT_FILES[key] in (PATH_LIST, LABEL_FILE) else has_rows
    if not check(path):
        return f"no rows in {path}: it must be {INPUT_FILES[key]}"
    if INPUT_FILES[key] == CAPTION_CSV:
        missing, header = missing_caption_columns(path)
        if missing:
            return (f"{path} lacks the column(s) {', '.join(missing)} (its header: {','.join(header)}): "
                    f"it must be {CAPTION_CSV}")
    return None


def _input_problems(key, default, value):
    """``[(shown value, problem)]`` of an input file or folder override."""
    if value is None or tag(value) or not (default is None or tag(default) == "!PLACEHOLDER"):
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


def _nested_problem(default, value):
    """Unknown keys of a mapping override (``--train_dataloader_opts={batch_size: 4}``), or None."""
    if not (isinstance(default, dict) and isinstance(value, dict)) or tag(default) or tag(value):
        return None
    if not default:
        return None  # an empty mapping names no keys: it takes any (the pipeline's slurm parameters)
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
def check_overrides(param_file, overrides, defaults=None):
    """Checks the ``--key=value`` overrides of a run against its YAML file before anything is built.

    Arguments
    ---------
    param_file : str
        The hyperpyyaml file (named in the messages).
    overrides : str or dict or None
        The overrides (a YAML string, as :class:`experiment.command_line.CommandLine` writes them).
    defaults : dict, optional
        The YAML's values as :func:`round_trip` reads them (default: read from ``param_file``).

    Raises
    ------
    SystemExit
        Naming every unknown key (with the closest keys), every value of the
        wrong type or out of range, every missing or empty input file and
        every missing embedding folder.
    """
    if not overrides:
        return
    raw = raw_texts(overrides) if isinstance(overrides, str) else {}
    given = parse_overrides(overrides) if isinstance(overrides, str) else overrides
    if not given:
        return
    if not isinstance(given, dict):
        raise SystemExit(f"{param_file}: the overrides must be --key=value flags; got {overrides!r}.")
    if defaults is None:
        with open(param_file, encoding="utf-8") as f:
            defaults = round_trip(f) or {}
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
