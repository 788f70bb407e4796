"""Text-to-audio search on the toy world: precision of event queries over an index from build_index.py.

For every event the indexed clips contain, the query ``this is a sound of
<event>`` (``_`` read as a space, as the zero-shot prompts) is searched with
``inference.index.search``, the code of ``recipes/search.py``. A result is
right when the clip holds the event, which only the toy world can say: a toy
Clotho clip holds the events its captions name (``dataset.toy.captions.caption_events``),
a toy ESC-50 clip its ``category``. Reported: P@k (mean over queries of the
right results among the top k), the share of queries with a right clip in the
top 5, and chance (mean over queries of right clips / indexed clips, the P@k of
a random ranking).

Usage (after README command 1 and the index of the toy example in docs/retrieval.md)::

    python recipes/build_index.py --audio_folder=toy_results/world/clotho --output_folder=toy_results/index \
        --ssl_checkpoints_dir=toy_results/seed1234/teacher/save
    python benchmarks/search_precision.py --index_folder=toy_results/index --world=toy_results/world [--json]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys

from machine import emit_json

KS = (1, 5, 10)


def clip_truth(world):
    """``{absolute wav path: set of events}`` of the toy Clotho and ESC-50 clips."""
    from dataset.toy.captions import caption_events

    truth = {}
    for path in glob.glob(os.path.join(world, "clotho", "clotho_captions_*.csv")):
        split = os.path.basename(path)[len("clotho_captions_"):-len(".csv")]
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                wav = os.path.abspath(os.path.join(world, "clotho", split, row["file_name"]))
                events = truth.setdefault(wav, set())
                for key, caption in row.items():
                    if key.startswith("caption_") and caption:
                        events.update(caption_events(caption))
    meta = os.path.join(world, "ESC-50", "meta", "esc50.csv")
    if os.path.isfile(meta):
        with open(meta, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                truth[os.path.abspath(os.path.join(world, "ESC-50", "audio", row["filename"]))] = {row["category"]}
    return truth


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index_folder", required=True, help="The --output_folder of build_index.py.")
    parser.add_argument("--world", required=True, help="The toy world the indexed clips come from.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)

    from inference.index import load_searcher, search

    index, paths, info, embedder = load_searcher(args.index_folder)
    truth = clip_truth(args.world)
    events = [truth.get(os.path.abspath(p)) for p in paths]
    unknown = sum(e is None for e in events)
    if unknown:
        raise SystemExit(f"{unknown} of the {len(paths)} indexed files are not toy Clotho or ESC-50 clips "
                         f"of {args.world}")
    labels = sorted(set().union(*events))
    queries = [f"this is a sound of {label.replace('_', ' ')}" for label in labels]
    results = search(index, paths, embedder.embed_text(queries), max(KS))

    per_query = []
    for label, query, found in zip(labels, queries, results):
        right = [label in truth[os.path.abspath(r["path"])] for r in found]
        relevant = sum(label in e for e in events)
        per_query.append({"query": query, "relevant": relevant,
                          **{f"P@{k}": sum(right[:k]) / k for k in KS},
                          "right_in_top5": any(right[:5])})
    n = len(per_query)
    summary = {f"P@{k}": round(sum(q[f"P@{k}"] for q in per_query) / n, 4) for k in KS}
    summary["queries_with_right_clip_in_top5"] = round(sum(q["right_in_top5"] for q in per_query) / n, 4)
    summary["chance"] = round(sum(q["relevant"] for q in per_query) / n / len(paths), 4)
    result = {
        "index_folder": os.path.abspath(args.index_folder),
        "audio_source": info.get("audio_source"),
        "model_source": info["model"]["source"],
        "clips": len(paths),
        "queries": n,
        **summary,
        "per_query": per_query,
    }
    emit_json(result, args.out, args.json)
    if not args.json:
        print(f"{n} queries over {len(paths)} clips of {result['audio_source']} ({result['model_source']})")
        print(", ".join(f"P@{k} {summary[f'P@{k}']:.2f}" for k in KS)
              + f" (chance {summary['chance']:.3f}); "
              f"{summary['queries_with_right_clip_in_top5']:.0%} of queries have a right clip in the top 5")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
