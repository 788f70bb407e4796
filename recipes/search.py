#!/usr/bin/env python3
"""Text-to-audio search: answers text queries with the closest files of an index from build_index.py.

Each query is embedded with the model that built the index (``index.json``
records how to load it, and the fingerprint of its weights, which is
checked); the index returns the ``--topk`` files with the highest cosine.
Results are printed as one table per query, or as JSON with ``--json``.

To run this recipe:
    python recipes/search.py --index_folder=$INDEX_DIR "a dog barks" "rain on a roof" --topk=10
    python recipes/search.py --index_folder=$INDEX_DIR --query_file=queries.txt --json > results.json
The model flags of build_index.py (``--clap_ckpt_path``, ``--ssl_checkpoints_dir``,
``--text_model``, ...) override the recorded ones, e.g. when the checkpoint has moved.

Authors
 * clap-curation-recipes contributors
"""

import argparse
import json
import sys

import numpy as np

from recipes.build_index import add_model_arguments, load_index, model_load_args
from recipes.inference import ClapEmbedder


def search(index, paths, query_emb, topk=10, nprobe=None):
    """The ``topk`` files of ``index`` closest to each query embedding.

    Arguments
    ---------
    index : faiss.Index
        An inner-product index (see :func:`recipes.build_index.make_index`).
    paths : list of str
        Path of each row of the index.
    query_emb : numpy.ndarray
        ``[Q, d]`` unit-norm query embeddings.
    topk : int
        Results per query (fewer if the index holds fewer files, or an IVF
        search finds fewer in its ``nprobe`` cells).
    nprobe : int, optional
        IVF cells searched (default: the index's own setting).

    Returns
    -------
    list of list of dict
        Per query, ``{"rank", "score", "path"}`` best first.

    Example
    -------
    >>> import faiss
    >>> index = faiss.IndexFlatIP(2)
    >>> index.add(np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype="float32"))
    >>> [(r["path"], round(r["score"], 2)) for r in search(index, ["a", "b", "c"], np.array([[0.0, 1.0]]), 2)[0]]
    [('b', 1.0), ('c', 0.8)]
    """
    import faiss

    if nprobe is not None:
        faiss.extract_index_ivf(index).nprobe = int(nprobe)
    k = min(int(topk), index.ntotal)
    scores, rows = index.search(np.ascontiguousarray(query_emb, dtype=np.float32), k)
    return [
        [{"rank": r + 1, "score": float(s), "path": paths[i]} for r, (s, i) in enumerate(zip(row_s, row_i)) if i >= 0]
        for row_s, row_i in zip(scores, rows)
    ]


def load_searcher(index_folder, **model_flags):
    """The index, its paths, its info and the model that built it (weights checked against the fingerprint).

    ``model_flags`` (``ClapEmbedder.from_pretrained`` arguments) replace the recorded ones.
    """
    index, paths, info = load_index(index_folder)
    record = info["model"]
    load = dict(record["load"], **record["architecture"])
    load.update(model_flags)
    try:
        embedder = ClapEmbedder.from_pretrained(**load)
    except FileNotFoundError as err:
        raise SystemExit(
            f"Cannot load the model that built {index_folder} ({record['source']}): {err}\n"
            "If it has moved, give its new place with --ssl_checkpoints_dir / --clap_ckpt_path."
        ) from err
    if embedder.fingerprint != record["fingerprint"]:
        raise SystemExit(
            f"The model loaded ({embedder.source}) is not the one that built {index_folder} "
            f"({record['source']}): its weights differ. Rebuild the index or give the original model flags."
        )
    return index, paths, info, embedder


def format_table(query, results):
    """One query's results as a text table.

    Example
    -------
    >>> print(format_table("dog", [{"rank": 1, "score": 0.5, "path": "/a/dog 1.wav"}]))
    query: dog
      rank   score  path
         1  0.5000  /a/dog 1.wav
    """
    lines = [f"query: {query}", "  rank   score  path"]
    lines += [f"{r['rank']:>6}  {r['score']:.4f}  {r['path']}" for r in results]
    if not results:
        lines.append("  (no result)")
    return "\n".join(lines)


def parse_arguments(argv):
    """The flags of this command; model flags are optional (``index.json`` records the model)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("queries", nargs="*", help="Text queries (quote each one).")
    parser.add_argument("--index_folder", required=True, help="The --output_folder of build_index.py.")
    parser.add_argument("--query_file", default=None, help="Text file, one query per line (added to the positional queries).")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=None, help="IVF cells searched (default: as built; =nlist is exact).")
    parser.add_argument("--json", action="store_true", help="Print JSON ([{query, results: [{rank, score, path}]}]) instead of tables.")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.query_file:
        with open(args.query_file, encoding="utf-8") as f:
            args.queries += [line.strip() for line in f if line.strip()]
    if not args.queries:
        parser.error("give at least one query (positional, or --query_file)")
    return args


def main(argv=None):
    """Loads the index and its model, embeds the queries, prints the results; returns them."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    given = {k: v for k, v in model_load_args(args).items() if v is not None and (k != "ssl_select" or args.ssl_checkpoints_dir)}
    index, paths, info, embedder = load_searcher(args.index_folder, **given)
    results = search(index, paths, embedder.embed_text(args.queries), args.topk, args.nprobe)
    answers = [{"query": q, "results": r} for q, r in zip(args.queries, results)]
    if args.json:
        print(json.dumps(answers, indent=1, ensure_ascii=False))
    else:
        print("\n\n".join(format_table(a["query"], a["results"]) for a in answers))
    return answers


if __name__ == "__main__":
    main()
