"""The Brain of CLAP training: contrastive loss over the global batch, curated steps, checkpoints.

Used as is by ``recipes/microsoft_clap_train.py`` (teacher and students) and
subclassed by ``recipes/softclap_train.py`` (a frozen teacher softens the
targets).
"""

import logging
import shutil

import torch
import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from dataset.disk import DiskFullError, is_full_disk_failure, tree_bytes
from experiment.checkpoints import (
    COMPLETION_MARKER, CompletionMarker, RNGState, checkpoint_dirs, is_complete_checkpoint,
    remove_incomplete_checkpoints,
)
from models.text_encoder import tokenize
from training.schedule import cosine_lr, plateau_from_hparams, set_lr

__all__ = ["CLAPBrain"]

logger = logging.getLogger(__name__)


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
            audio_emb, text_emb, scale, valid=valid,
            gather=(stage == sb.Stage.TRAIN and getattr(self.hparams, "global_contrastive", True)),
            **self.soft_target_inputs(predictions, stage),
        )
        if stage != sb.Stage.TRAIN and logits.numel():
            self._update_recall(logits, [p for p, ok in zip(batch.wav_path, valid.tolist()) if ok])
        return loss

    def soft_target_inputs(self, predictions, stage):
        """Extra loss arguments; plain CLAP has none (SoftCLAP passes the teacher's embeddings)."""
        del predictions, stage
        return {}

    def _update_recall(self, logits, wav_paths):
        # A caption of the same clip counts as a hit: Clotho has five per clip.
        best = logits.argmax(dim=1).tolist()
        for i, j in enumerate(best):
            self.recall_hits += wav_paths[i] == wav_paths[j]
            self.recall_chance += sum(p == wav_paths[i] for p in wav_paths) / len(wav_paths)
        self.recall_rows += len(best)

    def fit_batch(self, batch):
        """Trains on this replay step's batches: the replay batch, or what the mixer puts in its place or before it."""
        mixer = getattr(self, "mixer", None)
        batches = [batch] if mixer is None else mixer.step_batches(batch)
        return torch.stack([super(CLAPBrain, self).fit_batch(b) for b in batches]).mean()

    def on_fit_batch_start(self, batch, should_step):
        """Sets the learning rate of the coming optimizer step (``lr_schedule: cosine``; plateau: per epoch)."""
        if self.hparams.lr_schedule != "cosine":
            return
        lr = cosine_lr(
            self.optimizer_step,
            self.total_steps,
            self.hparams.base_lr,
            self.hparams.final_lr,
            self.hparams.warmup_steps,
        )
        set_lr(self.optimizer, lr)

    def on_fit_start(self):
        """Drops half-written checkpoints, then SpeechBrain's own start (compile, wrap, optimizers, recover)."""
        if self.checkpointer is not None:
            if if_main_process():
                remove_incomplete_checkpoints(self.checkpointer.checkpoints_dir,
                                              expected=[n for n in self.checkpointer.recoverables
                                                        if n != COMPLETION_MARKER])
            if sb.utils.distributed.is_distributed_initialized():
                torch.distributed.barrier()
        super().on_fit_start()

    def init_optimizers(self):
        """Creates the optimizer, then registers the RNG, the mixer and (last) the completion marker.

        Called by SpeechBrain's ``on_fit_start`` before it recovers, after the
        optimizer is registered: so the marker is the last file of every checkpoint.
        """
        super().init_optimizers()
        if self.hparams.lr_schedule == "plateau":
            self.lr_scheduler = plateau_from_hparams(vars(self.hparams))
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("lr_scheduler", self.lr_scheduler)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("rng", RNGState())
            if getattr(self, "mixer", None) is not None:
                self.checkpointer.add_recoverable("curation_mixer", self.mixer)
            self.checkpointer.add_recoverable(COMPLETION_MARKER, CompletionMarker())

    def end_of_epoch_lr(self, epoch, valid_loss):
        """The learning rate to log for this epoch; under ``plateau``, also steps the schedule.

        As in the paper's code, the plateau schedule is stepped once per epoch,
        before the checkpoint is saved, with the validation loss (the training
        loss in a run without validation; the main
        process's, so that every DDP rank sets the same rate), and the rate
        logged is the one the epoch trained with. Under ``cosine`` it is the
        rate of the last step.
        """
        if self.hparams.lr_schedule != "plateau":
            return self.optimizer.param_groups[0]["lr"]
        if sb.utils.distributed.is_distributed_initialized():
            shared = [float(valid_loss)]
            torch.distributed.broadcast_object_list(shared, src=0)
            valid_loss = shared[0]
        old_lr, _ = self.lr_scheduler.step(self.optimizer, epoch, valid_loss)
        return old_lr

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
        """Logs; at validation end (at training end without validation) saves a checkpoint and keeps the best."""
        stats = {"loss": float(stage_loss)}
        if self.unreadable:
            stats["unreadable_clips"] = self.unreadable
            logger.warning("%d clip(s) could not be read in this %s stage; they were left out.",
                           self.unreadable, stage.name)
        if stage == sb.Stage.TRAIN:
            if getattr(self, "mixer", None) is not None:
                stats.update({f"{k}_batches": v for k, v in self.mixer.counts.items()})
            self.train_stats = stats
            if not getattr(self, "validates", True):
                self._end_epoch_without_validation(stats, epoch)
            return
        if self.recall_rows:
            stats["R@1"] = self.recall_hits / self.recall_rows
            stats["R@1_chance"] = self.recall_chance / self.recall_rows
        if getattr(self, "zeroshot", None) is not None:
            # Zero-shot top-1 (use_zs_loader): the metric checkpoints are then kept by.
            stats["acc"] = self.zeroshot(self.modules.model, self.device)["top1"] or 0.0
        if stage == sb.Stage.VALID:
            lr = self.end_of_epoch_lr(epoch, stats["loss"])
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr},
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            self._save_checkpoint(stats, epoch)
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )

    def _save_checkpoint(self, stats, epoch):
        """Saves the end-of-epoch checkpoint with ``stats`` as meta; keeps the best by ``acc`` if there, else ``loss``.

        ``loss`` is the validation loss, or the training loss when the run has no validation.
        """
        meta = {k: float(v) for k, v in stats.items() if k in ("loss", "R@1", "acc")}
        keep = {"max_keys": ["acc"]} if "acc" in meta else {"min_keys": ["loss"]}
        if epoch % getattr(self.hparams, "num_epoch_save", 1) == 0:  # the paper code's num_epoch_save
            try:
                self.checkpointer.save_and_keep_only(meta=meta, num_to_keep=getattr(self.hparams, "num_ckpt_keep", 1),
                                                     **keep)
            except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
                if not is_full_disk_failure(err, str(self.checkpointer.checkpoints_dir)):
                    raise
                raise self._checkpoint_disk_full(epoch) from None

    def _checkpoint_disk_full(self, epoch):
        """Removes the checkpoint a full disk cut short; the error naming its folder, its size and what is kept."""
        ckpt_dir = str(self.checkpointer.checkpoints_dir)
        expected = [n for n in self.checkpointer.recoverables if n != COMPLETION_MARKER]
        written, kept = 0, 0
        for ckpt in checkpoint_dirs(ckpt_dir):
            if is_complete_checkpoint(ckpt, expected):
                kept += 1
            else:  # without its completion marker it would never be loaded; removed so that it frees its space
                written += tree_bytes(ckpt)
                shutil.rmtree(ckpt, ignore_errors=True)
        return DiskFullError(
            ckpt_dir, f"the checkpoint of epoch {epoch}", written,
            f"{kept} complete checkpoint(s) of earlier epochs kept, from which the run resumes" if kept
            else "no earlier checkpoint, so the run starts over",
        )

    def _end_epoch_without_validation(self, stats, epoch):
        """End of an epoch of a run without validation (``valid_pct: 0``), as the paper's code.

        Logs the epoch and saves its checkpoint with the training loss as
        ``loss`` (checkpoints kept by it); with ``use_zs_loader`` the zero-shot
        top-1 is scored here and checkpoints are kept by it (``acc``).
        """
        valid_stats = None
        if getattr(self, "zeroshot", None) is not None:
            valid_stats = {"acc": self.zeroshot(self.modules.model, self.device)["top1"] or 0.0}
        # The plateau schedule watches the training loss here, as the paper's code does without validation.
        lr = self.end_of_epoch_lr(epoch, stats["loss"])
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr": lr}, train_stats=stats, valid_stats=valid_stats
        )
        self._save_checkpoint(dict(stats, **(valid_stats or {})), epoch)
