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

The stages are laid out by :mod:`pipeline.toy`, run by :mod:`pipeline.stages`
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
import time

from dataset.toy import generate_toy_world
from experiment.command_line import CommandLine
from experiment.lock import hold_folder_lock
from experiment.runtime import inference_precision
from pipeline.launch import make_launcher
from pipeline.results import machine_description, write_results
from pipeline.stages import Runner, Stage
from pipeline.toy import SeedPlan, check_hparams, existing_outputs, parse_seeds


def main(argv=None):
    """Parses flags, builds the stages of every seed, runs them and writes the table."""
    command = CommandLine(argv)
    hparams = command.load()
    # --precision is a SpeechBrain run option: given on the command line, it wins over the YAML's key.
    hparams["precision"] = inference_precision(hparams, command.run_opts)
    check_hparams(hparams)
    seeds = parse_seeds(hparams)
    out = os.path.abspath(hparams["output_folder"])
    hold_folder_lock(out, "toy_pipeline.py")
    world = os.path.join(out, "world")
    begin = time.perf_counter()
    print(f"Toy pipeline: output folder {out}; seeds {seeds}; {hparams['jobs']} job(s) at a time", flush=True)

    world_stage = Stage("world", f"toy world ({hparams['world_size']}, seed {hparams['world_seed']})",
                        marker_dir=os.path.join(out, "stages"), log_dir=os.path.join(out, "logs"),
                        command=lambda: ["dataset.toy_world", world, hparams["world_size"], str(hparams["world_seed"])],
                        run=lambda: {"world_json": generate_toy_world(world, hparams["world_size"],
                                                                      int(hparams["world_seed"]))["paths"]["world_json"]},
                        outputs=lambda stdout: existing_outputs({"world_json": os.path.join(world, "world.json")}))
    plans = [SeedPlan(hparams, seed, world_stage, world) for seed in seeds]
    stages = [world_stage] + [s for plan in plans for s in plan.stages]
    ok = Runner(stages, jobs=hparams["jobs"], launcher=make_launcher(hparams, out),
                nproc_per_node=hparams.get("nproc_per_node", 1), nnodes=hparams.get("nnodes", 1)).run()
    if not ok:
        print("The pipeline stopped at a failed stage (see its log above). Rerun the same command to continue.",
              flush=True)
        return 1
    text = write_results(plans, hparams, seeds, machine_description())
    print("\n" + text)
    print(f"Results: {os.path.join(out, 'results.md')}, results.csv, results_per_seed.csv, results.png "
          f"({(time.perf_counter() - begin) / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
