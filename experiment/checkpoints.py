"""Checkpoints of our runs: which one to load, which are complete, what else they must hold.

Selection uses SpeechBrain's own ``Checkpointer.find_checkpoint``
(``min_key="loss"``, ``max_key="acc"`` or the most recent, with a predicate
that keeps only complete checkpoints holding ``model.ckpt``).

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
from speechbrain.utils.checkpoints import Checkpointer, mark_as_loader, mark_as_saver, register_checkpoint_hooks

__all__ = [
    "COMPLETION_MARKER", "SELECTIONS", "checkpoint_dirs", "is_complete_checkpoint", "remove_incomplete_checkpoints",
    "find_checkpoint", "RNGState", "CompletionMarker",
]

logger = logging.getLogger(__name__)

COMPLETION_MARKER = "zz_complete"
#: ``ssl_select`` values: lowest validation loss, highest zero-shot accuracy, most recent.
SELECTIONS = ("loss", "acc", "latest")
_CKPT_PREFIX = "CKPT+"


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
    another tool (or an older run); it counts as complete only if it lacks no
    file of ``expected`` (the recoverable names of the run that wrote it,
    when known), has no ``brain.ckpt`` (our Brain writes one before the
    marker) and none of its files is empty or a truncated torch zip.
    """
    if not os.path.isfile(os.path.join(ckpt_dir, "CKPT.yaml")):
        return False
    if os.path.exists(os.path.join(ckpt_dir, COMPLETION_MARKER + ".ckpt")):
        return True
    if os.path.exists(os.path.join(ckpt_dir, "brain.ckpt")):
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


def _loadable(ckpt):
    # A complete checkpoint whose model weights can be read.
    return isinstance(ckpt.meta, dict) and "model" in ckpt.paramfiles and is_complete_checkpoint(str(ckpt.path))


def find_checkpoint(save_dir, select="loss"):
    """Picks a checkpoint folder of one of our runs with SpeechBrain's ``Checkpointer.find_checkpoint``.

    Arguments
    ---------
    save_dir : str
        A ``save`` folder, its experiment folder, or one ``CKPT+`` folder.
    select : str
        ``"loss"`` (lowest validation loss), ``"acc"`` (highest zero-shot
        accuracy) or ``"latest"``. A key missing from every checkpoint falls
        back to the latest, with a warning.

    Returns
    -------
    str
        The chosen ``CKPT+...`` folder.

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
    keys = {"loss": {"min_key": "loss"}, "acc": {"max_key": "acc"}, "latest": {}}[select]
    chosen = checkpointer.find_checkpoint(ckpt_predicate=predicate, **keys) if checkpointer else None
    if chosen is None and select != "latest" and checkpointer is not None:
        chosen = checkpointer.find_checkpoint(ckpt_predicate=predicate)
        if chosen is not None:
            logger.warning("No checkpoint under %s records %r; using the latest one.", save_dir, select)
    if chosen is None:
        raise FileNotFoundError(
            f"No checkpoint with model.ckpt under {save_dir!r}: give the 'save' folder of a training run "
            "(it holds CKPT+... folders)."
        )
    return str(chosen.path)


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
