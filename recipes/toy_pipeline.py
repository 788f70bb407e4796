#!/usr/bin/env python3
"""The whole method in one command on the toy world: teacher, curation, students, zero-shot table.

Stages (each one runs a recipe users call, with its YAML, as a subprocess):

1. the toy world (``dataset.toy_world``): captioned corpus, unpaired pool and
   three target sets in the ESC-50, UrbanSound8K and TUT2017 layouts;
2. the teacher (``recipes/microsoft_clap_train.py``), then its zero-shot
   accuracy on every target set (``recipes/microsoft_zeroshot.py``);
3. curation: embeddings of the unpaired pool and the teacher's captions
   (``recipes/microsoft_curation_toemb.py``), DU pairs
   (``recipes/retrieve_from_emb_thresh.py``), DS pairs per target set
   (``recipes/retrieve_ds_t2t.py``) and ADS pairs per target set;
4. students that start from the teacher: CLAP with DU (replay: the teacher's
   training pairs), DS (the DS pairs as the training set), ADS (DS pairs as
   replay, ADS pairs curated), and SoftCLAP (``recipes/softclap_train.py``)
   with DS and ADS; each is scored zero-shot on its target set (DU on all);
5. the table: ``results.md``, ``results.csv``, ``results_per_seed.csv`` and
   ``results.png`` in the output folder, printed at the end.

This is ``recipes/pipeline.py`` with a toy plan (``pipeline.main``). The stages are laid out by
:mod:`pipeline.plan`, run by :mod:`pipeline.stages`
and tabulated by :mod:`pipeline.results`. Each stage prints one progress line and records a marker
(``<seed folder>/stages/<name>.json``) holding a digest of its command and of
the stages it depends on. A rerun skips stages whose marker matches, reruns
those whose inputs changed, and resumes an interrupted training from its last
checkpoint (``--resume_interrupt=True``). Independent stages run side by side
(``jobs``), each with ``cpus / jobs`` threads.

To run this recipe:
    python recipes/toy_pipeline.py hparams/toy/pipeline.yaml --output_folder=toy_results
Three seeds, mean ± spread per cell:
    python recipes/toy_pipeline.py hparams/toy/pipeline.yaml --output_folder=toy_results --seeds=1,2,3

Authors
 * clap-curation-recipes contributors (after Wang et al., arXiv 2305.01864)
"""

import os
import sys

# recipes/pipeline.py is named as the package: import the package, not this script's folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
from pipeline.main import run_pipeline  # noqa: E402


def main(argv=None):
    """The pipeline runner (``recipes/pipeline.py``) on the toy plan: world generation is its first stage."""
    return run_pipeline(argv, "toy_pipeline.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
