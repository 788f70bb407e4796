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

import sys

from experiment.safety import run_cli
from training.brain import CLAPBrain
from training.run import run_training


def main(argv=None):
    """Parses flags, prepares the corpora, trains a :class:`training.brain.CLAPBrain` and evaluates it.

    The steps are SpeechBrain's canonical ones (:func:`training.run.run_training`).
    """
    return run_training(argv, CLAPBrain)


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
