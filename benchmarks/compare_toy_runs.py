#!/usr/bin/env python3
"""Paired comparison of two toy-pipeline runs that share their world, teachers and seeds.

For every model and target set scored in both runs, the difference of top-1
(run B minus run A, in points, pooled over the seeds both ran) with its 95 %
paired bootstrap interval over clips (:mod:`pipeline.intervals`: the same
resampled clips for both runs). Typical use: the same teachers and curated
pairs, students trained with our settings (A) and with the paper code's (B).

Usage:
    python benchmarks/compare_toy_runs.py RUN_A RUN_B [--json out.json]

Each run folder is a toy pipeline ``--output_folder`` (its
``seed<N>/stages/zeroshot_*.json`` markers name the ``predictions.csv``
files). A cell counts as "shown" when its interval excludes 0.
"""

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeline.intervals import clip_resamples, correct_matrix, difference_interval, shown  # noqa: E402


def predictions(run):
    """``{(model stage name, set): {seed: predictions.csv}}`` of a run, from its zero-shot markers."""
    out = {}
    for marker in glob.glob(os.path.join(run, "seed*", "stages", "zeroshot_*.json")):
        seed = int(marker.split(os.sep)[-3][len("seed"):])
        with open(marker, encoding="utf-8") as f:
            stage = json.load(f)
        name = stage["name"][len("zeroshot_"):]
        model, target = name.rsplit("_", 1)
        # The run's own folder (a moved or copied run keeps the old absolute paths in its markers).
        folder = os.path.basename(os.path.dirname(stage["outputs"]["json"]))
        path = os.path.join(run, f"seed{seed}", "zeroshot", folder, "predictions.csv")
        if os.path.isfile(path):
            out.setdefault((model, target), {})[seed] = path
    return out


def compare(run_a, run_b):
    """One entry per (model, set) scored in both runs on the same seeds: means and the paired interval."""
    a, b = predictions(run_a), predictions(run_b)
    rows = []
    for key in sorted(set(a) & set(b)):
        seeds = sorted(set(a[key]) & set(b[key]))
        if not seeds:
            continue
        clips_a, ca = correct_matrix([a[key][s] for s in seeds])
        clips_b, cb = correct_matrix([b[key][s] for s in seeds], clips=clips_a)
        low, high = difference_interval(cb, ca, clip_resamples(len(clips_a)))
        rows.append({
            "model": key[0], "dataset": key[1], "seeds": seeds, "clips": len(clips_a),
            "top1_a": 100 * float(ca.mean()), "top1_b": 100 * float(cb.mean()),
            "diff": 100 * float(cb.mean() - ca.mean()), "ci_low": 100 * low, "ci_high": 100 * high,
            "shown": shown((low, high)),
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = compare(args.run_a, args.run_b)
    if not rows:
        raise SystemExit("no model and set scored in both runs on the same seeds")
    print(f"B = {args.run_b} minus A = {args.run_a}: top-1 points, 95 % paired bootstrap interval over clips")
    print("| model | set | A | B | B − A [95 % interval] |")
    print("|---|---|---|---|---|")
    for r in rows:
        verdict = {1: "", -1: "", 0: " not shown"}[r["shown"]]
        print(f"| {r['model']} | {r['dataset']} | {r['top1_a']:.1f} | {r['top1_b']:.1f} | "
              f"{r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]{verdict} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"run_a": os.path.abspath(args.run_a), "run_b": os.path.abspath(args.run_b), "rows": rows},
                      f, indent=1)


if __name__ == "__main__":
    main()
