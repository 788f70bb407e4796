"""Loading the published PANNs and MS CLAP checkpoint files.

Both are ``{"model": state_dict}`` pickles.  They are read with
``torch.load(..., weights_only=True)`` (tensors and plain containers only,
no arbitrary code), checked key by key and shape by shape against the model,
and loaded strictly apart from a few documented, harmless differences.  Any
other difference raises :class:`CheckpointMismatchError` listing every
problem at once.

Files written by other training code (LAION-CLAP's ``.pt`` files) also pickle
numpy scalars (e.g. a learning rate in the optimizer state) and may use pickle
protocol 4, which PyTorch's weights-only unpickler cannot read (it lacks the
``FRAME`` opcode). :func:`safe_torch_load` reads them in two safe steps:
``weights_only=True`` with only numpy's scalar / dtype / array reconstruction
functions allowlisted, then, if that unpickler still refuses, a restricted
unpickler of ours (:data:`RESTRICTED_GLOBALS`: tensor and storage rebuilding,
``OrderedDict``, those numpy functions; every other global is refused by name,
before anything is called). Plain ``weights_only=False`` is never used.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import re
import threading
import types
import warnings
import zipfile
from collections.abc import Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointMismatchError",
    "UnreadableCheckpointError",
    "unreadable",
    "RefusedGlobalError",
    "RESTRICTED_GLOBALS",
    "NUMPY_GLOBALS",
    "safe_torch_load",
    "restricted_torch_load",
    "read_state_dict",
    "load_pann_checkpoint",
    "load_clap_checkpoint",
    "load_model_checkpoint",
]

logger = logging.getLogger(__name__)

PANN_EXPECTED = "expected a PANNs Cnn14 checkpoint {'model': state_dict} (e.g. Cnn14_mAP=0.431.pth)"
CLAP_EXPECTED = (
    "expected an MS CLAP checkpoint {'model': state_dict} with audio_encoder.*, "
    "caption_encoder.* and logit_scale keys (e.g. CLAP_weights_2022.pth)"
)
_LIST_LIMIT = 20
_POSITION_IDS = "caption_encoder.base.embeddings.position_ids"
_POOLER_PREFIX = "caption_encoder.base.pooler."


def _format_list(title: str, items: list) -> str:
    if not items:
        return ""
    shown = "\n".join(f"    {item}" for item in items[:_LIST_LIMIT])
    more = f"\n    ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"\n  {title} ({len(items)}):\n{shown}{more}"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint file does not fit the model.

    Arguments
    ---------
    path : str
        The file.
    missing : list of str
        Keys the model has and the file lacks.
    unexpected : list of str
        Keys the file has and the model lacks.
    mismatched : list of tuple
        ``(key, file_shape, model_shape)``.
    expected : str
        What kind of file was expected.

    Example
    -------
    >>> err = CheckpointMismatchError("x.pth", ["a"], ["b"], [("c", (1,), (2,))],
    ...                               "expected a test file")
    >>> print(err)  # doctest: +NORMALIZE_WHITESPACE
    checkpoint x.pth does not match the model; expected a test file
      missing keys (1):
        a
      unexpected keys (1):
        b
      mis-shaped keys (1):
        c: file (1,) vs model (2,)
    """

    def __init__(self, path, missing=(), unexpected=(), mismatched=(), expected=""):
        self.path = str(path)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        self.expected = expected
        shapes = [
            f"{key}: file {tuple(file_shape)} vs model {tuple(model_shape)}"
            for key, file_shape, model_shape in self.mismatched
        ]
        message = f"checkpoint {self.path} does not match the model"
        if expected:
            message += f"; {expected}"
        message += _format_list("missing keys", self.missing)
        message += _format_list("unexpected keys", self.unexpected)
        message += _format_list("mis-shaped keys", shapes)
        super().__init__(message)


class UnreadableCheckpointError(pickle.UnpicklingError):
    """A checkpoint file that is not a PyTorch checkpoint, or holds objects ``weights_only`` refuses.

    Arguments
    ---------
    path : str
        The file.
    reason : str
        What is wrong with it.
    hint : str
        What to do (e.g. the flag that named it).
    """

    def __init__(self, path, reason, hint=""):
        self.path, self.reason, self.hint = str(path), reason, hint
        message = f"cannot load checkpoint {self.path}: {reason}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


def unreadable(path, err, hint=""):
    """The :class:`UnreadableCheckpointError` for the error ``err`` that ``torch.load(path)`` raised.

    PyTorch's own message is not repeated: for refused objects it suggests
    ``weights_only=False``, which would run the file's code.

    Example
    -------
    >>> err = unreadable("x.pth", pickle.UnpicklingError("Weights only load failed ... weights_only=False ..."))
    >>> str(err).startswith("cannot load checkpoint x.pth: it is not a PyTorch checkpoint"), "False" in str(err)
    (True, False)
    """
    text = str(err)
    refused = "Weights only load failed" in text or "weights_only" in text
    yaml_reason = _yaml_reason(err)
    if yaml_reason:
        reason = yaml_reason
    elif isinstance(err, OSError):
        reason = f"it cannot be read ({err.strerror or err})"
    elif _damaged_zip(path, text):
        reason = ("it is damaged: a torch zip archive cut short or corrupted (" +
                  (text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__) + ")")
    elif refused and zipfile.is_zipfile(path):
        reason = ("it holds Python objects other than tensors and plain containers; loading those could run "
                  "arbitrary code, so it is refused")
    else:
        detail = "" if refused else ": " + (text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__)
        reason = f"it is not a PyTorch checkpoint (not written by torch.save, or damaged{detail})"
    return UnreadableCheckpointError(path, reason, hint)


def _yaml_reason(err):
    """Why a YAML file (SpeechBrain's ``brain.ckpt``, ``CKPT.yaml``) was refused, or None if ``err`` is not YAML's."""
    try:
        import yaml
    except ImportError:  # pragma: no cover (a SpeechBrain dependency)
        return None
    if not isinstance(err, yaml.YAMLError):
        return None
    problem = str(getattr(err, "problem", None) or err).strip().splitlines()[0]
    found = re.search(r"tag '([^']+)'", problem)
    if isinstance(err, yaml.constructor.ConstructorError) and found:
        shown = found.group(1).replace("tag:yaml.org,2002:", "!!")
        return (f"it holds the YAML tag {shown}, which no checkpoint has; it was refused and nothing in it ran "
                "(tampered with, or not written by SpeechBrain)")
    return f"it is not valid YAML (damaged: {problem[:200]})"


def _damaged_zip(path, text):
    """True for a file that starts as a torch zip archive but cannot be read as one."""
    try:
        with open(path, "rb") as f:
            starts_as_zip = f.read(4) == b"PK\x03\x04"
    except OSError:
        return False
    return starts_as_zip and ("PytorchStreamReader" in text or "zip archive" in text or not zipfile.is_zipfile(path))


#: numpy's reconstruction functions a checkpoint may pickle (numpy scalars, dtypes, arrays), under both the
#: numpy 1.x (``numpy.core``) and numpy 2.x (``numpy._core``) module names. Calling them builds numbers and
#: arrays only.
NUMPY_GLOBALS = (
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.dtype", "numpy.ndarray",
)

#: Every global the restricted unpickler (the fallback of :func:`safe_torch_load`) resolves: tensor, parameter
#: and storage rebuilding, ``OrderedDict``, ``_codecs.encode`` (how protocol 2 pickles bytes), torch dtypes and
#: ``torch.Size``, and :data:`NUMPY_GLOBALS`. Anything else is refused by name before it is called.
RESTRICTED_GLOBALS = frozenset((
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_device_tensor_from_numpy",
    "torch.Size", "torch.device", "collections.OrderedDict", "_codecs.encode",
    "torch.float32", "torch.float16", "torch.bfloat16", "torch.float64", "torch.int64", "torch.int32",
    "torch.int16", "torch.int8", "torch.uint8", "torch.bool",
) + NUMPY_GLOBALS + tuple(f"numpy.dtypes.{name}DType" for name in (
    "Float64", "Float32", "Float16", "Int64", "Int32", "Int16", "Int8", "UInt64", "UInt32", "UInt16", "UInt8",
    "Bool", "Object",
)))


class RefusedGlobalError(pickle.UnpicklingError):
    """The restricted unpickler met a global outside :data:`RESTRICTED_GLOBALS` (it was not called).

    Arguments
    ---------
    name : str
        ``module.qualname`` of the refused global.
    """

    def __init__(self, name):
        self.name = name
        super().__init__(f"global {name} is not allowed")


def _resolve(name):
    """The object ``module.qualname`` names (``numpy.core`` falls back to ``numpy._core`` and back)."""
    module_name, _, attr = name.rpartition(".")
    candidates = [module_name]
    if module_name.startswith("numpy.core"):
        candidates.append("numpy._core" + module_name[len("numpy.core"):])
    elif module_name.startswith("numpy._core"):
        candidates.append("numpy.core" + module_name[len("numpy._core"):])
    for candidate in candidates:
        try:
            module = importlib.import_module(candidate)
        except ImportError:
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
    return None


def _numpy_safe_globals():
    """``(object, name)`` pairs for ``torch.serialization.safe_globals``: :data:`NUMPY_GLOBALS` under both names."""
    pairs = []
    for name in NUMPY_GLOBALS:
        obj = _resolve(name)
        if obj is not None:
            pairs.append((obj, name))
    return pairs


class _RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` resolving only :data:`RESTRICTED_GLOBALS` (torch supplies storages itself)."""

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if full not in RESTRICTED_GLOBALS:
            raise RefusedGlobalError(full)
        obj = _resolve(full)
        if obj is None:
            raise RefusedGlobalError(full + " (not found in this installation)")
        return obj


def _restricted_load(file, **kwargs):
    return _RestrictedUnpickler(file, **kwargs).load()


#: The ``pickle_module`` given to ``torch.load`` by the fallback.
_RESTRICTED_PICKLE = types.ModuleType("restricted_pickle", "pickle with an allowlist of globals (models.checkpoints)")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = _restricted_load
_RESTRICTED_PICKLE.UnpicklingError = pickle.UnpicklingError
_RESTRICTED_PICKLE.__version__ = getattr(pickle, "format_version", "4.0")

_FORCE_VARIABLE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _custom_unpickler_allowed():
    """Lets ``torch.load`` use our ``pickle_module`` while ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` is set.

    :func:`experiment.safety.enforce_weights_only` sets that variable so that
    loads which do not ask for ``weights_only=True`` (SpeechBrain's) are
    weights-only; it would also turn our restricted unpickler back into the
    weights-only one that cannot read the file. Our unpickler is at least
    as strict about globals, so the variable is lifted for that one call.
    """
    with _ENV_LOCK:
        value = os.environ.pop(_FORCE_VARIABLE, None)
        try:
            yield
        finally:
            if value is not None:
                os.environ[_FORCE_VARIABLE] = value


def restricted_torch_load(path, **kwargs):
    """``torch.load`` with the restricted unpickler (:data:`RESTRICTED_GLOBALS`): :func:`safe_torch_load`'s fallback.

    Raises
    ------
    RefusedGlobalError
        Naming the first global outside the allowlist (nothing was called).

    Example
    -------
    >>> import tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "np4.pt")
    >>> torch.save({"lr": np.float64(0.5), "w": torch.ones(1)}, path, pickle_protocol=4)
    >>> obj = restricted_torch_load(path)
    >>> float(obj["lr"]), obj["w"].tolist()
    (0.5, [1.0])
    """
    with _custom_unpickler_allowed():
        return torch.load(path, weights_only=False, pickle_module=_RESTRICTED_PICKLE, **kwargs)


def safe_torch_load(path, hint="", **kwargs):
    """Load a checkpoint without running code from it.

    First ``torch.load(path, weights_only=True, **kwargs)`` with numpy's
    scalar / dtype / array reconstruction functions allowlisted
    (:data:`NUMPY_GLOBALS`, both numpy module spellings); if PyTorch's
    weights-only unpickler still refuses the file (e.g. pickle protocol 4,
    whose ``FRAME`` opcode it lacks), :func:`restricted_torch_load`, whose
    unpickler resolves only :data:`RESTRICTED_GLOBALS`. Never
    ``weights_only=False`` with the standard unpickler.

    Raises
    ------
    UnreadableCheckpointError
        Not a PyTorch checkpoint, or a file holding a global outside the
        allowlist (named in the message; nothing was run).
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            # "Detected pickle protocol 4": the fallback below handles it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, weights_only=True, **kwargs)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 (whatever torch.load fails with, try the restricted unpickler)
        first = err
    try:
        obj = restricted_torch_load(path, **kwargs)
    except OSError:
        raise
    except RefusedGlobalError as err:
        raise UnreadableCheckpointError(
            path, f"it holds the Python global {err.name}, which is not a tensor, a plain container or a numpy "
                  "number; loading it could run arbitrary code, so it is refused", hint) from None
    except Exception:  # noqa: BLE001 (the restricted unpickler cannot read it either: report the first error)
        raise unreadable(path, first, hint) from None
    logger.info("%s: read with the restricted unpickler (PyTorch's weights-only unpickler refused it: %s)",
                path, str(first).strip().splitlines()[-1][:200] if str(first).strip() else type(first).__name__)
    return obj


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def read_state_dict(path, expected: str = "") -> dict:
    """Read a state dict from a checkpoint file, safely.

    Arguments
    ---------
    path : str or os.PathLike
        ``{"model": sd}``, ``{"state_dict": sd}`` or a bare state dict.
    expected : str
        Description of the expected file, used in error messages.

    Returns
    -------
    dict
        Key -> tensor on CPU, with a leading ``module.`` (DataParallel /
        DDP) stripped from the keys that have it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnreadableCheckpointError
        (a ``pickle.UnpicklingError``) if the file is not a PyTorch
        checkpoint or holds anything but tensors and plain containers
        (``weights_only=True``).
    CheckpointMismatchError
        If no state dict is found in the file.

    Example
    -------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "ck.pth")
    ...     torch.save({"model": {"module.w": torch.zeros(2)}}, p)
    ...     list(read_state_dict(p))
    ['w']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    obj = safe_torch_load(path, hint=expected[:1].upper() + expected[1:] if expected else "", map_location="cpu")
    state = None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                state = obj[key]
                break
        if state is None and _is_state_dict(obj):
            state = obj
    if state is None:
        found = sorted(map(str, obj))[:_LIST_LIMIT] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointMismatchError(
            path, expected=(expected or "expected {'model': state_dict}") + f"; found top level {found}"
        )
    prefix = "module."
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _compare(model: nn.Module, state: Mapping):
    model_state = model.state_dict()
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    mismatched = [
        (k, tuple(getattr(v, "shape", ())), tuple(model_state[k].shape))
        for k, v in state.items()
        if k in model_state and tuple(getattr(v, "shape", ())) != tuple(model_state[k].shape)
    ]
    return missing, unexpected, mismatched


def _tolerate_bn_counters(missing: list, state: Mapping) -> tuple[list, list]:
    # BatchNorm's num_batches_tracked only matters with momentum=None, and
    # files written before it existed legitimately lack it; the rest of that
    # BatchNorm must be in the file, though.
    suffix = "num_batches_tracked"

    def tolerated(key):
        return key.endswith("." + suffix) and key[: -len(suffix)] + "running_mean" in state

    return [k for k in missing if not tolerated(k)], [k for k in missing if tolerated(k)]


def _load(model: nn.Module, state: dict, missing: list, unexpected: list, mismatched: list, path, expected):
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(path, missing, unexpected, mismatched, expected)
    # strict=False only because tolerated keys were already removed or are
    # allowed to be missing; everything else was checked above.
    model.load_state_dict(state, strict=False)
    return model


def load_pann_checkpoint(cnn14: nn.Module, path) -> nn.Module:
    """Load a PANNs Cnn14 file (e.g. ``Cnn14_mAP=0.431.pth``) into ``cnn14``.

    The file's STFT kernels and ``melW`` are the ones used afterwards.

    Arguments
    ---------
    cnn14 : models.cnn14.Cnn14
        Model with matching configuration.
    path : str or os.PathLike
        Checkpoint file.

    Returns
    -------
    models.cnn14.Cnn14
        ``cnn14``, loaded.

    Raises
    ------
    CheckpointMismatchError
        On any missing, unexpected or mis-shaped key (a missing BatchNorm
        ``num_batches_tracked`` is tolerated).
    """
    state = read_state_dict(path, PANN_EXPECTED)
    missing, unexpected, mismatched = _compare(cnn14, state)
    missing, ignored = _tolerate_bn_counters(missing, state)
    if ignored:
        logger.info("%s: no %d BatchNorm num_batches_tracked entries; kept the model's.", path, len(ignored))
    return _load(cnn14, state, missing, unexpected, mismatched, path, PANN_EXPECTED)


def load_clap_checkpoint(clap: nn.Module, path, expected: str = CLAP_EXPECTED, state=None) -> nn.Module:
    """Load an MS CLAP file (e.g. ``CLAP_weights_2022.pth``) into ``clap``.

    Also reads the ``clap.ckpt`` a run of the paper's code saved (a bare
    state dict of its CLAP, with the same key names).

    Tolerated differences (each logged): ``caption_encoder.base.embeddings.
    position_ids`` in the file but not in the model (older transformers
    saved that buffer); ``caption_encoder.base.pooler.*`` present on one side
    only (the pooler output is unused); a missing BatchNorm
    ``num_batches_tracked``.  Everything else must match exactly.

    Arguments
    ---------
    clap : models.clap.CLAP
        Model with matching configuration.
    path : str or os.PathLike
        Checkpoint file.
    expected : str
        What kind of file was expected (added to errors).
    state : dict, optional
        The file's state dict, when already read (:func:`read_state_dict`).

    Returns
    -------
    models.clap.CLAP
        ``clap``, loaded.

    Raises
    ------
    CheckpointMismatchError
        On any other missing, unexpected or mis-shaped key.
    """
    state = dict(state) if state is not None else read_state_dict(path, expected)
    model_keys = set(clap.state_dict())
    # A text tower that pools with its pooler (LAION's RoBERTa) needs the pooler's weights.
    pooler_used = getattr(getattr(clap, "caption_encoder", None), "pooling", None) == "pooler"
    ignored_file = [
        k
        for k in state
        if k not in model_keys and (k == _POSITION_IDS or (k.startswith(_POOLER_PREFIX) and not pooler_used))
    ]
    for key in ignored_file:
        del state[key]
    missing, unexpected, mismatched = _compare(clap, state)
    ignored_model = [k for k in missing if k.startswith(_POOLER_PREFIX) and not pooler_used]
    missing = [k for k in missing if k not in ignored_model]
    missing, ignored_bn = _tolerate_bn_counters(missing, state)
    if ignored_file:
        logger.info("%s: ignored file keys absent from the model: %s", path, ignored_file)
    if ignored_model:
        logger.info("%s: the file has no %s; kept the model's (unused) pooler: %s", path, _POOLER_PREFIX + "*",
                    ignored_model)
    if ignored_bn:
        logger.info("%s: no %d BatchNorm num_batches_tracked entries; kept the model's.", path, len(ignored_bn))
    return _load(clap, state, missing, unexpected, mismatched, path, expected)


def load_model_checkpoint(model: nn.Module, path, expected: str = "") -> nn.Module:
    """Load the ``model.ckpt`` of one of our runs (a bare state dict of the whole model) into ``model``.

    Tolerated differences: a ``module.`` prefix (DataParallel / DDP) and the
    ``embeddings.position_ids`` buffer in the file but not in the model
    (older transformers saved it). Everything else must match.

    Arguments
    ---------
    model : torch.nn.Module
        Built with the architecture of the run that wrote the file.
    path : str or os.PathLike
        The ``model.ckpt`` file.
    expected : str
        What to check when the file does not fit (added to the error).

    Returns
    -------
    torch.nn.Module
        ``model``, loaded.

    Raises
    ------
    CheckpointMismatchError
        On any missing, unexpected or mis-shaped key.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save({"module.weight": torch.ones(1, 2), "module.bias": torch.zeros(1)}, path)
    >>> load_model_checkpoint(nn.Linear(2, 1), path).weight.tolist()
    [[1.0, 1.0]]
    """
    state = read_state_dict(path, expected)
    model_keys = set(model.state_dict())
    for key in [k for k in state if k.endswith("embeddings.position_ids") and k not in model_keys]:
        del state[key]
    missing, unexpected, mismatched = _compare(model, state)
    return _load(model, state, missing, unexpected, mismatched, path, expected)
