#!/usr/bin/env python3
"""The whole method in one command, on your data: teacher, curation, students, zero-shot table, rounds.

The YAML names the data (see docs/your_data.md):

- ``teacher``: ``train`` (on ``teacher_data``: prepared corpora or caption
  CSVs) or an existing model: a LAION-CLAP ``.pt``, an MS CLAP ``.pth``, a
  Hugging Face ``ClapModel`` folder or one of our experiment folders; its
  architecture is read from the file;
- ``unpaired_audio``: a folder (recursive), a list file, a CSV or webdataset
  tar shards (``<key>.flac`` + ``<key>.json`` per sample);
- ``caption_pool``: the teacher's training captions (``teacher``) and/or
  caption CSVs and text files, for DU and DS;
- ``target_sets`` with ``target_folders`` (esc50, us8k, tut17, vggsound,
  tau19: DS label prompts and zero-shot scores), and/or ``label_lists`` (your
  class names: DS / ADS on a domain with no scoring set);
- thresholds (fixed cosines, or derived from the teacher's own cosines),
  students (DU, DS, ADS, DS+SoftCLAP, ADS+SoftCLAP), ``rounds`` of
  self-training, ``seeds``, ``precision``, ``device``, ``jobs``, and the
  launch: ``nproc_per_node`` / ``nnodes`` (torchrun) and ``executor: local |
  slurm`` (submitit).

Every stage runs one of the recipes users call, as a subprocess, with its
YAML; each prints one line, records a marker and is skipped on a rerun;
a killed training resumes from its last checkpoint. A YAML with
``world_size`` (``hparams/toy/pipeline.yaml``) is the toy plan of
``recipes/toy_pipeline.py``, whose first stage makes the toy world.

To run this recipe:
    python recipes/pipeline.py hparams/pipeline/laion_own_audio.yaml --teacher=/ckpt/630k-audioset-best.pt \
        --unpaired_audio=/data/my_audio --output_folder=my_results
The paper's setup on the public datasets:
    python recipes/pipeline.py hparams/pipeline/paper.yaml --output_folder=paper_results
The toy world:
    python recipes/pipeline.py hparams/toy/pipeline.yaml --output_folder=toy_results

Authors
 * clap-curation-recipes contributors (after Wang et al., arXiv 2305.01864)
"""

import os
import sys

# This script's name is the package's: import the package, not the script's folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
from pipeline.main import run_pipeline  # noqa: E402


def main(argv=None):
    """Runs the plan of the YAML (see the module docstring)."""
    return run_pipeline(argv, "pipeline.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
