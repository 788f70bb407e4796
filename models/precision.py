"""Inference precision of both towers: float32, or autocast to bfloat16 / float16.

Under ``torch.autocast`` the matrix products and convolutions of both towers
run in the lower precision (where the hardware has matrix units for it: AVX-512
BF16 or AMX on CPU, tensor cores on GPU) while reductions, normalisations and
the log-mel front end's FFT stay in float32. Embeddings always leave the
model as float32 (the callers cast), so stored files and similarities keep
one format whatever the precision.
"""

import contextlib

import torch

__all__ = ["PRECISIONS", "autocast", "check_precision", "cpu_flags"]

#: ``precision`` values and their autocast dtypes.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_flags():
    """The flags of this machine's CPU (``/proc/cpuinfo``; empty where there is none).

    Tells whether the CPU multiplies bfloat16 natively (``avx512_bf16``, ``amx_bf16``).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_precision(precision):
    """``precision`` itself, or a ValueError naming the allowed values.

    Example
    -------
    >>> check_precision("bf16")
    'bf16'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
    return precision


def autocast(precision="fp32", device="cpu"):
    """A context in which the model runs at ``precision`` on ``device`` (a no-op for fp32).

    Arguments
    ---------
    precision : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    device : str or torch.device
        Where the model runs (its type picks the autocast backend).

    Returns
    -------
    context manager

    Example
    -------
    >>> with autocast("bf16", "cpu"):
    ...     y = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    >>> y.dtype
    torch.bfloat16
    """
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=PRECISIONS[precision])
