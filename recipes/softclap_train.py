#!/usr/bin/env python3
"""Trains a SoftCLAP student: CLAP training whose contrastive targets are softened by a frozen teacher.

The targets of the audio→text rows are ``(1-β)·I + β·P_audio`` and those of
the text→audio rows ``(1-β)·I + β·P_text``, where ``P`` is the frozen
teacher's within-modality cosine matrix of the batch with negative cosines set
to zero and rows normalised to sum to one (``models.loss.soft_targets``).
Everything else (data, curated/replay mixing, resuming, DDP) is the teacher
recipe's.

To run this recipe:
    python recipes/softclap_train.py hparams/insper/softclap_train.yaml \
        --data_annot_folder=/data/insper --train_csv_path=teacher/save/train_raw.csv \
        --curation_csv=ads.csv --curation_prob=0.5 --ssl_checkpoints_dir=teacher/save \
        --teacher_checkpoints_dir=teacher/save --softclap_beta=0.3 --experiment_name=ads_softclap

Authors
 * The project's founding engineers, 2026 (after Wang et al., arXiv 2305.01864)
"""

import logging
import sys

import torch
import speechbrain as sb

from models.checkpoints import load_clap_checkpoint
from recipes import common
from recipes.microsoft_clap_train import CLAPBrain, main

logger = logging.getLogger(__name__)


class SoftCLAPBrain(CLAPBrain):
    """CLAPBrain plus a frozen teacher whose similarities soften the training targets.

    The teacher is kept outside ``modules``: it is not in the optimizer, not
    wrapped by DDP, not saved in checkpoints (it is reloaded from its source
    on every start), always in eval mode and run without gradients.
    """

    def __init__(self, *args, teacher=None, **kwargs):
        super().__init__(*args, **kwargs)
        if teacher is None:
            raise ValueError("SoftCLAPBrain needs a teacher model.")
        self.teacher = teacher.to(self.device).eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)

    def compute_forward(self, batch, stage):
        """Student outputs, plus the teacher's embeddings during training."""
        student = super().compute_forward(batch, stage)
        if stage != sb.Stage.TRAIN or self.hparams.softclap_beta == 0:
            return student
        self.teacher.eval()
        with torch.no_grad():
            teacher_audio = self.teacher.encode_audio(batch.sig.data.to(self.device))
            teacher_text = self.teacher.encode_text(**self.tokens(batch))
        return student + (teacher_audio, teacher_text)

    def soft_target_inputs(self, predictions, stage):
        """The teacher's embeddings and β for the loss (training only: validation keeps the plain loss)."""
        if len(predictions) < 5:
            return {}
        return {"teacher": predictions[3:5], "beta": float(self.hparams.softclap_beta)}


def load_teacher(hparams):
    """Builds the frozen teacher: from ``teacher_checkpoints_dir`` (our save folder) or the MS CLAP file."""
    teacher = hparams["teacher_model"]
    if hparams.get("teacher_checkpoints_dir"):
        ckpt = common.load_model_from_save(teacher, hparams["teacher_checkpoints_dir"], hparams["teacher_select"])
        logger.info("Teacher: checkpoint %s", ckpt)
    elif hparams.get("clap_ckpt_path"):
        load_clap_checkpoint(teacher, hparams["clap_ckpt_path"])
        logger.info("Teacher: MS CLAP %s", hparams["clap_ckpt_path"])
    else:
        raise SystemExit(
            "SoftCLAP needs a teacher: give --teacher_checkpoints_dir=<save folder of the teacher run> "
            "or --clap_ckpt_path=<CLAP_weights_2022.pth>."
        )
    return {"teacher": teacher}


if __name__ == "__main__":
    main(sys.argv[1:], brain_class=SoftCLAPBrain, extra_brain_kwargs=load_teacher)
