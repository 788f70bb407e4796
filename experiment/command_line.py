"""A recipe's command line, ``<yaml> [--key=value ...] [run options]``, turned into the run's hyperparameters.

:class:`CommandLine` reads the command line once and the YAML once, then runs
plain steps, in this order:

1. :func:`tokenize`: the YAML, SpeechBrain's run options and our
   ``--key=value`` overrides; ``-h`` / ``--help`` prints the recipe's run
   command and the YAML's keys (:mod:`experiment.usage`) and stops;
2. :func:`expand_preset`: ``--model=<preset>`` becomes the preset's model
   keys (:mod:`models.presets`; flags given explicitly win);
3. :func:`translate`: the paper code's keys become ours
   (:data:`experiment.paper_keys.PAPER_KEYS`) and its ``time_stamp`` the
   output folder (:func:`derive_output_folder`);
4. :func:`experiment.checks.check_overrides`: unknown keys, values of the
   wrong type or out of range, missing or empty inputs stop the run before
   anything is built;
5. :meth:`CommandLine.load`: hyperpyyaml builds the run's objects.
   :func:`setup` is what every recipe runs first: weights-only loading,
   CUDA-only options off on a CPU-only machine, DDP, then steps 1-5.

A SpeechBrain 1.1.2 pitfall handled here (docs/hardening.md): ``--key=a=b``
reaches the YAML as ``a b`` in SpeechBrain; here only the first ``=``
separates key and value, so ``--pann_ckpt_path=/x/Cnn14_mAP=0.431.pth``
names that file. Only public SpeechBrain API is used: the run options are
told apart from the overrides by the names SpeechBrain documents for them
(``speechbrain.utils.run_opts.HELP_TEXTS`` and :class:`RunOptions`'s
defaults), then parsed by ``speechbrain.parse_arguments`` itself.
"""

import datetime
import functools
import io
import json
import os
import re
import sys

import speechbrain as sb
import yaml
from speechbrain.utils.run_opts import HELP_TEXTS, RunOptions

from experiment.checkpoints import check_selected_model_file
from experiment.checks import check_overrides, parse_overrides, raw_texts, round_trip, tag
from experiment.paper_keys import PAPER_KEYS, STAMP_NOW, Alias, Elsewhere, Ignored
from experiment.runtime import cpu_fallbacks, warn_now
from experiment.safety import enforce_weights_only
from experiment.usage import HELP_FLAGS, print_recipe_help

__all__ = ["CommandLine", "MODEL_FLAG", "WHOLE_MAPPING_KEYS", "tokenize", "run_option_arity", "expand_preset",
           "classify", "translate", "derive_output_folder", "parse_arguments", "load_hparams", "setup"]

#: The flag that selects an architecture preset (:mod:`models.presets`); not a YAML key.
MODEL_FLAG = "model"
#: Preset keys a YAML may lack without harm (a text-only script has no audio window).
_OPTIONAL_PRESET_KEYS = ("eval_duration",)
#: Keys whose ``--key={...}`` flag replaces the YAML's value whole
#: (read by :func:`models.factory.audio_options_mapping`).
WHOLE_MAPPING_KEYS = ("audio_options",)
# Run options that take a list of values (``--jit_module_keys a b``): SpeechBrain declares them with nargs="*".
_LIST_OPTIONS = ("jit_module_keys", "compile_module_keys")


class CommandLine:
    """One recipe command line: its YAML (read once), SpeechBrain's run options and the overrides in our keys.

    Arguments
    ---------
    argv : list of str, optional
        The command line without the script (default ``sys.argv[1:]``).

    Attributes
    ----------
    param_file : str
    text : str
        The YAML file's text.
    defaults : dict
        Its top-level values as hyperpyyaml reads them before resolving (tags kept).
    run_opts : speechbrain.utils.run_opts.RunOptions
    overrides : str
        One ``key: value`` line per override, in our keys, for ``load_hyperpyyaml``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("seed: 1\\nd_proj: 1024\\n")
    >>> command = CommandLine([path, "--shared_emb_dim=512", "--device=cpu"])
    >>> command.overrides, command.run_opts["device"], command.load()["d_proj"]
    ('d_proj: 512', 'cpu', 512)
    """

    def __init__(self, argv=None):
        argv = sys.argv[1:] if argv is None else list(argv)
        self.param_file, run_args, flags, wants_help = tokenize(argv)
        if wants_help:
            given = None if self.param_file is None else (self.param_file, _read(self.param_file))
            print_recipe_help(given, run_option_arity())
            raise SystemExit(0)
        if self.param_file is None:
            raise SystemExit(
                "Give the hyperparameter file first: python recipes/<script>.py hparams/<...>.yaml [--key=value ...]"
            )
        self.text = _read(self.param_file)
        self.defaults = round_trip(self.text) or {}
        flags = expand_preset(flags, {str(k) for k in self.defaults}, self.param_file)
        _, self.run_opts, _ = sb.parse_arguments([self.param_file] + run_args)
        rendered = "\n".join(f"{key}: {value}" for key, value in flags.items())
        self.overrides = _whole_mappings(translate(rendered, self.defaults, self.param_file))

    def load(self):
        """The hyperparameters: the YAML with the overrides, once they are checked, built by hyperpyyaml."""
        return _load(self.param_file, self.text, self.overrides, self.defaults)


# ----------------------------------------------------------------- 1. tokens
@functools.cache
def run_option_arity():
    """``{option: kind}`` of SpeechBrain's command-line run options: ``flag``, ``value`` or ``list``."""
    defaults = RunOptions().as_dict()
    arity = dict.fromkeys(_LIST_OPTIONS, "list")
    for name in HELP_TEXTS:
        if name in defaults:
            arity[name] = "flag" if defaults[name] is False else "value"
    return arity


def _switch_value(name, text):
    """The truth value of ``--flag=text`` for a SpeechBrain switch (``--auto_mix_prec=False``)."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", "null", "none", ""):
        return False
    raise SystemExit(f"--{name}={text}: --{name} is a SpeechBrain switch: give --{name} alone, or =True / =False.")


def tokenize(argv):
    """Splits a command line into (YAML file, SpeechBrain run-option arguments, ``{key: value text}``, help asked).

    Unlike SpeechBrain, only the first ``=`` separates key and value;
    ``--key value`` is ``--key=value``; an empty value (``--key=``) or a bare
    ``--key`` is ``null``; a key given twice takes its last value (as
    argparse does). A switch may be written as a YAML key is (the paper
    code's YAMLs have ``auto_mix_prec: False``): ``=True`` turns it on,
    ``=False`` leaves it off.

    Example
    -------
    >>> tokenize(["h.yaml", "--device", "cpu", "--seed=3", "--noprogressbar", "--lr", "0.1", "--auto_mix_prec=False"])
    ('h.yaml', ['--device', 'cpu', '--noprogressbar'], {'seed': '3', 'lr': '0.1'}, False)
    >>> tokenize(["h.yaml", "--pann_ckpt_path=/x/Cnn14_mAP=0.431.pth", "--ssl_checkpointer=", "--seed=1", "--seed=2"])
    ('h.yaml', [], {'pann_ckpt_path': '/x/Cnn14_mAP=0.431.pth', 'ssl_checkpointer': 'null', 'seed': '2'}, False)
    """
    arity = run_option_arity()
    param_file, run_args, flags, wants_help = None, [], {}, False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in HELP_FLAGS:
            wants_help = True
            continue
        if not arg.startswith("--"):
            if param_file is not None:
                raise SystemExit(f"Unexpected command-line argument {arg!r}: overrides are written --key=value.")
            param_file = arg
            continue
        name, equals, value = arg[2:].partition("=")
        kind = arity.get(name)
        if kind == "flag":
            if not equals or _switch_value(name, value):
                run_args.append("--" + name)
            continue
        values = []
        while not equals and i < len(argv) and not argv[i].startswith("--") and argv[i] not in HELP_FLAGS:
            values.append(argv[i])
            i += 1
            if kind != "list":
                break
        if kind:
            run_args += [arg] + values
        else:
            text = value if equals else "".join(values)
            flags.pop(name, None)
            flags[name] = text if text.strip() else "null"
    return param_file, run_args, flags, wants_help


# ---------------------------------------------------------------- 2. preset
def _yaml_flow(value):
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def expand_preset(flags, yaml_keys, param_file):
    """``--model=<preset>`` replaced by the preset's keys as overrides; flags given explicitly win.

    ``<preset>`` is a name of :func:`models.presets.preset_names` or the path of
    a YAML file of model keys (``hparams/models/<name>.yaml``). The YAML's own
    ``model`` entry (the object it builds) is never overridden by the flag.

    Arguments
    ---------
    flags : dict
        ``{key: value text}`` of the command line (:func:`tokenize`).
    yaml_keys : set of str
        The top-level keys of the recipe's YAML.
    param_file : str
        The YAML (named in the messages).

    Returns
    -------
    dict
        The flags without ``model`` and with the preset's keys first.

    Raises
    ------
    SystemExit
        An unknown preset, or a YAML that builds no model or lacks a model key.

    Example
    -------
    >>> keys = {"audioenc_name", "sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax", "classes_num",
    ...         "out_emb", "text_model", "txt_emb_dim", "d_proj", "audio_width", "text_pooling", "projection",
    ...         "audio_options", "text_max_length", "eval_duration", "model"}
    >>> flags = expand_preset({"model": "laion_630k_audioset", "text_model": "/m/roberta", "seed": "1"}, keys, "h.yaml")
    >>> {k: flags[k] for k in ("sample_rate", "audio_options", "text_model", "seed")}
    {'sample_rate': '48000', 'audio_options': '{size: tiny}', 'text_model': '/m/roberta', 'seed': '1'}
    """
    if MODEL_FLAG not in flags:
        return flags
    from models.presets import load_preset

    flags = dict(flags)
    name = flags.pop(MODEL_FLAG)
    if name == "null":
        return flags
    preset = load_preset(name)
    if MODEL_FLAG not in yaml_keys:
        raise SystemExit(f"--model={name}: {param_file} builds no model (it has no 'model' entry); "
                         "give --model to the script that embeds or trains.")
    lacking = [k for k in preset if k not in yaml_keys and k not in _OPTIONAL_PRESET_KEYS]
    if lacking:
        raise SystemExit(f"--model={name}: {param_file} lacks the model key(s) {lacking}, which the preset sets; "
                         "add them to the YAML (see hparams/models/ and models/factory.py MODEL_KEYS).")
    # The paper code's name of a model key (--shared_emb_dim=...) is given explicitly too.
    given = set(flags) | {entry.key for kind, entry in (classify(k, yaml_keys) for k in flags) if kind == "alias"}
    expanded = {k: _yaml_flow(v) for k, v in preset.items() if k in yaml_keys and k not in given}
    return {**expanded, **flags}


# ------------------------------------------------------------ 3. paper keys
def classify(key, yaml_keys):
    """How ``--key`` is taken by a YAML with ``yaml_keys``.

    Returns
    -------
    ("native", None), ("run_option", None) (a SpeechBrain run option such as ``auto_mix_prec``, which the
    paper code's YAMLs also hold), ("alias", Alias), ("ignored", Ignored), ("elsewhere", Elsewhere) or
    ("unknown", None).

    Example
    -------
    >>> classify("freeze_txt_emb", {"freeze_text_base"})[0], classify("seed", {"seed"})[0], classify("x", set())[0]
    ('alias', 'native', 'unknown')
    """
    if key in yaml_keys:
        return "native", None
    if key in run_option_arity():
        return "run_option", None
    for entry in PAPER_KEYS.get(key, ()):
        if entry.applies(yaml_keys):
            return {Alias: "alias", Ignored: "ignored", Elsewhere: "elsewhere"}[type(entry)], entry
    return "unknown", None


def _plain(value):
    """A round-trip YAML value as plain Python (for conversions and comparisons)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    return value


def _same(a, b):
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


def _as_text(value):
    """A plain value as one line of YAML (JSON is a subset of YAML's flow style)."""
    return json.dumps(value, ensure_ascii=False)


def _ours(key, value, entry, raw):
    """``{our key: (value, text or None)}`` an alias of the paper code gives; a problem raises SystemExit."""
    if entry.convert is None:
        return {entry.key: (value, raw.get(key))}
    if tag(value):
        raise SystemExit(f"--{key}: give a plain value (it is converted to --{entry.key}).")
    try:
        result = entry.convert(_plain(value))
    except SystemExit as err:
        raise SystemExit(f"--{key}={raw.get(key) or value}: {err}") from None
    converted = result if isinstance(result, dict) else {entry.key: result}
    return {k: (v, _as_text(v)) for k, v in converted.items()}


def translate(overrides, defaults, param_file):
    """The overrides of a run with the paper code's keys translated to ours (see :mod:`experiment.paper_keys`).

    Arguments
    ---------
    overrides : str
        One ``key: value`` line per override.
    defaults : dict
        The YAML's values (:func:`experiment.checks.round_trip`).
    param_file : str
        The YAML (named in the messages).

    Returns
    -------
    str
        The overrides in our keys: aliases renamed and converted, ignored keys
        dropped (each with a warning saying why), ``time_stamp`` turned into the
        output folder. Unchanged (same object) when nothing was translated.

    Raises
    ------
    SystemExit
        A key given twice with different values (an alias and ours), a value
        an alias cannot convert, or a key another part of the project provides
        that this YAML lacks.

    Example
    -------
    >>> print(translate("shared_emb_dim: 512\\nfreeze_txt_emb: True", {"d_proj": 1024, "freeze_text_base": False}, ""))
    d_proj: 512
    freeze_text_base: True
    """
    given = parse_overrides(overrides) if overrides else None
    if not isinstance(given, dict) or not given:
        return overrides
    yaml_keys = {str(k) for k in defaults}
    raw = raw_texts(overrides)
    out, source, problems, changed = {}, {}, [], False
    for key, value in given.items():
        key = str(key)
        kind, entry = classify(key, yaml_keys)
        if kind == "ignored":
            warn_now(f"--{key} (a key of the paper code's YAML) is ignored: {entry.reason}.")
            changed = True
            continue
        if kind == "elsewhere":
            problems.append(f"--{key}: a key of the paper code's YAMLs that {param_file} does not have yet "
                            f"({entry.owner}).")
            continue
        if kind == "alias":
            changed = True
            try:
                produced = _ours(key, value, entry, raw)
            except SystemExit as err:
                problems.append(str(err))
                continue
        else:
            produced = {key: (value, raw.get(key))}
        for our_key, (value_here, text) in produced.items():
            if our_key not in out:
                out[our_key], source[our_key] = (value_here, text), key
            elif not _same(_plain(out[our_key][0]), _plain(value_here)):
                first = source[our_key]
                problems.append(
                    f"--{first} and --{key} both set {our_key} ({'our key' if first == our_key else 'alias'} "
                    f"and {'our key' if key == our_key else 'alias'}), with different values "
                    f"({raw.get(first) or out[our_key][0]!r} vs {raw.get(key) or value!r}): give one of them."
                )
    if problems:
        raise SystemExit("\n".join(problems))
    values = {k: v[0] for k, v in out.items()}
    folder = derive_output_folder(values, defaults)
    if folder is not None:
        if values.get("time_stamp") is not None and values["time_stamp"] != out["time_stamp"][0]:
            out["time_stamp"] = (values["time_stamp"], _as_text(values["time_stamp"]))  # "now", resolved
        out["output_folder"] = (folder, folder)
        changed = True
    if not changed:
        return overrides
    lines = []
    for key, (value, text) in out.items():
        if text is None:
            if tag(value):
                raise SystemExit(f"--{key}: a tagged value must fit on one line")
            text = _as_text(_plain(value))
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def derive_output_folder(given, defaults):
    """The ``output_folder`` override the paper code's ``time_stamp`` / ``output_base`` imply, or None.

    - ``--output_folder`` given: it wins (None).
    - ``--time_stamp=<stamp>`` given (not null): the paper code's run folder,
      ``<output_base>/<stamp>_seed_<seed>+<experiment_name>``; ``now`` is the
      current time as the paper code writes it (``2024-05-01+13-45-10``), a new
      folder per run like the paper code's (give the printed stamp again to
      resume that run).
    - else, in a YAML whose ``output_folder`` must be given (the embedding
      step) and ``--output_base`` given: ``<output_base>/<experiment_name>``.
    - else None: our folder, ``<output_base>/<experiment_name>``, the same for
      the same command, which is what resuming relies on.

    Example
    -------
    >>> derive_output_folder({"time_stamp": "2024-05-01+13-45-10"}, {"output_folder": "x", "time_stamp": None})
    '!ref <output_base>/<time_stamp>_seed_<seed>+<experiment_name>'
    >>> derive_output_folder({}, {"output_folder": "x", "time_stamp": None}) is None
    True
    """
    if "output_folder" in given or "output_folder" not in defaults:
        return None
    needs_folder = tag(defaults.get("output_folder")) == "!PLACEHOLDER"
    stamp = given.get("time_stamp")
    stamped = stamp is not None and "time_stamp" in defaults and bool(str(stamp).strip())
    if needs_folder and given.get("output_base") is None:
        if stamped:
            raise SystemExit("--time_stamp names a folder under --output_base: give --output_base "
                             "(or --output_folder).")
        return None
    if stamped:
        if str(stamp).strip() == STAMP_NOW:
            if os.environ.get("WORLD_SIZE", "1") != "1":
                raise SystemExit("--time_stamp=now under torchrun: every rank must name the same folder; "
                                 "give the stamp itself, e.g. --time_stamp=" + _now())
            given["time_stamp"] = _now()
        if not re.fullmatch(r"[\w.+\-]+", str(given["time_stamp"])):
            raise SystemExit(f"--time_stamp={given['time_stamp']}: a folder-name suffix of letters, digits, "
                             "'.', '+', '-' and '_' (e.g. 2024-05-01+13-45-10, or now)")
        return "!ref <output_base>/<time_stamp>_seed_<seed>+<experiment_name>"
    if needs_folder:
        return "!ref <output_base>/<experiment_name>"
    return None


def _now():
    return datetime.datetime.now().strftime("%Y-%m-%d+%H-%M-%S")


def _whole_mappings(overrides):
    """Override lines of :data:`WHOLE_MAPPING_KEYS` with a mapping value, quoted as one YAML string.

    SpeechBrain merges a mapping override into the YAML's value key by key and
    refuses keys it lacks (``audio_options: null`` has none), so such a flag
    is passed as a string and parsed where the model is built.

    Example
    -------
    >>> print(_whole_mappings("seed: 1\\naudio_options: {size: base, depths: [2, 2]}"))
    seed: 1
    audio_options: "{size: base, depths: [2, 2]}"
    """
    lines = []
    for line in overrides.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in WHOLE_MAPPING_KEYS and value.strip().startswith("{"):
            line = f"{key}: {json.dumps(value.strip())}"
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------- 4-5. loading
def _read(param_file):
    if not os.path.isfile(param_file):
        raise SystemExit(f"Hyperparameter file not found: {param_file} (the first argument, e.g. hparams/...yaml).")
    with open(param_file, encoding="utf-8") as f:
        return f.read()


def _load(param_file, text, overrides, defaults=None):
    """The YAML ``text`` of ``param_file`` built by hyperpyyaml with the overrides, once they are checked."""
    from hyperpyyaml import load_hyperpyyaml

    check_overrides(param_file, overrides, defaults)
    stream = io.StringIO(text)
    stream.name = param_file  # hyperpyyaml finds an !include next to the file by its name
    try:
        return load_hyperpyyaml(stream, overrides)
    except (KeyError, ValueError) as err:
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        if "not in" in message or "Override" in message or "override" in message:
            raise SystemExit(f"{param_file}: {message}\nEvery --flag must be a key of the YAML file.") from err
        raise


def load_hparams(param_file, overrides):
    """Loads a hyperpyyaml file with overrides (``key: value`` lines), once they are checked against it.

    Unknown keys, values of the wrong type or out of range, empty or missing
    input files and missing embedding folders stop the run here, before the
    YAML builds anything (:func:`experiment.checks.check_overrides`).
    """
    return _load(param_file, _read(param_file), overrides)


def parse_arguments(argv=None):
    """``(param_file, run_opts, overrides)`` of a command line, like ``speechbrain.parse_arguments``.

    ``=`` inside a value is kept, ``--model=<preset>`` is expanded and the
    paper code's keys are translated to ours (:class:`CommandLine`).
    """
    command = CommandLine(argv)
    return command.param_file, command.run_opts, command.overrides


def setup(argv=None, distributed=True):
    """The first steps of every recipe: parse the command line, start DDP, load the YAML.

    Arguments
    ---------
    argv : list of str, optional
        The command line without the script.
    distributed : bool
        Initialise the DDP process group (under torchrun).

    Returns
    -------
    hparams : dict
    run_opts : RunOptions
        With the CUDA-only options turned off on a CPU-only machine.
    hparams_file : str
    overrides : str
    """
    # Every torch.load of the run is weights-only, SpeechBrain's recoverables included.
    enforce_weights_only()
    command = CommandLine(argv)
    run_opts = cpu_fallbacks(command.run_opts)
    if distributed:
        sb.utils.distributed.ddp_init_group(run_opts)
    hparams = command.load()
    enforce_weights_only()  # again: the YAML may have imported classes with their own load hooks
    if not hparams.get("resume_interrupt"):  # (a resumed run checks the checkpoint it resumes from)
        # A damaged model file of the run the weights come from is named before the recipe writes anything.
        check_selected_model_file(hparams)
        check_selected_model_file(hparams, "teacher_checkpoints_dir", "teacher_select")
    return hparams, run_opts, command.param_file, command.overrides
