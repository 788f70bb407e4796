"""The training recipes' data preparation and their canonical SpeechBrain sequence.

:func:`run_training` is what ``recipes/microsoft_clap_train.py`` and
``recipes/softclap_train.py`` run, with their own Brain class: parse the
flags, initialise DDP, load the YAML, lock the output and checkpoint folders
(:mod:`experiment.lock`: a second run on them stops), create the experiment
folder, prepare the caption corpora (main process), build the datasets, load
the initial weights (unless resuming), build the Brain, ``fit``, ``evaluate``.
"""

import logging
import os
import pathlib
import shutil

import torch
import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main

from dataset.manifest import read_caption_csv
from dataset.overfit import overfit_manifests
from dataset.pipelines import caption_dataset
from dataset.prepare_insper import prepare_insper
from evaluation.zeroshot import zeroshot_validation_from_hparams
from experiment.command_line import setup
from experiment.checkpoints import check_resume_checkpoint, checkpoint_dirs
from experiment.lock import hold_folder_lock
from experiment.weights import load_model
from models.freeze import freeze_base
from training.curves import make_train_logger
from training.mixer import CurationMixer, planned_steps
from training.schedule import check_schedule_options

__all__ = ["CORPUS_KEYS", "dataio_prep", "check_options", "prepare_manifests", "validation_manifest",
           "freeze_for_training", "checkpoint_path", "checkpoint_folder", "run_training", "use_overfit_manifests"]

logger = logging.getLogger(__name__)

# Keys that name a caption corpus to prepare (any of them is enough).
CORPUS_KEYS = ("data_annot_folder", "clotho_folder", "audiocaps_folder", "macs_folder", "fsd50k_folder", "user_csvs")


def dataio_prep(hparams):
    """Builds the train and valid datasets (and the curated set when ``curation_prob > 0``).

    The valid set is None when there is no validation (``valid_manifest`` None: ``valid_pct: 0``).
    """
    seed = hparams["seed"]
    train_set = caption_dataset(
        hparams["train_manifest"], hparams["sample_rate"], hparams["train_duration"], train=True,
        seed=seed, epoch_state=hparams["train_epoch_state"],
    )
    valid_set = None
    if hparams["valid_manifest"] is not None:
        valid_set = caption_dataset(
            hparams["valid_manifest"], hparams["sample_rate"], hparams["eval_duration"], train=False,
            eval_crop=hparams["eval_crop"],
        )
    curated_set = None
    if hparams["curation_prob"] > 0:
        curated_set = caption_dataset(
            hparams["curation_csv"], hparams["sample_rate"], hparams["train_duration"], train=True,
            seed=seed + 7, epoch_state=hparams["curation_epoch_state"],
        )
    return train_set, valid_set, curated_set


def check_options(hparams):
    """Fails early, with what to fix, on flag combinations that cannot work."""
    p = hparams["curation_prob"]
    if not 0.0 <= p <= 1.0:
        raise SystemExit(f"--curation_prob must be in [0, 1], got {p}.")
    if p == 1.0 and hparams["curation_mixing"] == "insert":
        raise SystemExit("--curation_prob=1 with --curation_mixing=insert would never reach a replay batch; "
                         "use --curation_mixing=replace (curated pairs only) or a curation_prob below 1.")
    if p == 0 and hparams.get("curation_csv"):
        logger.warning("--curation_csv=%s is not read: curation_prob is 0 (give --curation_prob, e.g. 0.5 as the "
                       "paper's students, to train on its pairs).", hparams["curation_csv"])
    if p > 0:
        path = hparams.get("curation_csv")
        if not path or not os.path.isfile(path):
            raise SystemExit(f"--curation_prob={p} needs --curation_csv=<curated pairs CSV>; got {path!r}.")
        if not read_caption_csv(path):
            raise SystemExit(f"--curation_csv={path}: no rows in {path}; curate some pairs or set --curation_prob=0.")
    if not any(hparams.get(k) for k in CORPUS_KEYS + ("train_csv_path",)):
        raise SystemExit("Give --data_annot_folder (the caption corpora) or --train_csv_path (a caption CSV).")
    if hparams.get("prev_ckpt_dir") and not hparams["resume_interrupt"]:
        raise SystemExit("--prev_ckpt_dir is only used with --resume_interrupt=True.")
    check_schedule_options(hparams)


def prepare_manifests(hparams):
    """Prepares the corpus (main process) and decides which CSVs feed training and validation.

    With a corpus (``data_annot_folder``, a corpus folder key or
    ``user_csvs``) it is prepared and split; ``train_csv_path`` then replaces
    the prepared training rows (the replay set of a student). With only
    ``train_csv_path``, that CSV is split into training and validation clips.
    """
    out = hparams["output_folder"]
    has_corpus = any(hparams.get(k) for k in CORPUS_KEYS)
    user_csvs = hparams["user_csvs"] if has_corpus else [hparams["train_csv_path"]]
    run_on_main(
        prepare_insper,
        kwargs={
            "data_annot_folder": hparams["data_annot_folder"],
            "save_folder": out,
            "clotho_folder": hparams["clotho_folder"],
            "audiocaps_folder": hparams["audiocaps_folder"],
            "macs_folder": hparams["macs_folder"],
            "fsd50k_folder": hparams["fsd50k_folder"],
            "user_csvs": user_csvs,
            "valid_pct": hparams["valid_pct"],
            "subset_pct": hparams["subset_pct"],
            "seed": hparams["seed"],
            "check_audio": hparams["check_audio"],
            "caption_cleaning": hparams["caption_cleaning"],
            "audiocaps_splits": hparams.get("audiocaps_splits", "train"),
        },
    )
    train, valid = os.path.join(out, "train_raw.csv"), os.path.join(out, "valid.csv")
    if has_corpus and hparams.get("train_csv_path"):
        train = hparams["train_csv_path"]
    hparams["train_manifest"], hparams["valid_manifest"] = train, validation_manifest(valid, hparams["valid_pct"])
    if if_main_process():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        # Curation embeds the teacher's training captions from here.
        shutil.copyfile(train, os.path.join(hparams["save_folder"], "train_raw.csv"))


def validation_manifest(valid_csv, valid_pct):
    """``valid_csv``, or None when it holds no row (``valid_pct: 0``): the run then has no validation stage.

    As the paper's code with ``valid_pct: 0`` (its students' setting: ``--train_csv_path`` writes no
    validation file): every row is trained on, each epoch ends with a checkpoint whose ``loss`` is
    the training loss, and checkpoints are kept by it.

    Example
    -------
    >>> import os, tempfile
    >>> from dataset.manifest import write_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.csv")
    >>> write_csv(path, [], fieldnames=["ID", "wav_path", "caption"])
    >>> validation_manifest(path, 0.0) is None
    True
    """
    if read_caption_csv(valid_csv):
        return valid_csv
    if valid_pct > 0:
        logger.warning("%s holds no row (valid_pct=%s left no clip out): training without validation; "
                       "checkpoints are kept by the training loss.", valid_csv, valid_pct)
    else:
        logger.info("valid_pct=0: no validation set; every row is trained on and checkpoints are kept by the "
                    "training loss (as the paper's code).")
    return None


def use_overfit_manifests(hparams):
    """``overfit_size`` (the paper code's debug mode): train on N pairs repeated 1000 times, validate on them."""
    if hparams.get("overfit_size"):
        run_on_main(overfit_manifests, args=[hparams["train_manifest"], hparams["output_folder"],
                                             hparams["overfit_size"], hparams["seed"]])
        hparams["train_manifest"] = os.path.join(hparams["output_folder"], "overfit_train.csv")
        hparams["valid_manifest"] = os.path.join(hparams["output_folder"], "overfit_valid.csv")


def freeze_for_training(model, hparams):
    """Freezes what the loss never uses (DDP needs every trainable parameter used) and optional towers."""
    for name, param in model.named_parameters():
        if name.startswith("audio_encoder.base.fc_audioset.") or ".pooler." in name:
            param.requires_grad_(False)
    if hparams["freeze_audio_base"]:
        freeze_base(model.audio_encoder)
    if hparams["freeze_text_base"]:
        freeze_base(model.caption_encoder)


def checkpoint_path(hparams):
    """The folder checkpoints are written to: ``save_folder``, or ``prev_ckpt_dir`` when resuming from it."""
    if hparams["resume_interrupt"] and hparams.get("prev_ckpt_dir"):
        return hparams["prev_ckpt_dir"]
    return hparams["save_folder"]


def checkpoint_folder(hparams):
    """Where checkpoints live (our own ``save`` folder, or the interrupted run's) and whether it holds any.

    Stops with the flags to use when a new run would overwrite checkpoints.
    """
    ckpt_dir = checkpoint_path(hparams)
    hparams["checkpointer"].checkpoints_dir = pathlib.Path(ckpt_dir)
    has_ckpt = bool(checkpoint_dirs(ckpt_dir))
    if has_ckpt and not hparams["resume_interrupt"]:
        raise SystemExit(
            f"{ckpt_dir} already holds checkpoints. Continue that run with --resume_interrupt=True "
            f"(and --prev_ckpt_dir={ckpt_dir}), or start a new one with another --experiment_name/--output_base."
        )
    if hparams["resume_interrupt"] and not has_ckpt:
        logger.warning("--resume_interrupt=True but %s has no checkpoint: starting from the initial weights.", ckpt_dir)
    return ckpt_dir, has_ckpt


def run_training(argv, brain_class, brain_kwargs=None):
    """Parses flags, prepares data, builds the Brain, trains and evaluates.

    Arguments
    ---------
    argv : list of str
        The command line without the script.
    brain_class : type
        :class:`training.brain.CLAPBrain` or a subclass.
    brain_kwargs : callable, optional
        ``brain_kwargs(hparams) -> dict`` of extra keyword arguments of the
        Brain (SoftCLAP: the frozen teacher).

    Returns
    -------
    sb.Brain
        The trained Brain.
    """
    hparams, run_opts, hparams_file, overrides = setup(argv)
    check_options(hparams)
    if hparams["resume_interrupt"]:
        # A damaged or tampered file of the checkpoint to resume from is named before anything is written.
        check_resume_checkpoint(checkpoint_path(hparams))
    # One writer per folder: the run's own, and the one its checkpoints go to (another run's when resuming it).
    held = []
    try:
        for folder in (hparams["output_folder"], checkpoint_path(hparams)):
            held.append(hold_folder_lock(folder, "this training run"))
    except SystemExit:
        for lock in held:  # the output folder's, when the checkpoint folder is refused
            if lock is not None:
                lock.release()
        raise
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    hparams["train_logger"] = make_train_logger(hparams)  # + W&B / TensorBoard on request, train_curves.png
    prepare_manifests(hparams)
    use_overfit_manifests(hparams)
    train_set, valid_set, curated_set = dataio_prep(hparams)
    zeroshot = zeroshot_validation_from_hparams(hparams)

    ckpt_dir, has_ckpt = checkpoint_folder(hparams)
    if not has_ckpt:
        load_model(hparams)
    freeze_for_training(hparams["model"], hparams)
    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        **(brain_kwargs(hparams) if brain_kwargs else {}),
    )
    loader_kwargs = dict(hparams["train_dataloader_opts"])
    loader_kwargs["generator"] = torch.Generator().manual_seed(hparams["seed"])
    train_loader = brain.make_dataloader(train_set, stage=sb.Stage.TRAIN, **loader_kwargs)
    valid_loader = None
    if valid_set is not None:
        valid_loader = brain.make_dataloader(valid_set, stage=sb.Stage.VALID, **hparams["valid_dataloader_opts"])
    # Without validation, each epoch's checkpoint is saved at the end of training (CLAPBrain.on_stage_end).
    brain.validates = valid_set is not None
    if curated_set is not None:
        brain.mixer = CurationMixer(
            curated_set, hparams["curation_prob"], hparams["batch_size"], hparams["seed"] + 7,
            num_workers=hparams["num_workers"], epoch_state=hparams["curation_epoch_state"],
            mixing=hparams["curation_mixing"],
        )
    brain.zeroshot = zeroshot
    replay_steps = len(train_loader) * hparams["number_of_epochs"]
    prob = hparams["curation_prob"] if curated_set is not None else 0.0
    brain.total_steps = planned_steps(replay_steps, prob, hparams["curation_mixing"])

    if if_main_process():
        print(f"Output folder: {os.path.abspath(hparams['output_folder'])}", flush=True)
    brain.fit(hparams["epoch_counter"], train_loader, valid_loader)
    if valid_set is not None:
        best = {"max_key": "acc"} if zeroshot is not None else {"min_key": "loss"}
        brain.evaluate(valid_set, test_loader_kwargs=hparams["valid_dataloader_opts"], **best)
    if if_main_process():
        print(f"Done. Checkpoints: {os.path.abspath(ckpt_dir)}", flush=True)
    return brain
