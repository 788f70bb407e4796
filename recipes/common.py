"""Pieces every recipe shares: argument parsing, model initialisation, checkpoints, resuming.

SpeechBrain 1.1.2 pitfalls handled here (see docs/design.md):

- ``--key=a=b`` reaches the YAML as ``a b``: :func:`parse_arguments` rebuilds
  the overrides itself, splitting each flag at its first ``=`` only, so
  ``--pann_ckpt_path=/x/Cnn14_mAP=0.431.pth`` names that file.
- ``--auto_mix_prec`` (fp16) and ``--data_parallel_backend`` need CUDA:
  :func:`cpu_fallbacks` turns them off on a CPU-only machine with a clear
  warning instead of SpeechBrain's error, so the paper's command still runs.
- Checkpoint ``meta`` values must be plain floats.
- The Checkpointer writes ``CKPT.yaml`` *before* the parameter files, so a
  kill during a save leaves a checkpoint that looks complete but is not;
  :class:`CompletionMarker` is saved last and
  :func:`remove_incomplete_checkpoints` deletes checkpoints that lack it.
"""

import dataclasses
import glob
import logging
import math
import os
import random
import sys

import numpy as np
import torch
import yaml
import speechbrain as sb
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from models.checkpoints import load_clap_checkpoint, load_pann_checkpoint

logger = logging.getLogger(__name__)

COMPLETION_MARKER = "zz_complete"


# ---------------------------------------------------------------- arguments
def _run_option_parser():
    # The same parser SpeechBrain uses, so run options (--device, --precision,
    # --auto_mix_prec, --data_parallel_backend, ...) keep their meaning.
    return sb.utils.run_opts.RunOptions._create_parser()


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
    return "\n".join(f"{key}: {value}" for key, value in values.items())


def parse_arguments(argv=None):
    """Like ``speechbrain.parse_arguments`` but keeps ``=`` inside override values.

    Returns
    -------
    (param_file, run_opts, overrides)
        ``overrides`` is a YAML string for ``load_hyperpyyaml``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    param_file, run_opts, _ = sb.parse_arguments(argv)
    _, unknown = _run_option_parser().parse_known_args(argv)
    return param_file, run_opts, overrides_to_yaml(unknown)


def _warn_now(message):
    # Runs before the experiment's logging is configured: print, so it is seen.
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def cpu_fallbacks(run_opts):
    """Disables CUDA-only options on a machine without CUDA, with a warning that says so."""
    if torch.cuda.is_available():
        return run_opts
    if run_opts.get("device") and "cuda" in str(run_opts["device"]):
        raise SystemExit(f"--device={run_opts['device']} was requested but this machine has no CUDA device.")
    if run_opts["auto_mix_prec"] or run_opts["precision"] == "fp16":
        _warn_now(
            "--auto_mix_prec / --precision=fp16 need a CUDA GPU; no GPU here, so training runs in fp32 "
            "(on CPU, --precision=bf16 is the mixed-precision option)."
        )
        run_opts = dataclasses.replace(run_opts, auto_mix_prec=False, precision="fp32")
    if run_opts["data_parallel_backend"]:
        _warn_now(
            "--data_parallel_backend needs CUDA GPUs; none here, so it is ignored. "
            "For several GPUs prefer DDP: torchrun --nproc_per_node=N recipes/<script>.py <yaml> [flags]."
        )
        run_opts = dataclasses.replace(run_opts, data_parallel_backend=False)
    if run_opts.get("distributed_launch") or os.environ.get("LOCAL_RANK") is not None:
        if run_opts["distributed_backend"] == "nccl":
            _warn_now("No CUDA: using the gloo backend for torchrun on CPU.")
            run_opts = dataclasses.replace(run_opts, distributed_backend="gloo")
    return run_opts


def load_hparams(param_file, overrides):
    """Loads a hyperpyyaml file with overrides, naming the YAML on unknown keys."""
    from hyperpyyaml import load_hyperpyyaml

    with open(param_file, encoding="utf-8") as fin:
        try:
            return load_hyperpyyaml(fin, overrides)
        except ValueError as err:
            if "not in" in str(err) or "Override" in str(err) or "override" in str(err):
                raise SystemExit(f"{param_file}: {err}\nEvery --flag must be a key of the YAML file.") from err
            raise


# ------------------------------------------------------------- checkpoints
def checkpoint_dirs(save_dir):
    """``CKPT+*`` folders under ``save_dir`` (which may also be one such folder or hold ``save/``)."""
    save_dir = os.fspath(save_dir)
    if os.path.basename(os.path.normpath(save_dir)).startswith("CKPT+"):
        return [save_dir]
    if not glob.glob(os.path.join(save_dir, "CKPT+*")) and os.path.isdir(os.path.join(save_dir, "save")):
        save_dir = os.path.join(save_dir, "save")
    return sorted(d for d in glob.glob(os.path.join(save_dir, "CKPT+*")) if os.path.isdir(d))


def _read_meta(ckpt_dir):
    try:
        with open(os.path.join(ckpt_dir, "CKPT.yaml"), encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return None


def is_complete_checkpoint(ckpt_dir):
    """True when the checkpoint was written to the end (or predates the marker: no ``brain.ckpt``)."""
    if _read_meta(ckpt_dir) is None:
        return False
    if os.path.exists(os.path.join(ckpt_dir, COMPLETION_MARKER + ".ckpt")):
        return True
    # Folders written by other tools (or only holding model weights) have no marker.
    return not os.path.exists(os.path.join(ckpt_dir, "brain.ckpt"))


def remove_incomplete_checkpoints(save_dir):
    """Deletes checkpoint folders that a kill interrupted while they were written."""
    import shutil

    removed = []
    for ckpt in checkpoint_dirs(save_dir):
        if not is_complete_checkpoint(ckpt):
            logger.warning("Removing the incomplete checkpoint %s (the run was killed while saving it).", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
            removed.append(ckpt)
    return removed


def find_checkpoint(save_dir, select="loss"):
    """Picks a checkpoint folder of one of our runs.

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
    """
    candidates = []
    for d in checkpoint_dirs(save_dir):
        meta = _read_meta(d)
        if meta is not None and is_complete_checkpoint(d) and os.path.exists(os.path.join(d, "model.ckpt")):
            candidates.append((d, meta))
    if not candidates:
        raise FileNotFoundError(
            f"No checkpoint with model.ckpt under {save_dir!r}: give the 'save' folder of a training run "
            "(it holds CKPT+... folders)."
        )

    def latest(item):
        return (item[1].get("unixtime", 0.0), item[0])

    if select not in ("loss", "acc", "latest"):
        raise ValueError(f"Checkpoint selection must be 'loss', 'acc' or 'latest', not {select!r}.")
    if select != "latest":
        keyed = [c for c in candidates if isinstance(c[1].get(select), (int, float))]
        if keyed:
            best = min(keyed, key=lambda c: c[1][select]) if select == "loss" else max(keyed, key=lambda c: c[1][select])
            return best[0]
        logger.warning("No checkpoint under %s records %r; using the latest one.", save_dir, select)
    return max(candidates, key=latest)[0]


def load_model_from_save(model, save_dir, select="loss"):
    """Loads ``model.ckpt`` of the selected checkpoint into ``model``; returns the checkpoint folder."""
    ckpt = find_checkpoint(save_dir, select)
    state = torch.load(os.path.join(ckpt, "model.ckpt"), map_location="cpu", weights_only=True)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    # Older transformers wrote this buffer; newer ones do not keep it.
    for key in [k for k in state if k.endswith("embeddings.position_ids") and k not in own]:
        state.pop(key)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"{ckpt}/model.ckpt does not fit the model built from the YAML.\n"
            f"missing: {missing[:20]}\nunexpected: {unexpected[:20]}\n"
            "Check that text_model, txt_emb_dim, audio_width, d_proj and out_emb match the run that wrote it."
        )
    logger.info("Loaded model weights from %s", ckpt)
    return ckpt


def initialise_model(model, hparams):
    """Applies the initial weights the flags ask for, in increasing precedence.

    ``pann_ckpt_path`` (audio tower from PANNs CNN14) → ``clap_ckpt_path``
    (the whole MS CLAP file) → ``ssl_checkpoints_dir`` (the ``save`` folder
    of one of our runs). Returns a short description of the source.
    """
    source = "random initialisation"
    if hparams.get("pann_ckpt_path"):
        load_pann_checkpoint(model.audio_encoder.base, hparams["pann_ckpt_path"])
        source = f"PANNs {hparams['pann_ckpt_path']}"
    if hparams.get("clap_ckpt_path"):
        load_clap_checkpoint(model, hparams["clap_ckpt_path"])
        source = f"MS CLAP {hparams['clap_ckpt_path']}"
    if hparams.get("ssl_checkpoints_dir"):
        ckpt = load_model_from_save(model, hparams["ssl_checkpoints_dir"], hparams.get("ssl_select", "loss"))
        source = f"checkpoint {ckpt}"
    logger.info("Model initialised from %s", source)
    return source


# ---------------------------------------------------------- recoverables
@register_checkpoint_hooks
class RNGState:
    """Saves and restores the torch, numpy and Python random states with a checkpoint.

    Dropout and SpecAugment draw from the global torch RNG; restoring it
    makes a resumed run take the same random draws as an uninterrupted one.
    """

    @mark_as_saver
    def save(self, path):
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
        with open(path, "w", encoding="utf-8") as f:
            f.write("complete\n")

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        del path, end_of_epoch


# ------------------------------------------------------------------ misc
def cosine_lr(step, total_steps, base_lr, final_lr, warmup_steps=0):
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then cosine to ``final_lr``.

    Stateless (a function of the step), so resuming needs no scheduler state.

    Example
    -------
    >>> cosine_lr(0, 10, 1e-3, 0.0), cosine_lr(10, 10, 1e-3, 0.0)
    (0.001, 0.0)
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr):
    """Sets the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
