"""Command lines and hyperparameters of every recipe: flags, run options, device, YAML loading.

SpeechBrain 1.1.2 pitfalls handled here (see the README):

- ``--key=a=b`` reaches the YAML as ``a b`` in SpeechBrain: :func:`parse_arguments`
  builds the overrides itself, splitting each flag at its first ``=`` only,
  so ``--pann_ckpt_path=/x/Cnn14_mAP=0.431.pth`` names that file.
- ``--auto_mix_prec`` (fp16) and ``--data_parallel_backend`` need CUDA:
  :func:`cpu_fallbacks` turns them off on a CPU-only machine with a clear
  warning instead of SpeechBrain's error, so the paper's command still runs.

Only public SpeechBrain API is used: the run options are told apart from the
YAML overrides by the names SpeechBrain documents for them
(``speechbrain.utils.run_opts.HELP_TEXTS`` and :class:`RunOptions`'s
defaults), then parsed by ``speechbrain.parse_arguments`` itself.
"""

import dataclasses
import json
import os
import re
import sys

import torch
import speechbrain as sb
from speechbrain.utils.run_opts import HELP_TEXTS, RunOptions

from experiment.aliases import translate_overrides
from models.precision import check_precision

__all__ = [
    "MODEL_FLAG", "expand_model_preset", "overrides_to_yaml", "split_arguments", "parse_arguments", "cpu_fallbacks",
    "load_hparams", "setup",
    "select_device", "rank_and_world", "warn_now", "inference_precision",
]

# Run options that take a list of values (``--jit_module_keys a b``): SpeechBrain declares them with nargs="*".
_LIST_OPTIONS = ("jit_module_keys", "compile_module_keys")


def _run_option_arity():
    """``{option: kind}`` of SpeechBrain's command-line run options: ``flag``, ``value`` or ``list``."""
    defaults = RunOptions().as_dict()
    arity = dict.fromkeys(_LIST_OPTIONS, "list")
    for name in HELP_TEXTS:
        if name in defaults:
            arity[name] = "flag" if defaults[name] is False else "value"
    return arity


def _override_values(unknown_args):
    """``{key: raw value}`` of ``--key=value`` / ``--key value`` / ``--key`` (see :func:`overrides_to_yaml`)."""
    values = {}
    i = 0
    while i < len(unknown_args):
        arg = unknown_args[i]
        if not arg.startswith("--"):
            raise SystemExit(f"Unexpected command-line argument {arg!r}: overrides are written --key=value.")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(unknown_args) and not unknown_args[i + 1].startswith("--"):
            key, value = arg[2:], unknown_args[i + 1]
            i += 1
        else:
            key, value = arg[2:], ""
        values.pop(key, None)
        values[key] = value if value.strip() else "null"
        i += 1
    return values


def overrides_to_yaml(unknown_args):
    """Turns ``--key=value`` / ``--key value`` / ``--key`` into YAML override lines.

    Unlike SpeechBrain, only the first ``=`` separates key and value; an empty
    value (``--key=``) or a bare flag becomes ``null``; a key given twice
    takes its last value (as argparse does) instead of a duplicate-key error.

    Example
    -------
    >>> print(overrides_to_yaml(["--pann_ckpt_path=/x/Cnn14_mAP=0.431.pth", "--ssl_checkpointer=", "--seed", "3"]))
    pann_ckpt_path: /x/Cnn14_mAP=0.431.pth
    ssl_checkpointer: null
    seed: 3
    >>> overrides_to_yaml(["--seed=1", "--seed=2"])
    'seed: 2'
    """
    return "\n".join(f"{key}: {value}" for key, value in _override_values(unknown_args).items())


#: The flag that selects an architecture preset (:mod:`models.presets`); not a YAML key.
MODEL_FLAG = "model"
#: Preset keys a YAML may lack without harm (a text-only script has no audio window).
_OPTIONAL_PRESET_KEYS = ("eval_duration",)


def _yaml_flow(value):
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def expand_model_preset(param_file, unknown_args):
    """``--model=<preset>`` replaced by the preset's keys as overrides; flags given explicitly win.

    ``<preset>`` is a name of :func:`models.presets.preset_names` or the path of
    a YAML file of model keys (``hparams/models/<name>.yaml``). The YAML's own
    ``model`` entry (the object it builds) is never overridden by the flag.

    Arguments
    ---------
    param_file : str
        The recipe's YAML (its keys are checked).
    unknown_args : list of str
        The override arguments of the command line.

    Returns
    -------
    list of str
        The override arguments without ``--model`` and with the preset's keys
        (``--key=value``) before the explicit ones.

    Raises
    ------
    SystemExit
        An unknown preset, or a YAML that builds no model or lacks a model key.

    Example
    -------
    >>> import tempfile
    >>> y = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> keys = ["audioenc_name", "sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax", "classes_num",
    ...         "out_emb", "text_model", "txt_emb_dim", "d_proj", "audio_width", "text_pooling", "projection",
    ...         "audio_options", "text_max_length", "eval_duration", "model"]
    >>> _ = open(y, "w").write("\\n".join(f"{k}: null" for k in keys))
    >>> args = expand_model_preset(y, ["--model=laion_630k_audioset", "--text_model=/m/roberta", "--seed=1"])
    >>> [a for a in args if a.split("=")[0] in ("--sample_rate", "--text_model", "--audio_options", "--seed")]
    ['--sample_rate=48000', '--audio_options={size: tiny}', '--text_model=/m/roberta', '--seed=1']
    """
    values = _override_values(unknown_args)
    if MODEL_FLAG not in values:
        return list(unknown_args)
    from models.presets import load_preset

    name = values.pop(MODEL_FLAG)
    if name == "null":
        return [f"--{k}={v}" for k, v in values.items()]
    preset = load_preset(name)
    with open(param_file, encoding="utf-8") as f:
        yaml_keys = set(re.findall(r"^([A-Za-z_][\w]*)\s*:", f.read(), flags=re.M))
    if MODEL_FLAG not in yaml_keys:
        raise SystemExit(f"--model={name}: {param_file} builds no model (it has no 'model' entry); "
                         "give --model to the script that embeds or trains.")
    lacking = [k for k in preset if k not in yaml_keys and k not in _OPTIONAL_PRESET_KEYS]
    if lacking:
        raise SystemExit(f"--model={name}: {param_file} lacks the model key(s) {lacking}, which the preset sets; "
                         "add them to the YAML (see hparams/models/ and models/factory.py MODEL_KEYS).")
    from experiment.aliases import classify

    given = set(values)
    for key in values:  # the paper code's name of a model key (--shared_emb_dim=...) is explicit too
        kind, entry = classify(key, yaml_keys)
        if kind == "alias":
            given.add(entry.key)
    expanded = [f"--{k}={_yaml_flow(v)}" for k, v in preset.items() if k in yaml_keys and k not in given]
    return expanded + [f"--{k}={v}" for k, v in values.items()]


def _flag_value(name, text):
    """The truth value of ``--flag=text`` for a SpeechBrain bare flag (``--auto_mix_prec=False``)."""
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", "null", "none", ""):
        return False
    raise SystemExit(f"--{name}={text}: --{name} is a SpeechBrain switch: give --{name} alone, or =True / =False.")


def split_arguments(argv):
    """Splits a command line into (parameter file, SpeechBrain run-option arguments, YAML override arguments).

    Example
    -------
    >>> split_arguments(["h.yaml", "--device", "cpu", "--seed=3", "--noprogressbar", "--lr", "0.1"])
    ('h.yaml', ['--device', 'cpu', '--noprogressbar'], ['--seed=3', '--lr', '0.1'])

    A switch may be written as a YAML key is (the paper code's YAMLs have
    ``auto_mix_prec: False``): ``=True`` turns it on, ``=False`` leaves it off.

    >>> split_arguments(["h.yaml", "--auto_mix_prec=False", "--noprogressbar=True"])
    ('h.yaml', ['--noprogressbar'], [])
    """
    arity = _run_option_arity()
    param_file, run_args, overrides = None, [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            if param_file is not None:
                raise SystemExit(f"Unexpected command-line argument {arg!r}: overrides are written --key=value.")
            param_file = arg
            i += 1
            continue
        name = arg[2:].split("=", 1)[0]
        kind = arity.get(name)
        if kind == "flag" and "=" in arg:
            # A bare flag written as a YAML key would be (the paper code's auto_mix_prec: False).
            if _flag_value(name, arg.split("=", 1)[1]):
                run_args.append("--" + name)
            i += 1
            continue
        target = run_args if kind else overrides
        target.append(arg)
        i += 1
        if "=" in arg or kind == "flag":
            continue
        if kind == "list":
            while i < len(argv) and not argv[i].startswith("--"):
                run_args.append(argv[i])
                i += 1
        elif i < len(argv) and not argv[i].startswith("--"):
            target.append(argv[i])
            i += 1
    if param_file is None:
        raise SystemExit(
            "Give the hyperparameter file first: python recipes/<script>.py hparams/<...>.yaml [--key=value ...]"
        )
    return param_file, run_args, overrides


def parse_arguments(argv=None):
    """Like ``speechbrain.parse_arguments`` but keeps ``=`` inside override values.

    ``--model=<preset>`` is expanded into the preset's model keys first
    (:func:`expand_model_preset`; explicit flags win). The paper code's YAML
    keys are translated to ours here
    (:func:`experiment.aliases.translate_overrides`), so everything after
    (checks, the saved ``hyperparams.yaml``, the run) sees our keys.

    Arguments
    ---------
    argv : list of str, optional
        The command line without the script (default ``sys.argv[1:]``).

    Returns
    -------
    param_file : str
    run_opts : speechbrain.utils.run_opts.RunOptions
    overrides : str
        A YAML string for ``load_hyperpyyaml``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    param_file, run_args, override_args = split_arguments(argv)
    override_args = expand_model_preset(param_file, override_args)
    _, run_opts, _ = sb.parse_arguments([param_file] + run_args)
    return param_file, run_opts, _whole_mappings(translate_overrides(param_file, overrides_to_yaml(override_args)))


#: Keys whose ``--key={...}`` flag replaces the YAML's value whole
#: (read by :func:`models.factory.audio_options_mapping`).
WHOLE_MAPPING_KEYS = ("audio_options",)


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


def warn_now(message):
    """Prints a warning on stderr at once (before the experiment's logging is configured)."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def cpu_fallbacks(run_opts):
    """Disables CUDA-only options on a machine without CUDA, with a warning that says so."""
    if torch.cuda.is_available():
        return run_opts
    if run_opts.get("device") and "cuda" in str(run_opts["device"]):
        raise SystemExit(f"--device={run_opts['device']} was requested but this machine has no CUDA device.")
    if run_opts["auto_mix_prec"] or run_opts["precision"] == "fp16":
        warn_now(
            "--auto_mix_prec / --precision=fp16 need a CUDA GPU; no GPU here, so training runs in fp32 "
            "(on CPU, --precision=bf16 is the mixed-precision option)."
        )
        run_opts = dataclasses.replace(run_opts, auto_mix_prec=False, precision="fp32")
    if run_opts["data_parallel_backend"]:
        warn_now(
            "--data_parallel_backend needs CUDA GPUs; none here, so it is ignored. "
            "For several GPUs prefer DDP: torchrun --nproc_per_node=N recipes/<script>.py <yaml> [flags]."
        )
        run_opts = dataclasses.replace(run_opts, data_parallel_backend=False)
    if run_opts.get("distributed_launch") or os.environ.get("LOCAL_RANK") is not None:
        if run_opts["distributed_backend"] == "nccl":
            warn_now("No CUDA: using the gloo backend for torchrun on CPU.")
            run_opts = dataclasses.replace(run_opts, distributed_backend="gloo")
    return run_opts


def load_hparams(param_file, overrides):
    """Loads a hyperpyyaml file with overrides, once they are checked against it.

    Unknown keys, values of the wrong type or out of range, empty or missing
    input files and missing embedding folders stop the run here, before the
    YAML builds anything (:func:`experiment.inputs.check_overrides`).
    """
    from hyperpyyaml import load_hyperpyyaml

    from experiment.inputs import check_overrides

    if not os.path.isfile(param_file):
        raise SystemExit(f"Hyperparameter file not found: {param_file} (the first argument, e.g. hparams/...yaml).")
    check_overrides(param_file, overrides)
    with open(param_file, encoding="utf-8") as fin:
        try:
            return load_hyperpyyaml(fin, overrides)
        except (KeyError, ValueError) as err:
            message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            if "not in" in message or "Override" in message or "override" in message:
                raise SystemExit(f"{param_file}: {message}\nEvery --flag must be a key of the YAML file.") from err
            raise


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
    from experiment.safety import enforce_weights_only

    # Every torch.load of the run is weights-only, SpeechBrain's recoverables included.
    enforce_weights_only()
    hparams_file, run_opts, overrides = parse_arguments(argv)
    run_opts = cpu_fallbacks(run_opts)
    if distributed:
        sb.utils.distributed.ddp_init_group(run_opts)
    hparams = load_hparams(hparams_file, overrides)
    enforce_weights_only()  # again: the YAML may have imported classes with their own load hooks
    return hparams, run_opts, hparams_file, overrides


def inference_precision(hparams, run_opts):
    """The precision of an evaluation or embedding script's model: ``fp32``, ``bf16`` or ``fp16``.

    ``--precision`` (or ``--eval_precision``) on the command line, else the
    YAML's ``precision`` key, else fp32. fp16 needs CUDA: on a CPU-only
    machine it becomes fp32 with a warning (bf16 is the CPU option).

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> inference_precision({"precision": "bf16"}, RunOptions()), inference_precision({}, RunOptions())
    ('bf16', 'fp32')
    """
    given = getattr(run_opts, "overridden_args", None) or set()
    if "precision" in given:
        precision = run_opts["precision"]
    elif "eval_precision" in given:
        precision = run_opts["eval_precision"]
    else:
        precision = hparams.get("precision") or "fp32"
    check_precision(precision)
    if precision == "fp16" and "cuda" not in str(run_opts.get("device") or ""):
        warn_now("precision fp16 needs a CUDA GPU; running in fp32 (on CPU, bf16 is the reduced-precision option).")
        precision = "fp32"
    return precision


def select_device(run_opts):
    """``--device`` (default cpu); under torchrun each rank takes the GPU of its LOCAL_RANK."""
    device = run_opts.get("device") or "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    if device.startswith("cuda") and local_rank is not None:
        device = f"cuda:{int(local_rank)}"
    return device


def rank_and_world():
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
