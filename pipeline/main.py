"""The pipeline command: read the YAML, check every input, lay out the stages of every seed, run them, tabulate.

Shared by ``recipes/pipeline.py`` (any data) and ``recipes/toy_pipeline.py``
(the toy world, whose generation is the first stage). A YAML with
``world_size`` is a toy plan; otherwise its input keys (``teacher``,
``unpaired_audio``, ``caption_pool``, ``target_sets`` / ``target_folders``,
``label_lists``) name the user's data (:mod:`pipeline.sources`).
"""

import os
import time

from experiment.command_line import CommandLine
from experiment.lock import hold_folder_lock
from experiment.runtime import inference_precision
from pipeline.audit import check_leakage_keys
from pipeline.plan import SeedPlan
from pipeline.results import machine_description, write_results
from pipeline.stages import Runner, Stage
from pipeline.toy import check_hparams, existing_outputs, parse_seeds

__all__ = ["run_pipeline"]


def _device(hparams):
    """``device``: as given; empty: CUDA when this machine has it, else the recipes' default (CPU)."""
    if hparams.get("device"):
        return hparams["device"]
    import torch

    return "cuda:0" if torch.cuda.is_available() else None


def _toy_stage(hparams, out):
    from dataset.toy import generate_toy_world

    world = os.path.join(out, "world")
    stage = Stage("world", f"toy world ({hparams['world_size']}, seed {hparams['world_seed']})",
                  marker_dir=os.path.join(out, "stages"), log_dir=os.path.join(out, "logs"),
                  command=lambda: ["dataset.toy_world", world, hparams["world_size"], str(hparams["world_seed"])],
                  run=lambda: {"world_json": generate_toy_world(world, hparams["world_size"],
                                                                int(hparams["world_seed"]))["paths"]["world_json"]},
                  outputs=lambda stdout: existing_outputs({"world_json": os.path.join(world, "world.json")}))
    return stage, world, None


def _inputs_stage(hparams, checked, out):
    """The shared first stage of a run on the user's data: the listing of the unpaired audio.

    The listing is made when the stage's command is built, so that the stage's
    digest (and so every stage after it) changes when the audio does.
    """
    from pipeline.sources import list_unpaired, prepare_inputs, user_sources

    sources = user_sources(hparams, checked, out)
    prepare_inputs(hparams, checked, sources, out)
    folder = os.path.join(out, "inputs")
    listing = {}

    def command():
        listing.update(list_unpaired(hparams["unpaired_audio"], folder, exclude=out))
        return ["inputs", str(hparams["unpaired_audio"]), listing["digest"]]

    stage = Stage("inputs", "unpaired audio listed", marker_dir=os.path.join(out, "stages"),
                  log_dir=os.path.join(out, "logs"), command=command, run=lambda: dict(listing),
                  note=lambda o: f"{o['clips']} clips" + (f", {o['unreadable']} unreadable" if o["unreadable"] else ""))
    return stage, None, sources


def run_pipeline(argv, script):
    """Parses flags, checks inputs, builds the stages of every seed, runs them and writes the table.

    Returns the exit code (0: every stage finished).
    """
    command = CommandLine(argv)
    hparams = command.load()
    # --precision is a SpeechBrain run option: given on the command line, it wins over the YAML's key.
    hparams["precision"] = inference_precision(hparams, command.run_opts)
    hparams["device"] = _device(hparams)
    toy = "world_size" in hparams
    check_hparams(hparams, toy=toy)
    check_leakage_keys(hparams)
    checked = None
    if not toy:
        from pipeline.sources import check_user_inputs

        checked = check_user_inputs(hparams)
    launcher, lanes = _launcher(hparams, os.path.abspath(hparams["output_folder"]))
    seeds = parse_seeds(hparams)
    out = os.path.abspath(hparams["output_folder"])
    hold_folder_lock(out, script)
    begin = time.perf_counter()
    print(f"{'Toy pipeline' if toy else 'Pipeline'}: output folder {out}; seeds {seeds}; "
          f"{hparams['jobs']} job(s) at a time", flush=True)
    first, world, sources = _toy_stage(hparams, out) if toy else _inputs_stage(hparams, checked, out)
    plans = [SeedPlan(hparams, seed, first, world, sources) for seed in seeds]
    stages = [first] + [s for plan in plans for s in plan.stages]
    ok = Runner(stages, jobs=hparams["jobs"], **({"launcher": launcher, **lanes} if launcher else {})).run()
    if not ok:
        print("The pipeline stopped at a failed stage (see its log above). Rerun the same command to continue.",
              flush=True)
        return 1
    text = write_results(plans, hparams, seeds, machine_description())
    print("\n" + text)
    try:
        report = write_run_report(plans, hparams, out)
    except Exception as err:  # the table is written; a page that cannot be drawn must not hide it
        report = f"not written ({type(err).__name__}: {err})"
    print(f"Results: {os.path.join(out, 'results.md')}, results.csv, results_per_seed.csv, results.png; "
          f"curation report: {report} ({(time.perf_counter() - begin) / 60:.1f} min)", flush=True)
    return 0


def write_run_report(plans, hparams, out):
    """``report.html`` / ``report.md`` of the run: each seed's round-1 curated sets, the leakage audit, the table."""
    from curation.report import CuratedSet, write_report
    from pipeline.audit import read_leakage_rows

    sets = []
    for plan in plans:
        tag = f"seed {plan.seed} · " if len(plans) > 1 else ""
        for (key, target), stage in plan.curated.items():
            outputs = (stage.result or {}).get("outputs") or {}
            if "@r" in key or not outputs.get("csv"):
                continue
            emb_dir = os.path.dirname(outputs["csv"])
            info = plan.src.targets.get(target) if target else None
            caption_set = "text" if key == "du" else info.caption_set
            threshold = outputs.get("threshold")
            if key == "ds":
                threshold = plan.src.ds_threshold(target)
            labels = _target_labels(emb_dir, caption_set) if key == "ds" else None
            sets.append(CuratedSet(name=f"{tag}{key.upper()}" + (f" {target}" if target else ""),
                                   kind=key, emb_dir=emb_dir, pairs_csv=outputs["csv"], caption_set=caption_set,
                                   threshold=threshold, labels=labels, seed=plan.seed))
    title = ("Toy-world curation report" if "world_size" in hparams else "Curation report") + f": {out}"
    written = write_report(out, sets, results_csv=os.path.join(out, "results.csv"),
                           leakage_rows=read_leakage_rows(plans), title=title)
    return written["html"]


def _target_labels(emb_dir, caption_set):
    """Every label of a DS caption set (recorded by the DS step in ``embeddings.json``), so empty labels show."""
    from dataset.manifest import read_json_or_none

    info = read_json_or_none(os.path.join(emb_dir, "embeddings.json")) or {}
    return (info.get(caption_set) or {}).get("labels")


def _launcher(hparams, out):
    """The stage launcher of ``executor`` (local processes, SLURM jobs) and the torchrun sizes; checked early."""
    try:
        from pipeline.launch import make_launcher
    except ImportError:  # before the launchers exist: local subprocesses
        return None, {}
    return make_launcher(hparams, out), {"nproc_per_node": int(hparams.get("nproc_per_node") or 1),
                                         "nnodes": int(hparams.get("nnodes") or 1)}
