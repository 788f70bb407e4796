#!/usr/bin/env python3
"""Trains a SoftCLAP student: CLAP training whose contrastive targets are softened by a frozen teacher.

The targets of the audio→text rows come from the frozen teacher's audio–audio
cosines of the batch, those of the text→audio rows from its text–text cosines:
``(1-β)·I + β·S`` with the paper code's KL (``softclap_targets: paper``, the
paper's YAMLs), or our row-normalised variant (``normalized``); see
``models.loss.SoftClapLoss``.
Everything else (data, curated/replay mixing, resuming, DDP) is the teacher
recipe's (:func:`training.run.run_training`).

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

from experiment.weights import load_weights
from experiment.safety import run_cli
from training.brain import CLAPBrain
from training.run import run_training

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
        """The teacher's embeddings for :class:`models.loss.SoftClapLoss` (training only: validation keeps the plain
        loss)."""
        if len(predictions) < 5:
            return {}
        return {"teacher_audio": predictions[3], "teacher_text": predictions[4]}


def load_teacher(hparams):
    """Builds the frozen teacher: from ``teacher_checkpoints_dir`` (a run's save folder) or the published file
    (``clap_ckpt_path`` / ``laion_ckpt_path``, any layout of :mod:`models.convert`).

    ``teacher_checkpoints_dir`` defaults to ``ssl_checkpoints_dir`` (the paper's YAMLs: the student starts from
    its teacher); its checkpoint is chosen by ``teacher_select`` (default: ``ssl_select``), else by the paper
    code's ``use_maxacc_ep`` / ``use_minloss_ep``, which the paper's code applies to both folders.
    """
    if hparams.get("teacher_checkpoints_dir"):
        flags = {"ssl_checkpoints_dir": hparams["teacher_checkpoints_dir"], "ssl_select": hparams["teacher_select"],
                 "use_maxacc_ep": hparams.get("use_maxacc_ep"), "use_minloss_ep": hparams.get("use_minloss_ep")}
    else:
        flags = {"clap_ckpt_path": hparams.get("clap_ckpt_path"), "laion_ckpt_path": hparams.get("laion_ckpt_path")}
    source = load_weights(hparams["teacher_model"], flags,
                          {"ssl_checkpoints_dir": "teacher_checkpoints_dir", "ssl_select": "teacher_select"})
    if source is None:
        raise SystemExit(
            "SoftCLAP needs a teacher: give --teacher_checkpoints_dir=<save folder of the teacher run> "
            "or --clap_ckpt_path=<CLAP_weights_2022.pth> (or --laion_ckpt_path=<630k-audioset-best.pt> with "
            "--model=<its preset>)."
        )
    logger.info("Teacher: %s", source)
    return {"teacher": hparams["teacher_model"]}


def main(argv=None):
    """Parses flags, prepares the corpora, loads the teacher, trains the student and evaluates it."""
    return run_training(argv, SoftCLAPBrain, brain_kwargs=load_teacher)


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
