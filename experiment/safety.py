"""Safe loading for every file a recipe reads with ``torch.load``, ours or SpeechBrain's.

Our own loaders pass ``weights_only=True`` (tensors and plain containers
only). SpeechBrain's recoverables (``optimizer.ckpt``, schedulers, ...) call
``torch.load`` without it, so PyTorch's environment variable
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would turn them into full unpickling:
a tampered ``optimizer.ckpt`` in a run folder would execute code on resume.
:func:`enforce_weights_only`, called by every recipe's setup, removes that
variable from the process and sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``, which
makes every later ``torch.load`` of the process weights-only; and it wraps
SpeechBrain's load hooks so that a refused or unreadable file stops the run
with an error naming the file (:class:`models.checkpoints.UnreadableCheckpointError`) instead
of a traceback from inside PyTorch that suggests ``weights_only=False``.

The inference API does not touch the environment of the process that
imports it: it loads with an explicit ``weights_only=True``, which the
variable cannot override.
"""

import functools
import os
import sys

from dataset.disk import DiskFullError, is_disk_full
from experiment.checkpoints import damaged_hint
from models.checkpoints import CheckpointMismatchError, UnreadableCheckpointError, unreadable

__all__ = ["USER_ERRORS", "enforce_weights_only", "run_cli"]

_TRUE = ("1", "y", "yes", "true")
# torch's load_state_dict errors (a module's, an optimizer's): the file was read, but holds another architecture.
_MISMATCH = ("Error(s) in loading state_dict", "loaded state dict")
_WRAPPED = "_weights_only_guard"


def _guard(hook):
    """A SpeechBrain load hook ``(obj, path, end_of_epoch)`` whose unreadable files name themselves."""
    if getattr(hook, _WRAPPED, False):
        return hook

    @functools.wraps(hook)
    def guarded(obj, path, *args, **kwargs):
        try:
            return hook(obj, path, *args, **kwargs)
        except USER_ERRORS:
            raise
        except Exception as err:  # noqa: BLE001 (every way a file fails to load: named, never a library traceback)
            if any(text in str(err) for text in _MISMATCH):
                raise CheckpointMismatchError(path, expected=(
                    f"{type(obj).__name__} of this run has another architecture; resume with the flags of the run "
                    "that wrote it (its hyperparams.yaml)")) from None
            raise unreadable(path, err, damaged_hint(path)) from None

    setattr(guarded, _WRAPPED, True)
    return guarded


def _guard_speechbrain_hooks():
    from speechbrain.utils import checkpoints

    for table in (checkpoints.DEFAULT_LOAD_HOOKS, checkpoints.DEFAULT_TRANSFER_HOOKS):
        for cls, hook in list(table.items()):
            table[cls] = _guard(hook)


def enforce_weights_only():
    """Makes every later ``torch.load`` of this process weights-only, whatever the environment says.

    Call it from command-line entry points only (it changes ``os.environ``,
    which child processes inherit: the toy pipeline's stages are covered
    too). Idempotent; call it again after importing more SpeechBrain classes
    to guard their hooks as well.
    """
    value = os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    if value is not None and value.strip().lower() in _TRUE:
        print("WARNING: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is ignored: every checkpoint is loaded with "
              "weights_only=True (tensors and plain containers only).", file=sys.stderr, flush=True)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    _guard_speechbrain_hooks()


#: Errors whose message says everything: a command line prints it without a traceback.
USER_ERRORS = (UnreadableCheckpointError, CheckpointMismatchError, DiskFullError)


def run_cli(main):
    """Runs a recipe's ``main()`` weights-only; a checkpoint error or a full disk ends it with one line (status 1).

    A full disk met by a writer that does not name its folder (a library's
    own file) is told in one line too, with the file when the error names it.
    SpeechBrain logs any other uncaught exception with its traceback, as before.
    """
    enforce_weights_only()
    try:
        return main()
    except USER_ERRORS as err:
        raise SystemExit(f"ERROR: {err}") from None
    except OSError as err:
        if not is_disk_full(err):
            raise
        where = f" in {os.path.dirname(os.path.abspath(err.filename))}" if err.filename else ""
        raise SystemExit(f"ERROR: No space left on device{where} ({err.strerror}"
                         + (f": {err.filename}" if err.filename else "") + "). Free space on the disk of the "
                         "output folder and run the same command again: it goes on from what is complete.") from None
