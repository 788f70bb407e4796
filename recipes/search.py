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

import json
import os
import sys

from experiment.safety import run_cli
from experiment.usage import flag_parser, positive_int
from inference.index import (
    IndexFileError, add_model_arguments, check_model_flags, format_table, load_searcher, loading_error,
    model_load_args, search,
)


def parse_arguments(argv):
    """The flags of this command; model flags are optional (``index.json`` records the model)."""
    parser = flag_parser(__file__)
    parser.add_argument("queries", nargs="*", help="Text queries (quote each one).")
    parser.add_argument("--index_folder", required=True, help="The --output_folder of build_index.py.")
    parser.add_argument("--query_file", default=None,
                        help="Text file, one query per line (added to the positional queries).")
    parser.add_argument("--topk", type=positive_int, default=10, help="Files returned per query.")
    parser.add_argument("--nprobe", type=positive_int, default=None,
                        help="IVF cells searched (default: as built; =nlist is exact).")
    parser.add_argument("--json", action="store_true",
                        help="Print JSON ([{query, results: [{rank, score, path}]}]) instead of tables.")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    for i, query in enumerate(args.queries, 1):
        if not query.strip():
            parser.error(f"query {i} is empty ({query!r}): give the words to search for, e.g. \"a dog barks\"")
    if args.query_file:
        if not os.path.isfile(args.query_file):
            parser.error(f"--query_file={args.query_file}: file not found")
        with open(args.query_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        if not lines:
            parser.error(f"--query_file={args.query_file}: no rows in {args.query_file} (one query per line)")
        args.queries += lines
    if not args.queries:
        parser.error("give at least one query (positional, or --query_file)")
    if not os.path.isdir(args.index_folder):
        parser.error(f"--index_folder={args.index_folder}: no such folder; give the --output_folder of "
                     "recipes/build_index.py")
    return args


def main(argv=None):
    """Loads the index and its model, embeds the queries, prints the results; returns them."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    given = {k: v for k, v in model_load_args(args).items()
             if v is not None and (k != "ssl_select" or args.ssl_checkpoints_dir)}
    check_model_flags(args)
    try:
        index, paths, info, embedder = load_searcher(args.index_folder, **given)
    except IndexFileError as err:  # a damaged index folder: one line naming the file and the rebuild command
        raise SystemExit(f"ERROR: {err}") from None
    except (ValueError, OSError) as err:
        raise loading_error(args, err) from None
    if args.nprobe is not None and info.get("index_type") != "ivf":
        raise SystemExit(f"--nprobe={args.nprobe} and the {info.get('index_type')} index in {args.index_folder} "
                         "conflict: --nprobe sets the cells an IVF index searches (build_index.py --index_type=ivf); "
                         "a flat index searches every file: drop --nprobe.")
    results = search(index, paths, embedder.embed_text(args.queries), args.topk, args.nprobe)
    answers = [{"query": q, "results": r} for q, r in zip(args.queries, results)]
    if args.json:
        print(json.dumps(answers, indent=1, ensure_ascii=False))
    else:
        print("\n\n".join(format_table(a["query"], a["results"]) for a in answers))
    return answers


if __name__ == "__main__":
    run_cli(main)
