"""Checkpoints of our runs and of the paper's code: which one to load, which are complete, what else they hold.

Selection uses SpeechBrain's own ``Checkpointer.find_checkpoint``
(``min_key="loss"``, ``max_key="acc"`` or the most recent, with a predicate
that keeps only complete checkpoints holding the model). Which of the three
a recipe asks for comes from its YAML (:func:`resolve_selection`): our
``ssl_select`` when set, else the paper code's ``use_maxacc_ep`` /
``use_minloss_ep``. A key that no checkpoint records stops the run
(the paper's code then silently loaded nothing).

Two layouts of ``CKPT+`` folders hold a model: ours (``model.ckpt``, the
recoverable ``model``) and the paper code's (``clap.ckpt``, its recoverable
``clap``, saved by SpeechBrain 0.5 beside ``epoch_counter``,
``optimizer``, ``lr_scheduler``, ``datapoint_counter``, ``brain`` and
``dataloader-TRAIN``); :func:`model_file` names the one a folder has.

SpeechBrain's Checkpointer writes ``CKPT.yaml`` *before* the parameter
files, so a kill during a save leaves a checkpoint that looks complete but is
not: :class:`CompletionMarker` is registered last, its file exists only if
every other file was written, and :func:`remove_incomplete_checkpoints`
deletes (in a run's own folder) checkpoints that lack it.
"""

import logging
import os
import pathlib
import random
import shutil
import zipfile

import numpy as np
import torch
import yaml
from speechbrain.utils.checkpoints import Checkpointer, mark_as_loader, mark_as_saver, register_checkpoint_hooks

from models.checkpoints import UnreadableCheckpointError, unreadable

__all__ = [
    "COMPLETION_MARKER", "SELECTIONS", "MODEL_RECOVERABLES", "ORIGINAL_SELECTION_KEYS", "checkpoint_dirs",
    "model_file", "is_complete_checkpoint", "remove_incomplete_checkpoints", "find_checkpoint",
    "resolve_selection", "RNGState", "CompletionMarker", "damaged_hint", "check_checkpoint_files",
    "check_resume_checkpoint", "check_selected_model_file",
]

logger = logging.getLogger(__name__)

COMPLETION_MARKER = "zz_complete"
#: ``ssl_select`` values: lowest validation loss, highest zero-shot accuracy, most recent.
SELECTIONS = ("loss", "acc", "latest")
#: The recoverable holding the model: ours (``model.ckpt``), then the paper code's (``clap.ckpt``).
MODEL_RECOVERABLES = ("model", "clap")
#: The paper code's selection keys and the checkpoint each asks for (both False: the most recent).
ORIGINAL_SELECTION_KEYS = {"use_maxacc_ep": "acc", "use_minloss_ep": "loss"}
_META_KEYS = {"loss": "min_key", "acc": "max_key"}
_CKPT_PREFIX = "CKPT+"
# Files SpeechBrain reads as YAML, and the recoverables our runs always write with torch.save (a zip archive).
_YAML_FILES = ("CKPT.yaml", "brain.ckpt")
_TORCH_ZIP_FILES = ("model", "optimizer", "rng", "lr_scheduler", "curation_mixer")


def _save_folder(save_dir):
    """The folder holding ``CKPT+`` folders: ``save_dir`` itself, or its ``save/`` subfolder."""
    save_dir = os.fspath(save_dir)
    has_ckpt = any(name.startswith(_CKPT_PREFIX) for name in _listdir(save_dir))
    if not has_ckpt and os.path.isdir(os.path.join(save_dir, "save")):
        return os.path.join(save_dir, "save")
    return save_dir


def _listdir(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return []


def checkpoint_dirs(save_dir):
    """``CKPT+*`` folders under ``save_dir`` (which may also be one such folder or hold ``save/``).

    Example
    -------
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(run, "save", "CKPT+2026-01-01+00-00-00+00"))
    >>> [os.path.basename(d) for d in checkpoint_dirs(run)]
    ['CKPT+2026-01-01+00-00-00+00']
    """
    save_dir = os.fspath(save_dir)
    if os.path.basename(os.path.normpath(save_dir)).startswith(_CKPT_PREFIX):
        return [save_dir]
    folder = _save_folder(save_dir)
    return sorted(
        os.path.join(folder, name) for name in _listdir(folder)
        if name.startswith(_CKPT_PREFIX) and os.path.isdir(os.path.join(folder, name))
    )


def model_file(ckpt_dir):
    """The model's parameter file of a ``CKPT+`` folder: ``model.ckpt`` (ours) or ``clap.ckpt`` (the paper's code).

    Returns None when the folder has neither.

    Example
    -------
    >>> import tempfile
    >>> ckpt = tempfile.mkdtemp(prefix="CKPT+")
    >>> _ = open(os.path.join(ckpt, "clap.ckpt"), "wb").write(b"x")
    >>> os.path.basename(model_file(ckpt))
    'clap.ckpt'
    """
    for name in MODEL_RECOVERABLES:
        path = os.path.join(ckpt_dir, name + ".ckpt")
        if os.path.isfile(path):
            return path
    return None


def _is_original(ckpt_dir):
    # The paper code's SpeechBrain 0.5 checkpoint: the model as ``clap``, never our ``model``.
    return model_file(ckpt_dir) == os.path.join(ckpt_dir, "clap.ckpt")


def _truncated(path):
    """True for a parameter file a kill cut short: empty, or a torch zip without its central directory."""
    try:
        if os.path.getsize(path) == 0:
            return True
        with open(path, "rb") as f:
            is_zip_start = f.read(4) == b"PK\x03\x04"
    except OSError:
        return True
    return is_zip_start and not zipfile.is_zipfile(path)


def is_complete_checkpoint(ckpt_dir, expected=()):
    """True when the checkpoint was written to the end.

    Our runs write :data:`COMPLETION_MARKER` last, so its file settles it.
    A folder without it is either one a kill interrupted or one written by
    another tool (the paper's code, an older run); it counts as complete only
    if it lacks no file of ``expected`` (the recoverable names of the run
    that wrote it, when known), and none of its files is empty or a truncated
    torch zip. A ``brain.ckpt`` without the marker beside our ``model.ckpt``
    is an interrupted save of ours (our Brain writes it before the marker);
    beside the paper code's ``clap.ckpt`` it is SpeechBrain 0.5's own
    recoverable (that code writes no marker), so such a folder is judged by
    its files.

    Example
    -------
    >>> import tempfile
    >>> ckpt = tempfile.mkdtemp(prefix="CKPT+")
    >>> for name, text in [("CKPT.yaml", "loss: 1.0\\n"), ("clap.ckpt", "x"), ("brain.ckpt", "step: 0\\n")]:
    ...     _ = open(os.path.join(ckpt, name), "w").write(text)
    >>> is_complete_checkpoint(ckpt)
    True
    >>> os.rename(os.path.join(ckpt, "clap.ckpt"), os.path.join(ckpt, "model.ckpt"))
    >>> is_complete_checkpoint(ckpt)
    False
    """
    if not os.path.isfile(os.path.join(ckpt_dir, "CKPT.yaml")):
        return False
    if os.path.exists(os.path.join(ckpt_dir, COMPLETION_MARKER + ".ckpt")):
        return True
    if os.path.exists(os.path.join(ckpt_dir, "brain.ckpt")) and not _is_original(ckpt_dir):
        return False
    if any(not os.path.exists(os.path.join(ckpt_dir, name + ".ckpt")) for name in expected):
        return False
    return not any(_truncated(os.path.join(ckpt_dir, name)) for name in _listdir(ckpt_dir) if name.endswith(".ckpt"))


def remove_incomplete_checkpoints(save_dir, expected=()):
    """Deletes checkpoint folders that a kill interrupted while they were written; returns them.

    ``expected``: the recoverable names the run's checkpointer writes (a
    folder missing one of them, and the marker, was cut short).
    """
    removed = []
    for ckpt in checkpoint_dirs(save_dir):
        if not is_complete_checkpoint(ckpt, expected):
            logger.warning("Removing the incomplete checkpoint %s (the run was killed while saving it).", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
            removed.append(ckpt)
    return removed


def damaged_hint(path):
    """What to do about an unreadable file of a run's checkpoint folder (the end of its error message)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    return (f"Delete that checkpoint folder ({folder}) to resume from the one before it, or start a new run in "
            "another output folder; a file from an untrusted source must not be loaded")


def _read_yaml_file(path, hint=None):
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        raise unreadable(path, err, hint or damaged_hint(path)) from None
    if not isinstance(data, dict):
        raise UnreadableCheckpointError(path, "it is damaged: not the YAML mapping SpeechBrain writes",
                                        hint or damaged_hint(path))
    return data


def _check_zip_file(path, name, hint=None):
    try:
        with open(path, "rb") as f:
            starts_as_zip = f.read(4) == b"PK\x03\x04"
        if not starts_as_zip:
            if name[: -len(".ckpt")] in _TORCH_ZIP_FILES:
                raise UnreadableCheckpointError(path, "it is damaged: not the torch zip archive torch.save writes",
                                                hint or damaged_hint(path))
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member: a CRC error or a cut-short member raises or is named
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise UnreadableCheckpointError(path, f"it is damaged: a torch zip archive cut short or corrupted ({err})",
                                        hint or damaged_hint(path)) from None
    if bad is not None:
        raise UnreadableCheckpointError(path, f"it is damaged: member {bad} of its zip archive fails its CRC check",
                                        hint or damaged_hint(path))


def check_checkpoint_files(ckpt_dir):
    """Reads every file of a checkpoint folder far enough to know it is intact, before anything is written.

    ``CKPT.yaml`` and ``brain.ckpt`` must be plain YAML mappings (``yaml.safe_load``: a tag such as
    ``!!python/object/apply`` is refused, nothing runs); every torch zip archive must pass
    ``ZipFile.testzip`` (a file cut short, or with a flipped byte, does not), and the files our runs always
    write as zip archives must be ones.

    Raises
    ------
    models.checkpoints.UnreadableCheckpointError
        Naming the file, what is wrong with it, and the folder to delete.

    Example
    -------
    >>> import tempfile
    >>> ckpt = tempfile.mkdtemp(prefix="CKPT+")
    >>> _ = open(os.path.join(ckpt, "brain.ckpt"), "w").write("step: !!python/object/apply:os.system [ls]\\n")
    >>> try:
    ...     check_checkpoint_files(ckpt)
    ... except UnreadableCheckpointError as err:
    ...     print(err.reason)  # doctest: +NORMALIZE_WHITESPACE
    it holds the YAML tag !!python/object/apply:os.system, which no checkpoint has; it was refused and nothing
    in it ran (tampered with, or not written by SpeechBrain)
    """
    for name in sorted(_listdir(ckpt_dir)):
        path = os.path.join(ckpt_dir, name)
        if name in _YAML_FILES:
            _read_yaml_file(path)
        elif name.endswith(".ckpt"):
            _check_zip_file(path, name)


def check_resume_checkpoint(save_dir):
    """The checkpoint a resumed run will load, checked (:func:`check_checkpoint_files`); None if there is none.

    :func:`remove_incomplete_checkpoints` drops the incomplete checkpoints,
    SpeechBrain then reads the ``CKPT.yaml`` of the others and loads the
    most recent one: those are the files checked, so that a damaged one is
    named before the run writes anything.
    """
    complete = []
    for ckpt in checkpoint_dirs(save_dir):
        if is_complete_checkpoint(ckpt):  # (the others are deleted before SpeechBrain reads them)
            meta = _read_yaml_file(os.path.join(ckpt, "CKPT.yaml"))
            complete.append((meta.get("unixtime", 0), ckpt))
    if not complete:
        return None
    latest = max(complete, key=lambda pair: (isinstance(pair[0], (int, float)) and pair[0] or 0, pair[1]))[1]
    check_checkpoint_files(latest)
    return latest


def check_selected_model_file(hparams, key="ssl_checkpoints_dir", select_key="ssl_select"):
    """The model file of the checkpoint ``hparams[key]`` selects, checked as a zip archive before anything is written.

    A recipe loads it after it has created its output folder; a damaged file is named here instead, with the
    flag that gave the folder. Problems this cannot judge (no such folder, no checkpoint recording the key asked
    for) are left to the load, which names them.
    """
    folder = hparams.get(key)
    if not folder or not isinstance(folder, (str, os.PathLike)):
        return
    for ckpt in checkpoint_dirs(folder):  # SpeechBrain reads each one's CKPT.yaml to choose
        if is_complete_checkpoint(ckpt):  # (an incomplete one is never chosen)
            hint = f"Given by --{key}; delete that checkpoint folder ({ckpt})"
            _read_yaml_file(os.path.join(ckpt, "CKPT.yaml"), hint)
    try:
        select, asked_by = resolve_selection({**hparams, select_key: hparams.get(select_key)}, select_key)
        ckpt = find_checkpoint(folder, select, asked_by=asked_by, select_flag=select_key)
    except (FileNotFoundError, SystemExit, ValueError, OSError):
        return
    path = model_file(ckpt)
    if path is not None:
        _check_zip_file(path, os.path.basename(path), f"Given by --{key}; delete that checkpoint folder ({ckpt}) so "
                                                       f"that another is chosen, or choose one with --{select_key}")


def _loadable(ckpt):
    # A complete checkpoint whose model weights can be read (ours or the paper code's).
    return (isinstance(ckpt.meta, dict) and any(name in ckpt.paramfiles for name in MODEL_RECOVERABLES)
            and is_complete_checkpoint(str(ckpt.path)))


def _recorded(checkpoints):
    """What each checkpoint's ``CKPT.yaml`` records, for the error message: ``CKPT+a (loss=1.2, acc=0.3)``."""
    shown = []
    for ckpt in checkpoints:
        meta = {k: v for k, v in ckpt.meta.items() if k not in ("unixtime", "end-of-epoch")}
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in meta.items())
        shown.append(f"{ckpt.path.name} ({values or 'no metric'})")
    return "; ".join(shown)


def find_checkpoint(save_dir, select="loss", asked_by=None, select_flag="ssl_select"):
    """Picks a checkpoint folder of one of our runs, or of the paper code's, with SpeechBrain's ``find_checkpoint``.

    Arguments
    ---------
    save_dir : str
        A ``save`` folder, its experiment folder, or one ``CKPT+`` folder.
    select : str
        ``"loss"`` (lowest validation loss), ``"acc"`` (highest zero-shot
        accuracy) or ``"latest"`` (the most recent, the paper code's
        ``find_checkpoints()[0]``). Only checkpoints recording the key
        compete.
    asked_by : str, optional
        The flag that asked for ``select`` (e.g. ``"--use_maxacc_ep=True"``),
        for the error message.
    select_flag : str
        Our flag that chooses instead (``ssl_select`` or ``teacher_select``),
        for the error message.

    Returns
    -------
    str
        The chosen ``CKPT+...`` folder.

    Raises
    ------
    SystemExit
        When no checkpoint records the key ``select`` asks for (the paper's
        code then silently loaded nothing): the message names the folder, the
        key and what each checkpoint records.
    FileNotFoundError
        When ``save_dir`` holds no complete checkpoint with a model.

    Example
    -------
    >>> import tempfile, yaml
    >>> save = tempfile.mkdtemp()
    >>> for name, loss in [("CKPT+a", 2.0), ("CKPT+b", 1.0), ("CKPT+c", 3.0)]:
    ...     os.makedirs(os.path.join(save, name))
    ...     _ = open(os.path.join(save, name, "CKPT.yaml"), "w").write(yaml.dump({"loss": loss, "unixtime": loss}))
    ...     torch.save({}, os.path.join(save, name, "model.ckpt"))
    >>> os.path.basename(find_checkpoint(save)), os.path.basename(find_checkpoint(save, "latest"))
    ('CKPT+b', 'CKPT+c')
    >>> find_checkpoint(save, "acc", asked_by="--use_maxacc_ep=True")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: No checkpoint under ... records 'acc', which --use_maxacc_ep=True asks for. ...
    """
    if select not in SELECTIONS:
        raise ValueError(f"Checkpoint selection must be one of {SELECTIONS}, not {select!r}.")
    save_dir = os.fspath(save_dir)
    only = None
    folder = _save_folder(save_dir)
    if os.path.basename(os.path.normpath(save_dir)).startswith(_CKPT_PREFIX):
        only, folder = os.path.abspath(save_dir), os.path.dirname(os.path.abspath(save_dir))

    def predicate(ckpt):
        return _loadable(ckpt) and (only is None or os.path.abspath(str(ckpt.path)) == only)

    checkpointer = Checkpointer(pathlib.Path(folder)) if os.path.isdir(folder) else None
    candidates = checkpointer.find_checkpoints(ckpt_predicate=predicate) if checkpointer else []
    if not candidates:
        raise FileNotFoundError(
            f"No checkpoint with model.ckpt (or the paper code's clap.ckpt) under {save_dir!r}: give the 'save' "
            "folder of a training run (it holds CKPT+... folders)."
        )
    keys = {_META_KEYS[select]: select} if select in _META_KEYS else {}
    chosen = checkpointer.find_checkpoint(ckpt_predicate=predicate, **keys)
    if chosen is None:
        has = [k for k in _META_KEYS if any(k in c.meta for c in candidates)] + ["latest"]
        ours = " or ".join(f"--{select_flag}={k}" for k in has)
        original = {"loss": "--use_minloss_ep=True", "acc": "--use_maxacc_ep=True",
                    "latest": "both --use_maxacc_ep and --use_minloss_ep False"}
        raise SystemExit(
            f"No checkpoint under {save_dir} records {select!r}, which {asked_by or f'--{select_flag}={select}'} "
            f"asks for. Its checkpoints record: {_recorded(candidates)}. Choose what they have: {ours} "
            f"(the paper code's keys: {'; '.join(original[k] for k in has)}). "
            "(The paper's code loads nothing in this case and goes on with the weights it had.)"
        )
    return str(chosen.path)


def resolve_selection(hparams, select_key="ssl_select"):
    """Which checkpoint the keys of ``hparams`` ask for, and the flag that asked.

    Our key (``ssl_select``, or ``teacher_select`` for the SoftCLAP teacher)
    wins when it is set; when it is empty (null, the default of every YAML)
    the paper code's keys decide as they do there: ``use_maxacc_ep`` the
    highest ``acc``, ``use_minloss_ep`` the lowest ``loss``, neither the most
    recent checkpoint. Both True is rejected (the paper's code silently took
    ``acc``).

    Arguments
    ---------
    hparams : dict
        Holds (some of) ``select_key``, ``use_maxacc_ep``, ``use_minloss_ep``.
    select_key : str
        Our key for this folder.

    Returns
    -------
    select : str
        ``"loss"``, ``"acc"`` or ``"latest"``.
    asked_by : str
        The flag(s) that decided, for messages (``"--use_maxacc_ep=True"``).

    Example
    -------
    >>> resolve_selection({"ssl_select": None, "use_maxacc_ep": True, "use_minloss_ep": False})
    ('acc', '--use_maxacc_ep=True')
    >>> resolve_selection({"ssl_select": "loss", "use_maxacc_ep": True})
    ('loss', '--ssl_select=loss')
    >>> resolve_selection({})
    ('latest', 'neither --use_maxacc_ep nor --use_minloss_ep')
    """
    chosen = hparams.get(select_key)
    if chosen is not None:
        if chosen not in SELECTIONS:
            raise SystemExit(f"--{select_key}={chosen}: expected one of {', '.join(SELECTIONS)} "
                             "(or empty: follow --use_maxacc_ep / --use_minloss_ep).")
        overridden = [k for k in ORIGINAL_SELECTION_KEYS if hparams.get(k) and ORIGINAL_SELECTION_KEYS[k] != chosen]
        if overridden:
            logger.info("--%s=%s takes precedence over %s.", select_key, chosen,
                        ", ".join(f"--{k}=True" for k in overridden))
        return chosen, f"--{select_key}={chosen}"
    asked = [k for k in ORIGINAL_SELECTION_KEYS if hparams.get(k)]
    if len(asked) > 1:
        raise SystemExit(
            "--use_maxacc_ep=True and --use_minloss_ep=True ask for two different checkpoints (highest acc, lowest "
            "loss): set one of them to False, or choose with --" + select_key + "=loss|acc|latest."
        )
    if asked:
        return ORIGINAL_SELECTION_KEYS[asked[0]], f"--{asked[0]}=True"
    return "latest", "neither --use_maxacc_ep nor --use_minloss_ep"


# ---------------------------------------------------------- recoverables
@register_checkpoint_hooks
class RNGState:
    """Saves and restores the torch, numpy and Python random states with a checkpoint.

    Dropout and SpecAugment draw from the global torch RNG; restoring it
    makes a resumed run take the same random draws as an uninterrupted one.
    """

    @mark_as_saver
    def save(self, path):
        """Writes the three generator states to ``path``."""
        name, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        torch.save(
            {
                "torch": torch.get_rng_state(),
                "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
                "python": [version, list(internal), gauss_next],
            },
            path,
        )

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the three generator states from ``path``."""
        del end_of_epoch
        state = torch.load(path, map_location="cpu", weights_only=True)
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


@register_checkpoint_hooks
class CompletionMarker:
    """Registered last: its file exists only if every other file of the checkpoint was written."""

    @mark_as_saver
    def save(self, path):
        """Writes the marker file."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("complete\n")

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Nothing to restore."""
        del path, end_of_epoch
