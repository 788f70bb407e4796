#!/usr/bin/env python3
"""Builds a text-to-audio search index: embeds an audio collection with a CLAP model into a faiss index.

Every audio file of a folder (recursively: ``.wav``, ``.flac``, ``.ogg``,
``.mp3``) or of a path list is embedded with :class:`recipes.inference.ClapEmbedder`
(long files: windows of ``eval_duration`` averaged) and added to a faiss
inner-product index; the embeddings are unit-norm, so scores are cosines.
``recipes/search.py`` answers text queries with it.

Files written in ``--output_folder`` (and nowhere else):

=====================  ==========================================================
``index.faiss``        the faiss index (row i = line i of ``paths.txt``)
``paths.txt``          the indexed files, one absolute path a line
``index.json``         model source and architecture, dims, counts, index options
                       (written last: its presence means the index is complete)
``embeddings/``        the float32 embeddings (``audio_emb.npy``), their paths,
                       ``audio_skipped.csv`` (unreadable files, left out) and the
                       resumable shards while embedding runs
=====================  ==========================================================

Embedding is resumable: killed and run again with the same command, only the
missing shards are embedded; run again when done, the embeddings are reused
(so changing only ``--index_type``/``--nlist`` rebuilds the index in seconds).

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

import argparse
import json
import logging
import math
import os
import sys

import numpy as np

from curation.embed import embed_audio_files, load_audio_set, read_path_list, write_path_list
from dataset.manifest import atomic_write
from recipes.common import find_checkpoint
from recipes.inference import ARCHITECTURE_KEYS, ClapEmbedder

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
PATHS_FILE = "paths.txt"
INFO_FILE = "index.json"
EMB_DIR = "embeddings"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
INDEX_TYPES = ("flat", "ivf")
FORMAT_VERSION = 1


# --------------------------------------------------------------- the files
def list_audio_files(folder, exclude=None):
    """Audio files below ``folder`` (recursive, sorted, absolute), by extension.

    ``.mp3`` is listed only when this soundfile's libsndfile decodes MP3 (1.1+).

    Arguments
    ---------
    folder : str
        The collection.
    exclude : str, optional
        A folder inside ``folder`` to leave out (e.g. the index's own output folder).

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for name in ["b.wav", "sub/a b,é.FLAC", "notes.txt"]:
    ...     os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
    ...     _ = open(os.path.join(d, name), "w")
    >>> [os.path.relpath(p, d) for p in list_audio_files(d)]
    ['b.wav', 'sub/a b,é.FLAC']
    """
    import soundfile

    extensions = AUDIO_EXTENSIONS if "MP3" in soundfile.available_formats() else tuple(e for e in AUDIO_EXTENSIONS if e != ".mp3")
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Audio folder not found: {folder}")
    exclude = os.path.abspath(exclude) if exclude else None
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if os.path.join(root, d) != exclude)
        found.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(extensions))
    return found


def check_listable(paths):
    """Raises ValueError for a path that ``paths.txt`` (one path a line, stripped) could not give back."""
    for path in paths:
        if "\n" in path or "\r" in path or path != path.strip():
            raise ValueError(f"Cannot index {path!r}: a path with a line break or leading/trailing spaces "
                             "does not survive the one-path-a-line list; rename the file.")


def make_index(emb, index_type="flat", nlist=None, nprobe=None):
    """A faiss inner-product index holding the rows of ``emb``.

    Arguments
    ---------
    emb : numpy.ndarray
        ``[N, d]`` unit-norm float32 embeddings.
    index_type : str
        ``"flat"`` (``IndexFlatIP``: exact, fine up to about a million
        clips) or ``"ivf"`` (``IndexIVFFlat`` with the inner-product
        metric: searches ``nprobe`` of ``nlist`` k-means cells; trained here
        on ``emb``).
    nlist : int, optional
        IVF cells (default ``round(sqrt(N))``); at most N.
    nprobe : int, optional
        IVF cells searched per query (default ``min(nlist, 16)``); ``nprobe = nlist`` is exact.

    Returns
    -------
    (index, options)
        ``options`` is ``{"index_type", "nlist", "nprobe"}`` (None for flat).

    Example
    -------
    >>> x = np.eye(4, dtype="float32")
    >>> index, opts = make_index(x, "ivf", nlist=2, nprobe=2)
    >>> index.ntotal, opts
    (4, {'index_type': 'ivf', 'nlist': 2, 'nprobe': 2})
    >>> make_index(x, "ivf", nlist=8)
    Traceback (most recent call last):
    ...
    ValueError: An IVF index with nlist=8 cells is trained by k-means on the embeddings and needs at least 8 of them; this collection has 4. Lower --nlist or use --index_type=flat (exact search).
    """
    import faiss

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, dim = emb.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(emb)
        return index, {"index_type": "flat", "nlist": None, "nprobe": None}
    if index_type != "ivf":
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}.")
    nlist = int(nlist) if nlist else max(1, int(round(math.sqrt(n))))
    if n < nlist:
        raise ValueError(
            f"An IVF index with nlist={nlist} cells is trained by k-means on the embeddings and needs at least "
            f"{nlist} of them; this collection has {n}. Lower --nlist or use --index_type=flat (exact search)."
        )
    nprobe = min(int(nprobe) if nprobe else 16, nlist)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(emb)
    index.add(emb)
    index.nprobe = nprobe
    return index, {"index_type": "ivf", "nlist": nlist, "nprobe": nprobe}


def save_index(folder, index, paths, info):
    """Writes ``index.faiss``, ``paths.txt`` and (last) ``index.json`` atomically into ``folder``."""
    import faiss

    if index.ntotal != len(paths):
        raise ValueError(f"The index holds {index.ntotal} vectors but {len(paths)} paths were given.")
    os.makedirs(folder, exist_ok=True)
    blob = faiss.serialize_index(index)
    atomic_write(os.path.join(folder, INDEX_FILE), lambda f: f.write(blob.tobytes()), "wb")
    write_path_list(os.path.join(folder, PATHS_FILE), paths)
    text = json.dumps(info, indent=1, sort_keys=True, ensure_ascii=False)
    atomic_write(os.path.join(folder, INFO_FILE), lambda f: f.write(text + "\n"), "w", encoding="utf-8")


def load_index(folder):
    """Reads an index folder written by :func:`save_index`.

    Returns
    -------
    (index, paths, info)
        The faiss index, its N paths (row order) and the ``index.json`` dict.
    """
    import faiss

    info_path = os.path.join(folder, INFO_FILE)
    if not os.path.isfile(info_path):
        raise FileNotFoundError(f"{info_path} not found: give the --output_folder of recipes/build_index.py "
                                "(an interrupted build has no index.json; run it again).")
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    index = faiss.read_index(os.path.join(folder, INDEX_FILE))
    paths = read_path_list(os.path.join(folder, PATHS_FILE))
    if index.ntotal != len(paths) or index.ntotal != info.get("count"):
        raise RuntimeError(f"{folder}: index.faiss holds {index.ntotal} vectors, paths.txt {len(paths)} paths and "
                           f"index.json says {info.get('count')}; rebuild the index.")
    return index, paths, info


# ---------------------------------------------------------- model source
def add_model_arguments(parser):
    """The model-source flags shared by build_index.py and search.py (named as in the other recipes)."""
    group = parser.add_argument_group("model (as in the other recipes)")
    group.add_argument("--clap_ckpt_path", default=None, help="MS CLAP file CLAP_weights_2022.pth ({'model': state_dict}).")
    group.add_argument("--ssl_checkpoints_dir", default=None,
                       help="The save folder (or experiment folder) of one of our runs; its hyperparams.yaml gives the architecture.")
    group.add_argument("--ssl_select", default="loss", choices=["loss", "acc", "latest"], help="Checkpoint of ssl_checkpoints_dir.")
    group.add_argument("--model_hparams", default=None,
                       help="A YAML whose model keys describe the architecture (default: the run's hyperparams.yaml, else MS CLAP 2022).")
    group.add_argument("--text_model", default=None, help="Text model name or local folder (the Hub may be unreachable).")
    group.add_argument("--eval_duration", type=float, default=None, help="Seconds per window (default: the model's).")
    group.add_argument("--device", default="cpu")
    return parser


def model_load_args(args):
    """``ClapEmbedder.from_pretrained`` keyword arguments from the parsed flags (absolute paths)."""
    def absolute(path):
        return os.path.abspath(path) if path else None

    overrides = {"text_model": args.text_model, "eval_duration": args.eval_duration}
    if args.text_model and os.path.isdir(args.text_model):
        overrides["text_model"] = os.path.abspath(args.text_model)
    return {
        "clap_ckpt_path": absolute(args.clap_ckpt_path), "ssl_checkpoints_dir": absolute(args.ssl_checkpoints_dir),
        "ssl_select": args.ssl_select, "model_hparams": absolute(args.model_hparams), "device": args.device,
        **{k: v for k, v in overrides.items() if v is not None},
    }


def model_record(embedder, load_args):
    """What ``index.json`` keeps about the model: how to load it again, and its weights' fingerprint."""
    config = dict(embedder.config)
    text_model = str(config.get("text_model", ""))
    if os.path.isdir(text_model):
        config["text_model"] = os.path.abspath(text_model)
    load = {"clap_ckpt_path": load_args.get("clap_ckpt_path"), "ssl_checkpoints_dir": None}
    if load_args.get("ssl_checkpoints_dir"):
        # The chosen CKPT+ folder itself: "best by loss" may name another one once the run goes on.
        load["ssl_checkpoints_dir"] = find_checkpoint(load_args["ssl_checkpoints_dir"], load_args.get("ssl_select", "loss"))
    return {"load": load, "architecture": {k: config[k] for k in ARCHITECTURE_KEYS if k in config},
            "source": embedder.source, "fingerprint": embedder.fingerprint}


# ------------------------------------------------------------------ main
def parse_arguments(argv):
    """The flags of this command (``--key=value`` or ``--key value``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio_folder", help="Folder of audio files (searched recursively).")
    source.add_argument("--audio_pathfile", help="Text file, one audio path per line (relative: to the file's folder).")
    parser.add_argument("--output_folder", required=True, help="Where the index goes (nothing is written elsewhere).")
    add_model_arguments(parser)
    parser.add_argument("--index_type", default="flat", choices=INDEX_TYPES)
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default sqrt(N)).")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF cells searched per query (default min(nlist, 16); search.py can override).")
    parser.add_argument("--max_chunks", type=int, default=None, help="At most this many windows per file.")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--shard_size", type=int, default=1024, help="Files per resumable shard.")
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--noprogressbar", action="store_true")
    args = parser.parse_args(argv)
    if not args.clap_ckpt_path and not args.ssl_checkpoints_dir:
        parser.error("give the model: --ssl_checkpoints_dir=<run>/save and/or --clap_ckpt_path=CLAP_weights_2022.pth")
    return args


def main(argv=None):
    """Lists the audio, embeds it (resumably), builds and saves the index; returns ``index.json``'s dict."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    out = os.path.abspath(args.output_folder)
    if args.audio_folder:
        paths = list_audio_files(args.audio_folder, exclude=out)
    else:
        paths = read_path_list(args.audio_pathfile)
    if not paths:
        raise SystemExit(f"No audio files found in {args.audio_folder or args.audio_pathfile} (extensions {', '.join(AUDIO_EXTENSIONS)}).")
    check_listable(paths)

    load_args = model_load_args(args)
    embedder = ClapEmbedder.from_pretrained(**load_args)
    emb_dir = os.path.join(out, EMB_DIR)
    print(f"Embedding {len(paths)} files with {embedder.source} into {out}", flush=True)
    embedded = embed_audio_files(
        embedder.model, paths, emb_dir, sample_rate=embedder.sample_rate, duration=embedder.eval_duration,
        chunking=True, max_chunks=args.max_chunks, batch_size=args.batch_size, shard_size=args.shard_size,
        num_workers=args.num_workers, dtype="float32", device=embedder.device, progress=not args.noprogressbar,
        model_id=embedder.fingerprint,
    )
    emb, kept, _ = load_audio_set(emb_dir)
    if len(kept) == 0:
        raise SystemExit(f"None of the {len(paths)} files could be read (see {os.path.join(emb_dir, 'audio_skipped.csv')}).")
    index, options = make_index(emb, args.index_type, args.nlist, args.nprobe)
    info = dict(
        options, format=FORMAT_VERSION, metric="inner_product", dim=int(emb.shape[1]), count=len(kept),
        listed=len(paths), skipped=int(embedded.get("skipped", 0)),
        audio_source=os.path.abspath(args.audio_folder or args.audio_pathfile),
        sample_rate=embedder.sample_rate, eval_duration=embedder.eval_duration, max_chunks=args.max_chunks,
        model=model_record(embedder, load_args),
    )
    save_index(out, index, kept, info)
    skipped = f", {info['skipped']} unreadable (listed in {os.path.join(emb_dir, 'audio_skipped.csv')})" if info["skipped"] else ""
    print(f"Indexed {info['count']} files ({info['index_type']}, dim {info['dim']}){skipped} in {out}", flush=True)
    return info


if __name__ == "__main__":
    main()
