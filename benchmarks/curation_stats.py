"""Where a teacher's cosines sit: the figures the docs quote about curating with the toy teacher.

Reads the embedding folder of the curation step (``emb_dir``: ``audio_emb.npy``,
``audio_paths.txt``, ``text_emb.npy``, ``text_captions.csv`` and, when DS has run,
``ds_<set>_summary.json``) and reports, from the stored rows (float64 dot
products, as the join decides):

- each unpaired clip's **best cosine** with any caption (min, 10th percentile,
  median, 90th percentile, max);
- **all clip–caption cosines** (median, 99th percentile, max);
- the **DU pairs** at each ``--thresholds`` value (``>=``): pairs, clips with
  at least one pair, distinct captions used, and, with ``--world``, the share of
  pairs whose caption names an event of the clip (the toy world's truth, as
  ``pair_precision`` in the toy pipeline);
- the **DS counts** its summaries record (threshold, captions and training
  pairs kept of the total).

Usage (after README command 1; the toy pipeline's embeddings are in
``toy_results/seed1234/curation/save``)::

    python benchmarks/curation_stats.py --emb_dir=toy_results/seed1234/curation/save \
        --world=toy_results/world [--thresholds 0.6 0.75 0.82] [--json] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

from machine import emit_json

TARGET_SETS = ("esc50", "us8k", "tut17")


def quantiles(values, qs):
    """``{"q0.50": ...}`` of ``values`` (4 decimals)."""
    return {f"q{q:.2f}": round(float(np.quantile(values, q)), 4) for q in qs}


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def read_captions(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def clip_events(world):
    """``{wav_path: set of events}`` of the unpaired pool (``unpaired_labels.csv``), keyed by path and by file name."""
    truth = {}
    with open(os.path.join(world, "unpaired_labels.csv"), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            events = set(filter(None, row["events"].split(";")))
            truth[row["wav_path"]] = events
            truth[os.path.basename(row["wav_path"])] = events
    return truth


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emb_dir", required=True, help="The embedding folder of the curation step.")
    parser.add_argument("--world", default=None, help="The toy world (for the share of right pairs).")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.6, 0.75],
                        help="DU thresholds to count pairs at (default: 0.6 and the paper's 0.75).")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)

    emb_dir = args.emb_dir
    audio = np.load(os.path.join(emb_dir, "audio_emb.npy")).astype(np.float64)
    text = np.load(os.path.join(emb_dir, "text_emb.npy")).astype(np.float64)
    paths = read_lines(os.path.join(emb_dir, "audio_paths.txt"))
    captions = read_captions(os.path.join(emb_dir, "text_captions.csv"))
    if len(paths) != len(audio) or len(captions) != len(text):
        raise SystemExit(f"{emb_dir}: the embeddings do not match their path / caption lists")

    cos = audio @ text.T  # [clips, captions]
    best = cos.max(axis=1)
    result = {
        "emb_dir": os.path.abspath(emb_dir),
        "clips": len(audio),
        "captions": len(text),
        "caption_rows": sum(int(c.get("n_rows") or 1) for c in captions),
        "best_cosine_per_clip": {"min": round(float(best.min()), 4),
                                 **quantiles(best, (0.1, 0.5, 0.9)),
                                 "max": round(float(best.max()), 4)},
        "all_cosines": {**quantiles(cos.ravel(), (0.5, 0.99)), "max": round(float(cos.max()), 4)},
        "du": {},
        "ds": {},
    }

    truth = clip_events(args.world) if args.world else None
    if truth is not None:
        from dataset.toy.captions import caption_events

        named = [set(caption_events(c["caption"])) for c in captions]
    for thr in args.thresholds:
        kept = cos >= thr
        entry = {
            "pairs": int(kept.sum()),
            "clips_with_pair": int(kept.any(axis=1).sum()),
            "captions_used": int(kept.any(axis=0).sum()),
            "share_of_all_pairs": round(float(kept.mean()), 4),
        }
        if truth is not None and entry["pairs"]:
            rows, cols = np.nonzero(kept)
            hits = sum(bool(truth.get(paths[r], truth.get(os.path.basename(paths[r]), set())) & named[c])
                       for r, c in zip(rows.tolist(), cols.tolist()))
            entry["pair_precision"] = round(hits / entry["pairs"], 4)
        result["du"][f"{thr:g}"] = entry

    for target in TARGET_SETS:
        path = os.path.join(emb_dir, f"ds_{target}_summary.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                s = json.load(f)
            result["ds"][target] = {k: s.get(k) for k in ("threshold", "captions_kept", "captions_total",
                                                           "pairs_kept", "pairs_total")}

    emit_json(result, args.out, args.json)
    if not args.json:
        b, a = result["best_cosine_per_clip"], result["all_cosines"]
        print(f"{result['clips']} clips x {result['captions']} distinct captions ({result['caption_rows']} rows)")
        print(f"best cosine per clip: min {b['min']}, median {b['q0.50']}, max {b['max']}")
        print(f"all cosines: median {a['q0.50']}, 99th percentile {a['q0.99']}, max {a['max']}")
        for thr, e in result["du"].items():
            extra = f", {e['pair_precision']:.0%} name an event of their clip" if "pair_precision" in e else ""
            print(f"DU at >= {thr}: {e['pairs']} pairs, {e['clips_with_pair']} clips, "
                  f"{e['captions_used']} captions{extra}")
        for target, e in result["ds"].items():
            print(f"DS {target} at {e['threshold']}: {e['captions_kept']} of {e['captions_total']} captions, "
                  f"{e['pairs_kept']} of {e['pairs_total']} pairs")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
