"""One way to build and load a model, for every recipe, the curation and evaluation scripts, the API and the index.

A model is described by its architecture keys (:data:`models.factory.ARCHITECTURE_KEYS`:
the YAML's own names) and built by :func:`models.factory.create_model`:
a recipe's YAML does it with ``!apply:models.factory.create_model``; the
inference API and the index read the keys from a run's ``hyperparams.yaml``
(:func:`read_architecture`). Its weights then come from the flags, in
increasing precedence (:func:`load_weights`):

``pann_ckpt_path`` (PANNs CNN14: the audio tower) → ``clap_ckpt_path`` (the
MS CLAP file: the whole model) → ``laion_ckpt_path`` (a LAION-CLAP ``.pt``:
the whole model) → ``ssl_checkpoints_dir`` (the ``save``
folder of one of our runs, or of a run of the paper's code, its checkpoint
chosen by ``ssl_select`` or the paper code's ``use_maxacc_ep`` /
``use_minloss_ep``: :func:`experiment.checkpoints.resolve_selection`).

A run of the paper's code saved the model as the SpeechBrain recoverable
``clap`` (``CKPT+.../clap.ckpt``, a bare state dict of its
``models/microsoft_clap.py`` CLAP, whose key names are the MS CLAP file's);
it is loaded as that file is (:func:`models.checkpoints.load_clap_checkpoint`).
Its ``hyperparams.yaml`` names the architecture with that code's keys
(:data:`ORIGINAL_ARCHITECTURE_KEYS`), which :func:`read_architecture` reads.

``clap_ckpt_path`` and ``laion_ckpt_path`` accept every published layout, told
apart by their keys (:func:`models.convert.load_any_clap_checkpoint`): the MS
CLAP 2022 / 2023 ``.pth`` files, LAION-CLAP ``.pt`` files and Hugging Face
``ClapModel`` folders. The model must have the file's architecture
(``--model=<preset>``, :mod:`models.presets`); otherwise the error lists the
keys and the architecture the file implies.
"""

import logging
import os

import yaml

from experiment.paper_keys import PAPER_KEYS, Alias
from experiment.runtime import select_device
from experiment.checkpoints import find_checkpoint, model_file, resolve_selection
from models.checkpoints import (
    CheckpointMismatchError, UnreadableCheckpointError, load_clap_checkpoint, load_model_checkpoint,
    load_pann_checkpoint,
)
from models.convert import FORMAT_NAMES, LAION_EXPECTED, load_any_clap_checkpoint
from models.factory import ARCHITECTURE_KEYS, MODEL_KEYS, architecture, audio_options_mapping, create_model

__all__ = [
    "RUN_CHECKPOINT_HINT", "ORIGINAL_CHECKPOINT_HINT", "ORIGINAL_ARCHITECTURE_KEYS", "load_run_checkpoint",
    "load_weights", "load_model", "read_architecture", "find_run_hparams", "build_model", "load_eval_model",
    "WHOLE_MODEL_FLAGS",
]

#: Flags naming a whole-model file (any published layout), in the order they are applied.
WHOLE_MODEL_FLAGS = ("clap_ckpt_path", "laion_ckpt_path")

logger = logging.getLogger(__name__)

#: What to check when a run's checkpoint does not fit the model the YAML built.
RUN_CHECKPOINT_HINT = (
    "expected a checkpoint of the architecture the YAML and its flags build; these flags set it and must "
    "match the run that wrote the checkpoint (its hyperparams.yaml): " + ", ".join(f"--{k}" for k in MODEL_KEYS)
)

#: The same, for the ``clap.ckpt`` of a run of the paper's code.
ORIGINAL_CHECKPOINT_HINT = (
    "expected the paper code's recoverable 'clap' (its models/microsoft_clap.py CLAP, MS CLAP key names) of the "
    "architecture the YAML and its flags build; these flags set it and must match the run's hyperparams.yaml "
    "(sample_rate, aud_emb_dim -> out_emb, shared_emb_dim -> d_proj, ...): " + ", ".join(f"--{k}" for k in MODEL_KEYS)
)

#: The paper code's names of architecture keys (top level of its YAMLs) → ours: its renamed model keys,
#: taken from the one table of its keys (:data:`experiment.paper_keys.PAPER_KEYS`).
ORIGINAL_ARCHITECTURE_KEYS = {
    theirs: entry.key for theirs, entries in PAPER_KEYS.items() for entry in entries
    if isinstance(entry, Alias) and entry.key in MODEL_KEYS
}
#: Arguments of the paper code's ``models.microsoft_clap.CLAP`` → our keys (the rest are named alike).
_ORIGINAL_CLAP_ARGUMENTS = {"transformer_embed_dim": "txt_emb_dim"}
_ORIGINAL_CLAP_TAG = "new:models.microsoft_clap.CLAP"


def load_run_checkpoint(model, save_dir, select="loss", asked_by=None, select_flag="ssl_select"):
    """Loads the model of the selected checkpoint of a run (ours or the paper code's) into ``model``.

    Arguments
    ---------
    model : torch.nn.Module
        Built with the run's architecture.
    save_dir : str
        The run's ``save`` folder, its experiment folder or one ``CKPT+`` folder.
    select : str
        ``"loss"``, ``"acc"`` or ``"latest"`` (:func:`experiment.checkpoints.find_checkpoint`).
    asked_by, select_flag : str, optional
        The flags that chose ``select``, for the error message.

    Returns
    -------
    str
        The checkpoint folder loaded.
    """
    ckpt = find_checkpoint(save_dir, select, asked_by=asked_by, select_flag=select_flag)
    path = model_file(ckpt)
    try:
        if os.path.basename(path) == "clap.ckpt":
            load_clap_checkpoint(model, path, expected=ORIGINAL_CHECKPOINT_HINT)
        else:
            load_model_checkpoint(model, path, RUN_CHECKPOINT_HINT)
    except UnreadableCheckpointError as err:  # the file itself is the problem, not the architecture flags
        raise UnreadableCheckpointError(err.path, err.reason, f"Delete that checkpoint folder ({ckpt}) so that "
                                        f"another is chosen, or choose one with --{select_flag}") from None
    logger.info("Loaded model weights from %s (%s)", path, asked_by or f"select={select}")
    return ckpt


def _named_by(flag, load, *args):
    """``load(*args)``; a checkpoint error names the flag that gave the file."""
    try:
        return load(*args)
    except UnreadableCheckpointError as err:
        hint = f"Given by --{flag}" + (f"; {err.hint[:1].lower()}{err.hint[1:]}" if err.hint else "")
        raise UnreadableCheckpointError(err.path, err.reason, hint) from None
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(err.path, err.missing, err.unexpected, err.mismatched,
                                      f"{err.expected} (file given by --{flag})".lstrip()) from None


def load_weights(model, hparams, flag_names=None):
    """Applies the initial weights the flags ask for, in increasing precedence.

    Arguments
    ---------
    model : models.clap.CLAP
        The model to fill.
    hparams : dict
        Holds (some of) ``pann_ckpt_path``, ``clap_ckpt_path``, ``laion_ckpt_path``,
        ``ssl_checkpoints_dir`` and the selection keys ``ssl_select``,
        ``use_maxacc_ep``, ``use_minloss_ep``
        (:func:`experiment.checkpoints.resolve_selection`; none: the most recent).
    flag_names : dict, optional
        The command-line flag that gave each of those keys, where it has
        another name (e.g. ``{"ssl_checkpoints_dir": "teacher_checkpoints_dir",
        "ssl_select": "teacher_select"}``), for the error messages.

    Returns
    -------
    str or None
        What was loaded, e.g. ``"MS CLAP x.pth, then checkpoint save/CKPT+..."``;
        None when no flag names any weights.
    """
    def flag(key):
        return (flag_names or {}).get(key, key)

    sources = []
    if hparams.get("pann_ckpt_path"):
        _named_by(flag("pann_ckpt_path"), load_pann_checkpoint, model.audio_encoder.base, hparams["pann_ckpt_path"])
        sources.append(f"PANNs {hparams['pann_ckpt_path']}")
    for key in WHOLE_MODEL_FLAGS:
        if hparams.get(key):
            expected = LAION_EXPECTED if key == "laion_ckpt_path" else None
            fmt = _named_by(flag(key), load_any_clap_checkpoint, model, hparams[key], expected)
            sources.append(f"{'MS CLAP' if fmt == 'clap' else FORMAT_NAMES[fmt]} {hparams[key]}")
    if hparams.get("ssl_checkpoints_dir"):
        select, asked_by = resolve_selection({**hparams, flag("ssl_select"): hparams.get("ssl_select")},
                                             flag("ssl_select"))
        ckpt = _named_by(flag("ssl_checkpoints_dir"), load_run_checkpoint, model, hparams["ssl_checkpoints_dir"],
                         select, asked_by, flag("ssl_select"))
        sources.append(f"checkpoint {ckpt} ({asked_by})")
    if not sources:
        return None
    source = ", then ".join(sources)
    logger.info("Model initialised from %s", source)
    return source


def build_model(hparams):
    """The model of ``hparams``: the YAML's ``model`` object, or one built from its architecture keys.

    Arguments
    ---------
    hparams : dict
        Loaded hparams (with ``model``) or plain architecture keys (see
        :func:`models.factory.architecture`; MS CLAP 2022 fills the gaps).

    Returns
    -------
    models.clap.CLAP
    """
    if hparams.get("model") is not None:
        return hparams["model"]
    config = architecture(hparams)
    keys = {k: config[k] for k in ARCHITECTURE_KEYS if k not in ("text_max_length", "eval_duration")}
    try:
        return create_model(**keys, pretrained_text=False)
    except OSError as err:
        raise OSError(
            f"Cannot build the text model {config['text_model']!r} ({err}). Without access to the Hugging Face "
            "Hub, give text_model= a local folder holding its config.json and tokenizer files "
            "(e.g. a copy of bert-base-uncased)."
        ) from err


def load_model(hparams, weights="optional", purpose="the model"):
    """Builds the model of ``hparams`` and loads the weights its flags name.

    Arguments
    ---------
    hparams : dict
        See :func:`build_model` and :func:`load_weights`.
    weights : str
        ``"optional"`` (no weights: random initialisation, e.g. a teacher
        from scratch), ``"warn"`` (allowed, with a warning that results are
        meaningless) or ``"required"`` (stop with a message naming the flags).
    purpose : str
        What the model is for, in that message (e.g. ``"Curation"``).

    Returns
    -------
    model : models.clap.CLAP
    source : str
        What was loaded (``"random initialisation ..."`` when nothing).
    """
    if weights not in ("optional", "warn", "required"):
        raise ValueError(f"weights must be 'optional', 'warn' or 'required', not {weights!r}.")
    named = any(hparams.get(k) for k in ("pann_ckpt_path", *WHOLE_MODEL_FLAGS, "ssl_checkpoints_dir"))
    if weights == "required" and not any(hparams.get(k) for k in (*WHOLE_MODEL_FLAGS, "ssl_checkpoints_dir")):
        raise SystemExit(
            f"{purpose} needs the teacher's weights: give --ssl_checkpoints_dir=<teacher>/save, "
            "--clap_ckpt_path=<CLAP_weights_2022.pth> or --laion_ckpt_path=<630k-audioset-best.pt> "
            "(with --model=<its preset>)."
        )
    model = build_model(hparams)
    source = load_weights(model, hparams) if named else None
    if source is None:
        if weights == "warn":
            logger.warning(
                "None of --clap_ckpt_path, --laion_ckpt_path, --ssl_checkpoints_dir was given: evaluating a model "
                "with random projections (and a %s text tower). Its accuracy is meaningless.",
                "pretrained" if hparams.get("pretrained_text") else "random",
            )
            return model, "random initialisation (no clap_ckpt_path, no ssl_checkpoints_dir)"
        logger.info("Model initialised from random initialisation")
        return model, "random initialisation"
    return model, source


def load_eval_model(hparams, run_opts, weights="required", purpose="the model"):
    """:func:`load_model`, then the model on the run's device (``--device``) in eval mode.

    Returns
    -------
    model : models.clap.CLAP
    device : str
    source : str
    """
    model, source = load_model(hparams, weights=weights, purpose=purpose)
    device = select_device(run_opts)
    return model.to(device).eval(), device, source


# ------------------------------------------------------------- a run's YAML
class _TagIgnoringLoader(yaml.SafeLoader):
    """Reads hyperpyyaml files as plain YAML: tagged values (``!new:``, ``!ref``, ...) become ``_TAGGED``."""


_TAGGED = object()


class _OriginalClap(dict):
    """The arguments of the paper code's ``clap: !new:models.microsoft_clap.CLAP`` entry."""


def _construct_tagged(loader, suffix, node):
    if suffix == _ORIGINAL_CLAP_TAG and isinstance(node, yaml.MappingNode):
        return _OriginalClap(loader.construct_mapping(node, deep=True))
    return _TAGGED


_TagIgnoringLoader.add_multi_constructor("!", _construct_tagged)


def _plain(value):
    return value is not _TAGGED and value is not None and not isinstance(value, (dict, list))


#: Architecture keys whose value is a mapping (``audio_options``): read when no entry is tagged.
_MAPPING_KEYS = ("audio_options",)


def _plain_architecture_value(key, value):
    if key in _MAPPING_KEYS and isinstance(value, dict):
        return all(v is not _TAGGED for v in value.values())
    return _plain(value)


def _architecture_value(key, value):
    # A mapping key given on the command line is saved as its YAML string (experiment.command_line._whole_mappings).
    return audio_options_mapping(value) if key in _MAPPING_KEYS else value


def read_architecture(yaml_path):
    """The :data:`models.factory.ARCHITECTURE_KEYS` a (hyper)parameter file sets to plain values.

    Works on a run's ``hyperparams.yaml`` (references already resolved) and on
    the recipes' YAML files; nothing in the file is instantiated. The
    ``hyperparams.yaml`` of a run of the paper's code names them otherwise:
    its ``clap: !new:models.microsoft_clap.CLAP`` arguments
    (``transformer_embed_dim`` is our ``txt_emb_dim``) and its top-level
    :data:`ORIGINAL_ARCHITECTURE_KEYS` are read too.

    Arguments
    ---------
    yaml_path : str
        The file.

    Returns
    -------
    dict
        Key → value for the architecture keys found (tagged values such as
        ``!ref <x>`` are left out).

    Example
    -------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "hyperparams.yaml")
    >>> _ = open(p, "w").write("sample_rate: 16000\\nd_proj: !ref <x>\\nmodel: !new:models.clap.CLAP {}\\n")
    >>> read_architecture(p)
    {'sample_rate': 16000}
    >>> _ = open(p, "w").write("audioenc_name: HTSAT\\naudio_options: {size: base, enable_fusion: true}\\n")
    >>> read_architecture(p)
    {'audioenc_name': 'HTSAT', 'audio_options': {'size': 'base', 'enable_fusion': True}}
    >>> _ = open(p, "w").write("shared_emb_dim: 512\\nclap: !new:models.microsoft_clap.CLAP\\n"
    ...                        "    text_model: bert-base-uncased\\n    transformer_embed_dim: 768\\n")
    >>> sorted(read_architecture(p).items())
    [('d_proj', 512), ('text_model', 'bert-base-uncased'), ('txt_emb_dim', 768)]
    """
    with open(yaml_path, encoding="utf-8") as f:
        values = yaml.load(f, Loader=_TagIgnoringLoader) or {}
    found = {ours: values[theirs] for theirs, ours in ORIGINAL_ARCHITECTURE_KEYS.items()
             if _plain(values.get(theirs))}
    found.update({k: _architecture_value(k, values[k]) for k in ARCHITECTURE_KEYS
                  if _plain_architecture_value(k, values.get(k))})
    for clap in (v for v in values.values() if isinstance(v, _OriginalClap)):
        found.update({_ORIGINAL_CLAP_ARGUMENTS.get(k, k): v for k, v in clap.items()
                      if _ORIGINAL_CLAP_ARGUMENTS.get(k, k) in ARCHITECTURE_KEYS and _plain(v)})
    return {k: found[k] for k in ARCHITECTURE_KEYS if k in found}


def find_run_hparams(save_dir):
    """The ``hyperparams.yaml`` of the run owning ``save_dir`` (experiment, ``save`` or ``CKPT+`` folder), or None.

    Example
    -------
    >>> find_run_hparams("/nonexistent/run/save") is None
    True
    """
    folder = os.path.abspath(os.fspath(save_dir))
    for candidate in (folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
        path = os.path.join(candidate, "hyperparams.yaml")
        if os.path.isfile(path):
            return path
    return None
