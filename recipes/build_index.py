#!/usr/bin/env python3
"""Builds a text-to-audio search index: embeds an audio collection with a CLAP model into a faiss index.

Every audio file of a folder (recursively: ``.wav``, ``.flac``, ``.ogg``,
``.mp3``) or of a path list is embedded with :class:`inference.ClapEmbedder`
(long files: windows of ``eval_duration`` averaged) and added to a faiss
inner-product index (:mod:`inference.index`); the embeddings are unit-norm,
so scores are cosines.
``recipes/search.py`` answers text queries with it.

Files written in ``--output_folder`` (and nowhere else): ``index.faiss``,
``paths.txt`` (row i of the index = line i), ``index.json`` (the model and
options; written last, so its presence means the index is complete) and
``embeddings/`` (see :mod:`inference.index` for each file).

Embedding is resumable: killed and run again with the same command, only the
missing shards are embedded; run again when done, the embeddings are reused
(so changing only ``--index_type``/``--nlist`` rebuilds the index in seconds).
Each file's embedding is keyed on its path, size and modification time: run
again after the collection changed, a rewritten file is embedded again, a new
one added and a deleted one dropped, the others kept (the log gives the counts).

To run this recipe:
    python recipes/build_index.py --audio_folder=$AUDIO_DIR --output_folder=$INDEX_DIR \
        --ssl_checkpoints_dir=$EXPERIMENT/save
    python recipes/build_index.py --audio_pathfile=$LIST --output_folder=$INDEX_DIR \
        --clap_ckpt_path=CLAP_weights_2022.pth --text_model=/models/bert-base-uncased \
        --index_type=ivf --nlist=1024 --nprobe=32
The toy world with the toy teacher:
    python recipes/build_index.py --audio_folder=toy_world/ESC-50/audio --output_folder=toy_results/index \
        --ssl_checkpoints_dir=toy_results/toy_teacher/save

Authors
 * clap-curation-recipes contributors
"""

import logging
import os
import sys

from dataset.audio import AUDIO_EXTENSIONS, list_audio_files
from embeddings.extract import embed_audio_files
from embeddings.lists import read_path_list
from embeddings.options import AudioEmbeddingOptions
from embeddings.store import load_audio_set
from experiment.lock import hold_folder_lock
from experiment.safety import run_cli
from experiment.usage import flag_parser, positive_int
from inference.embedder import ClapEmbedder
from inference.index import (
    EMB_DIR, FORMAT_VERSION, INDEX_TYPES, add_model_arguments, check_model_flags, loading_error,
    make_index, model_load_args, model_record, save_index,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------ main
def parse_arguments(argv):
    """The flags of this command (``--key=value`` or ``--key value``)."""
    parser = flag_parser(__file__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio_folder", help="Folder of audio files (searched recursively).")
    source.add_argument("--audio_pathfile", help="Text file, one audio path per line (relative: to the file's folder).")
    parser.add_argument("--output_folder", required=True, help="Where the index goes (nothing is written elsewhere).")
    add_model_arguments(parser)
    parser.add_argument("--index_type", default="flat", choices=INDEX_TYPES,
                        help="flat: exact search; ivf: approximate, for large collections.")
    parser.add_argument("--nlist", type=positive_int, default=None, help="IVF cells (default sqrt(N)).")
    parser.add_argument("--nprobe", type=positive_int, default=None,
                        help="IVF cells searched per query (default min(nlist, 16); search.py can override).")
    parser.add_argument("--max_chunks", type=positive_int, default=None, help="At most this many windows per file.")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="Windows embedded per batch.")
    parser.add_argument("--shard_size", type=positive_int, default=1024, help="Files per resumable shard.")
    parser.add_argument("--num_workers", type=int, default=0, help="Audio loading processes (0: the main one).")
    parser.add_argument("--noprogressbar", action="store_true", help="No progress bar.")
    args = parser.parse_args(argv)
    if not args.clap_ckpt_path and not args.laion_ckpt_path and not args.ssl_checkpoints_dir:
        parser.error("give the model: --ssl_checkpoints_dir=<run>/save and/or --clap_ckpt_path=CLAP_weights_2022.pth "
                     "(or --laion_ckpt_path=630k-audioset-best.pt)")
    return args


def main(argv=None):
    """Lists the audio, embeds it (resumably), builds and saves the index; returns ``index.json``'s dict."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    out = os.path.abspath(args.output_folder)
    check_model_flags(args)
    if args.index_type == "flat" and (args.nlist or args.nprobe):
        given = " ".join(f"--{k}={getattr(args, k)}" for k in ("nlist", "nprobe") if getattr(args, k))
        raise SystemExit(f"{given} and --index_type=flat conflict: --nlist and --nprobe set the cells of an IVF "
                         "index; add --index_type=ivf, or drop them (a flat index searches every file).")
    if args.audio_folder:
        paths = list_audio_files(args.audio_folder, exclude=out)
    else:
        if not os.path.isfile(args.audio_pathfile):
            raise SystemExit(f"--audio_pathfile={args.audio_pathfile}: file not found (one audio path per line).")
        paths = read_path_list(args.audio_pathfile)
        if not paths:
            raise SystemExit(f"--audio_pathfile={args.audio_pathfile}: no rows in {args.audio_pathfile} "
                             "(one audio path per line).")
    if not paths:
        raise SystemExit(f"No audio files found in {args.audio_folder} (extensions {', '.join(AUDIO_EXTENSIONS)}).")
    if args.index_type == "ivf" and args.nlist and args.nlist > len(paths):
        raise SystemExit(f"--nlist={args.nlist} and the {len(paths)} files listed conflict: an IVF index needs at "
                         "least one file per cell; lower --nlist (or leave it out: sqrt(N)), or use --index_type=flat.")
    # The model is loaded before the folder is locked (created): a model that cannot be loaded leaves nothing.
    load_args = model_load_args(args)
    try:
        embedder = ClapEmbedder.from_pretrained(**load_args)
    except (ValueError, OSError) as err:
        raise loading_error(args, err) from None
    hold_folder_lock(out, "build_index.py")
    emb_dir = os.path.join(out, EMB_DIR)
    print(f"Embedding {len(paths)} files with {embedder.source} into {out}", flush=True)
    embedded = embed_audio_files(embedder.model, paths, emb_dir, AudioEmbeddingOptions(
        sample_rate=embedder.sample_rate, duration=embedder.eval_duration,
        chunking=True, max_chunks=args.max_chunks, batch_size=args.batch_size, shard_size=args.shard_size,
        num_workers=args.num_workers, dtype="float32", device=embedder.device, progress=not args.noprogressbar,
        model_id=embedder.fingerprint, precision=embedder.precision,
        protocol=embedder.protocol, hf_options=tuple(sorted(embedder.hf_options.items())),
    ))
    emb, kept, _ = load_audio_set(emb_dir)
    if len(kept) == 0:
        raise SystemExit(
            f"None of the {len(paths)} files could be read (see {os.path.join(emb_dir, 'audio_skipped.csv')})."
        )
    index, options = make_index(emb, args.index_type, args.nlist, args.nprobe)
    info = dict(
        options, format=FORMAT_VERSION, metric="inner_product", dim=int(emb.shape[1]), count=len(kept),
        listed=len(paths), skipped=int(embedded.get("skipped", 0)),
        audio_source=os.path.abspath(args.audio_folder or args.audio_pathfile),
        sample_rate=embedder.sample_rate, eval_duration=embedder.eval_duration, max_chunks=args.max_chunks,
        protocol=embedder.protocol,
        model=model_record(embedder, load_args),
    )
    save_index(out, index, kept, info)
    skipped = (f", {info['skipped']} unreadable (listed in {os.path.join(emb_dir, 'audio_skipped.csv')})"
               if info["skipped"] else "")
    print(f"Indexed {info['count']} files ({info['index_type']}, dim {info['dim']}){skipped} in {out}", flush=True)
    return info


if __name__ == "__main__":
    run_cli(main)
