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

__all__ = ["PRECISIONS", "autocast", "check_precision", "cpu_flags", "native_bf16"]

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


def native_bf16(device="cpu"):
    """``(native, why)``: whether ``device`` multiplies bfloat16 in hardware, and a sentence saying how it was told.

    A CPU does with the ``avx512_bf16`` or ``amx_bf16`` flag (elsewhere, e.g. an
    AVX2-only AMD Zen 3, PyTorch emulates bf16, slower than fp32); a CUDA GPU
    does when PyTorch reports bf16 without emulation (compute capability 8.0+).

    Example
    -------
    >>> native, why = native_bf16("cpu")
    >>> native == bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}), why.startswith("CPU")
    (True, True)
    """
    if str(device).startswith("cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return True, "CUDA GPU with native bf16"
        return False, "CUDA GPU without native bf16 (PyTorch would emulate it)"
    found = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if found:
        return True, f"CPU with native bf16 ({', '.join(found)})"
    return False, "CPU without native bf16 (no avx512_bf16 or amx_bf16 flag: PyTorch emulates it, slower than fp32)"


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
