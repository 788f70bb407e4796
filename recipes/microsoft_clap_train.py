#!/usr/bin/env python3
"""Trains a CLAP model with the MS CLAP 2022 architecture (CNN14 + BERT): the teacher, or a student.

The teacher is trained on the human-captioned corpora under
``--data_annot_folder``; a student (same script) starts from a teacher
(``--ssl_checkpoints_dir`` or ``--clap_ckpt_path``) and mixes curated pairs
(``--curation_csv``, drawn with probability ``--curation_prob``) with replay
of the original pairs (``--train_csv_path``).

To run this recipe:
    python recipes/microsoft_clap_train.py hparams/insper/microsoft_clap_train.yaml \
        --data_annot_folder=/data/insper --pann_ckpt_path=/ckpt/Cnn14_mAP=0.431.pth \
        --output_base=results --experiment_name=teacher
Several GPUs (DDP):
    torchrun --nproc_per_node=4 recipes/microsoft_clap_train.py hparams/insper/microsoft_clap_train.yaml [flags]

Authors
 * The project's founding engineers, 2026 (after Wang et al., arXiv 2305.01864)
"""

import logging
import math
import os
import pathlib
import shutil
import sys

import torch
import speechbrain as sb
from speechbrain.dataio.sampler import ReproducibleRandomSampler
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process, run_on_main

from dataset.pipelines import EpochState, caption_dataset
from dataset.prepare_insper import prepare_insper
from dataset.manifest import read_caption_csv
from models.freeze import freeze_base
from models.text_encoder import tokenize
from recipes import common
from recipes.zeroshot_eval import zeroshot_validation_from_hparams

logger = logging.getLogger(__name__)

# Keys that name a caption corpus to prepare (any of them is enough).
CORPUS_KEYS = ("data_annot_folder", "clotho_folder", "audiocaps_folder", "macs_folder", "fsd50k_folder", "user_csvs")


@register_checkpoint_hooks
class CurationMixer:
    """Chooses, step by step, between a curated batch (probability ``prob``) and the replay batch.

    The curated loader cycles: when exhausted it starts a new, reshuffled
    pass. The mixer's random state and its position in the curated set are
    checkpointed, so a resumed run makes the same choices and sees the same
    curated batches as an uninterrupted one.
    """

    def __init__(self, dataset, prob, batch_size, seed, num_workers=0, epoch_state=None):
        self.prob = float(prob)
        self.seed = seed
        self.epoch_state = epoch_state or EpochState()
        self.sampler = ReproducibleRandomSampler(dataset, seed=seed)
        self.loader = sb.dataio.dataloader.make_dataloader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            drop_last=len(dataset) >= 2 * batch_size,
            generator=torch.Generator().manual_seed(seed),
        )
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.cycle = 0
        self.position = 0
        self._iterator = None
        self.counts = {"curated": 0, "replay": 0}

    def take_curated(self):
        """Draws one Bernoulli(prob): True means the next step uses a curated batch."""
        return bool(torch.rand((), generator=self.generator) < self.prob)

    def next_batch(self):
        """The next curated batch, starting a new pass when the current one ends."""
        while True:
            if self._iterator is None:
                self.sampler.set_epoch(self.cycle)
                self.epoch_state.epoch = self.cycle
                self.loader._speechbrain_recovery_skip_to = self.position or None
                self._iterator = iter(self.loader)
            try:
                batch = next(self._iterator)
                self.position += 1
                return batch
            except StopIteration:
                self._iterator = None
                self.cycle += 1
                self.position = 0

    @mark_as_saver
    def save(self, path):
        torch.save({"generator": self.generator.get_state(), "cycle": self.cycle, "position": self.position}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        del end_of_epoch
        state = torch.load(path, weights_only=True)
        self.generator.set_state(state["generator"])
        self.cycle, self.position = int(state["cycle"]), int(state["position"])
        self._iterator = None


class CLAPBrain(sb.Brain):
    """Contrastive audio-text training over the global batch."""

    def tokens(self, batch):
        """The batch's captions as model inputs on the Brain's device."""
        tokens = tokenize(self.hparams.tokenizer, batch.caption, max_length=self.hparams.text_max_length)
        return {k: v.to(self.device) for k, v in tokens.items()}

    def compute_forward(self, batch, stage):
        """Embeds the batch's audio and captions; returns (audio_emb, text_emb, logit_scale)."""
        batch = batch.to(self.device)
        audio_emb, text_emb, scale = self.modules.model(batch.sig.data, **self.tokens(batch))
        # DataParallel gathers the 0-dim scale of each replica into a vector.
        return audio_emb, text_emb, scale.reshape(-1)[0]

    def compute_objectives(self, predictions, batch, stage):
        """Symmetric contrastive loss; in-batch audio→text R@1 outside training."""
        audio_emb, text_emb, scale = predictions[:3]
        valid = batch.audio_ok.to(self.device)
        self.unreadable += int((~valid).sum())
        loss, logits = self.hparams.loss(
            audio_emb, text_emb, scale, valid=valid, gather=(stage == sb.Stage.TRAIN), **self.soft_target_inputs(predictions, stage)
        )
        if stage != sb.Stage.TRAIN and logits.numel():
            self._update_recall(logits, [p for p, ok in zip(batch.wav_path, valid.tolist()) if ok])
        return loss

    def soft_target_inputs(self, predictions, stage):
        """Extra loss arguments; plain CLAP has none (SoftCLAP passes the teacher's embeddings)."""
        return {}

    def _update_recall(self, logits, wav_paths):
        # A caption of the same clip counts as a hit: Clotho has five per clip.
        best = logits.argmax(dim=1).tolist()
        for i, j in enumerate(best):
            self.recall_hits += wav_paths[i] == wav_paths[j]
            self.recall_chance += sum(p == wav_paths[i] for p in wav_paths) / len(wav_paths)
        self.recall_rows += len(best)

    def fit_batch(self, batch):
        """Runs the curated steps the mixer draws before this replay batch, then the replay step."""
        losses = []
        mixer = getattr(self, "mixer", None)
        while mixer is not None and mixer.take_curated():
            mixer.counts["curated"] += 1
            losses.append(super().fit_batch(mixer.next_batch()))
        if mixer is not None:
            mixer.counts["replay"] += 1
        losses.append(super().fit_batch(batch))
        return torch.stack(losses).mean()

    def on_fit_batch_start(self, batch, should_step):
        """Sets the learning rate of the coming optimizer step (cosine schedule, stateless)."""
        lr = common.cosine_lr(
            self.optimizer_step,
            self.total_steps,
            self.hparams.base_lr,
            self.hparams.final_lr,
            self.hparams.warmup_steps,
        )
        common.set_lr(self.optimizer, lr)

    def on_fit_start(self):
        """Adds the RNG and completion-marker recoverables, drops half-written checkpoints, recovers."""
        self._compile()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("rng", common.RNGState())
            if getattr(self, "mixer", None) is not None:
                self.checkpointer.add_recoverable("curation_mixer", self.mixer)
            # Last, so its file exists only if every other file was written.
            self.checkpointer.add_recoverable(common.COMPLETION_MARKER, common.CompletionMarker())
            if if_main_process():
                common.remove_incomplete_checkpoints(self.checkpointer.checkpoints_dir)
            if sb.utils.distributed.is_distributed_initialized():
                torch.distributed.barrier()
            self.checkpointer.recover_if_possible()

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-stage counters; tells the data pipeline the epoch (crop seeds)."""
        self.unreadable = 0
        self.recall_hits = self.recall_rows = 0
        self.recall_chance = 0.0
        if stage == sb.Stage.TRAIN:
            self.hparams.train_epoch_state.epoch = epoch
            if getattr(self, "mixer", None) is not None:
                self.mixer.counts = {"curated": 0, "replay": 0}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; at validation end saves a checkpoint and keeps the best by validation loss."""
        stats = {"loss": float(stage_loss)}
        if self.unreadable:
            stats["unreadable_clips"] = self.unreadable
            logger.warning("%d clip(s) could not be read in this %s stage; they were left out.", self.unreadable, stage.name)
        if stage == sb.Stage.TRAIN:
            if getattr(self, "mixer", None) is not None:
                stats.update({f"{k}_batches": v for k, v in self.mixer.counts.items()})
            self.train_stats = stats
            return
        if self.recall_rows:
            stats["R@1"] = self.recall_hits / self.recall_rows
            stats["R@1_chance"] = self.recall_chance / self.recall_rows
        if getattr(self, "zeroshot", None) is not None:
            # Zero-shot top-1 (use_zs_loader): the metric checkpoints are then kept by.
            stats["acc"] = self.zeroshot(self.modules.model, self.device)["top1"] or 0.0
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr},
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            meta = {k: float(v) for k, v in stats.items() if k in ("loss", "R@1", "acc")}
            keep = {"max_keys": ["acc"]} if "acc" in meta else {"min_keys": ["loss"]}
            self.checkpointer.save_and_keep_only(meta=meta, **keep)
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )


def dataio_prep(hparams):
    """Builds the train and valid datasets (and the curated set when ``curation_prob > 0``)."""
    seed = hparams["seed"]
    train_set = caption_dataset(
        hparams["train_manifest"], hparams["sample_rate"], hparams["train_duration"], train=True,
        seed=seed, epoch_state=hparams["train_epoch_state"],
    )
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
    if not 0.0 <= p < 1.0:
        raise SystemExit(f"--curation_prob must be in [0, 1), got {p}.")
    if p > 0:
        path = hparams.get("curation_csv")
        if not path or not os.path.isfile(path):
            raise SystemExit(f"--curation_prob={p} needs --curation_csv=<curated pairs CSV>; got {path!r}.")
        if not read_caption_csv(path):
            raise SystemExit(f"--curation_csv={path} has no rows; curate some pairs or set --curation_prob=0.")
    if not any(hparams.get(k) for k in CORPUS_KEYS + ("train_csv_path",)):
        raise SystemExit("Give --data_annot_folder (the caption corpora) or --train_csv_path (a caption CSV).")
    if hparams.get("prev_ckpt_dir") and not hparams["resume_interrupt"]:
        raise SystemExit("--prev_ckpt_dir is only used with --resume_interrupt=True.")


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
        },
    )
    train, valid = os.path.join(out, "train_raw.csv"), os.path.join(out, "valid.csv")
    if has_corpus and hparams.get("train_csv_path"):
        train = hparams["train_csv_path"]
    hparams["train_manifest"], hparams["valid_manifest"] = train, valid
    if if_main_process():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        # Curation embeds the teacher's training captions from here.
        shutil.copyfile(train, os.path.join(hparams["save_folder"], "train_raw.csv"))


def freeze_for_training(model, hparams):
    """Freezes what the loss never uses (DDP needs every trainable parameter used) and optional towers."""
    for name, param in model.named_parameters():
        if name.startswith("audio_encoder.base.fc_audioset.") or ".pooler." in name:
            param.requires_grad_(False)
    if hparams["freeze_audio_base"]:
        freeze_base(model.audio_encoder)
    if hparams["freeze_text_base"]:
        freeze_base(model.caption_encoder)


def main(argv=None, brain_class=None, extra_brain_kwargs=None):
    """Parses flags, prepares data, builds the Brain, trains and evaluates.

    ``brain_class`` (default :class:`CLAPBrain`) and ``extra_brain_kwargs``
    (a function of the loaded hparams returning keyword arguments for it) let
    the SoftCLAP recipe reuse this whole sequence with its own Brain.
    """
    brain_class = brain_class or CLAPBrain
    hparams_file, run_opts, overrides = common.parse_arguments(argv)
    run_opts = common.cpu_fallbacks(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams = common.load_hparams(hparams_file, overrides)
    check_options(hparams)

    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides
    )
    prepare_manifests(hparams)
    train_set, valid_set, curated_set = dataio_prep(hparams)
    zeroshot = zeroshot_validation_from_hparams(hparams)

    # Where checkpoints live: our own save folder, or the interrupted run's.
    ckpt_dir = hparams["save_folder"]
    if hparams["resume_interrupt"] and hparams.get("prev_ckpt_dir"):
        ckpt_dir = hparams["prev_ckpt_dir"]
    hparams["checkpointer"].checkpoints_dir = pathlib.Path(ckpt_dir)
    has_ckpt = bool(common.checkpoint_dirs(ckpt_dir))
    if has_ckpt and not hparams["resume_interrupt"]:
        raise SystemExit(
            f"{ckpt_dir} already holds checkpoints. Continue that run with --resume_interrupt=True "
            f"(and --prev_ckpt_dir={ckpt_dir}), or start a new one with another --experiment_name/--output_base."
        )
    if hparams["resume_interrupt"] and not has_ckpt:
        logger.warning("--resume_interrupt=True but %s has no checkpoint: starting from the initial weights.", ckpt_dir)

    model = hparams["model"]
    if not has_ckpt:
        common.initialise_model(model, hparams)
    freeze_for_training(model, hparams)

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        **(extra_brain_kwargs(hparams) if extra_brain_kwargs else {}),
    )
    loader_kwargs = dict(hparams["train_dataloader_opts"])
    loader_kwargs["generator"] = torch.Generator().manual_seed(hparams["seed"])
    train_loader = brain.make_dataloader(train_set, stage=sb.Stage.TRAIN, **loader_kwargs)
    valid_loader = brain.make_dataloader(valid_set, stage=sb.Stage.VALID, **hparams["valid_dataloader_opts"])
    if curated_set is not None:
        brain.mixer = CurationMixer(
            curated_set, hparams["curation_prob"], hparams["batch_size"], hparams["seed"] + 7,
            num_workers=hparams["num_workers"], epoch_state=hparams["curation_epoch_state"],
        )
    brain.zeroshot = zeroshot
    replay_steps = len(train_loader) * hparams["number_of_epochs"]
    brain.total_steps = int(math.ceil(replay_steps / (1.0 - hparams["curation_prob"])))

    if if_main_process():
        print(f"Output folder: {os.path.abspath(hparams['output_folder'])}", flush=True)
    brain.fit(hparams["epoch_counter"], train_loader, valid_loader)
    best = {"max_key": "acc"} if zeroshot is not None else {"min_key": "loss"}
    brain.evaluate(valid_set, test_loader_kwargs=hparams["valid_dataloader_opts"], **best)
    if if_main_process():
        print(f"Done. Checkpoints: {os.path.abspath(ckpt_dir)}", flush=True)
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
