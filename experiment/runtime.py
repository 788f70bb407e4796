"""Where and how a run computes: device, rank, precision, and the CUDA-only options on a machine without CUDA.

``--auto_mix_prec`` (fp16) and ``--data_parallel_backend`` need CUDA:
:func:`cpu_fallbacks` turns them off on a CPU-only machine with a clear
warning instead of SpeechBrain's error, so the paper's command still runs.
"""

import dataclasses
import os
import sys

import torch

from models.precision import check_precision

__all__ = ["warn_now", "cpu_fallbacks", "inference_precision", "default_device", "select_device", "rank_and_world"]


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
    if precision == "fp16" and "cuda" not in select_device(run_opts):
        warn_now("precision fp16 needs a CUDA GPU; running in fp32 (on CPU, bf16 is the reduced-precision option).")
        precision = "fp32"
    return precision


def default_device():
    """``"cuda"`` where PyTorch sees a CUDA GPU (the paper's code embeds and curates on the GPU), else ``"cpu"``.

    Example
    -------
    >>> default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    True
    """
    return "cuda" if torch.cuda.is_available() else "cpu"


def select_device(run_opts):
    """``--device`` when given, else :func:`default_device`; under torchrun each rank takes the GPU of its LOCAL_RANK.

    Example
    -------
    >>> select_device({"device": "cpu"})
    'cpu'
    """
    device = run_opts.get("device") or default_device()
    local_rank = os.environ.get("LOCAL_RANK")
    if device.startswith("cuda") and local_rank is not None:
        device = f"cuda:{int(local_rank)}"
    return device


def rank_and_world():
    """(rank, world size) of this process; (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
