"""The Brain of CLAP training: contrastive loss over the global batch, curated steps, checkpoints.

Used as is by ``recipes/microsoft_clap_train.py`` (teacher and students) and
subclassed by ``recipes/softclap_train.py`` (a frozen teacher softens the
targets).
"""

import logging

import torch
import speechbrain as sb
from speechbrain.utils.distributed import if_main_process

from experiment.checkpoints import COMPLETION_MARKER, CompletionMarker, RNGState, remove_incomplete_checkpoints
from models.text_encoder import tokenize
from training.schedule import cosine_lr, set_lr

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
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("rng", RNGState())
            if getattr(self, "mixer", None) is not None:
                self.checkpointer.add_recoverable("curation_mixer", self.mixer)
            self.checkpointer.add_recoverable(COMPLETION_MARKER, CompletionMarker())

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
            logger.warning("%d clip(s) could not be read in this %s stage; they were left out.",
                           self.unreadable, stage.name)
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
            if epoch % getattr(self.hparams, "num_epoch_save", 1) == 0:  # the paper code's num_epoch_save
                self.checkpointer.save_and_keep_only(meta=meta, num_to_keep=getattr(self.hparams, "num_ckpt_keep", 1),
                                                     **keep)
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
