"""Text-to-audio search: a faiss index of audio embeddings, its files, and the model that made it.

An index folder (written by ``recipes/build_index.py``, read by
``recipes/search.py``) holds:

=====================  ==========================================================
``index.faiss``        the faiss index (row i = line i of ``paths.txt``)
``paths.txt``          the indexed files, one absolute path a line
``index.json``         model source and architecture, dims, counts, index options
                       (written last: its presence means the index is complete)
``embeddings/``        the float32 embeddings (``audio_emb.npy``), their paths,
                       each file's size and modification time (``audio_stat.npy``:
                       a file that changes is embedded again on the next build),
                       ``audio_skipped.csv`` (unreadable files, left out) and the
                       resumable shards while embedding runs
=====================  ==========================================================

The embeddings are unit-norm, so inner-product scores are cosines.
"""

import json
import math
import os

import numpy as np

from dataset.manifest import atomic_write
from embeddings.lists import read_path_list, write_path_list
from experiment.checkpoints import SELECTIONS, find_checkpoint
from inference.embedder import ClapEmbedder
from models.factory import ARCHITECTURE_KEYS
from models.precision import PRECISIONS

__all__ = [
    "INDEX_FILE", "PATHS_FILE", "INFO_FILE", "EMB_DIR", "INDEX_TYPES", "FORMAT_VERSION", "check_listable",
    "make_index", "save_index", "load_index", "add_model_arguments", "model_load_args", "model_record", "search",
    "load_searcher", "format_table",
]

INDEX_FILE = "index.faiss"
PATHS_FILE = "paths.txt"
INFO_FILE = "index.json"
EMB_DIR = "embeddings"
INDEX_TYPES = ("flat", "ivf")
FORMAT_VERSION = 1


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
    >>> make_index(x, "ivf", nlist=8)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: An IVF index with nlist=8 cells is trained by k-means on the embeddings and needs at least 8 of them;
    this collection has 4. Lower --nlist or use --index_type=flat (exact search).
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
    group.add_argument("--clap_ckpt_path", default=None,
                       help="A published CLAP file: MS CLAP 2022/2023 .pth, LAION-CLAP .pt or a Hugging Face "
                            "ClapModel folder (the architecture is read from it).")
    group.add_argument("--laion_ckpt_path", default=None,
                       help="A LAION-CLAP .pt file or Hugging Face ClapModel folder (as --clap_ckpt_path).")
    group.add_argument("--model", default=None,
                       help="An architecture preset (hparams/models/<name>.yaml, e.g. laion_630k_audioset) "
                            "instead of the one read from the file or run.")
    group.add_argument("--ssl_checkpoints_dir", default=None,
                       help="The save folder (or experiment folder) of one of our runs; "
                            "its hyperparams.yaml gives the architecture.")
    group.add_argument("--ssl_select", default="loss", choices=SELECTIONS, help="Checkpoint of ssl_checkpoints_dir.")
    group.add_argument("--model_hparams", default=None,
                       help="A YAML whose model keys describe the architecture "
                            "(default: the run's hyperparams.yaml, else MS CLAP 2022).")
    group.add_argument("--text_model", default=None,
                       help="Text model name or local folder (the Hub may be unreachable).")
    group.add_argument("--eval_duration", type=float, default=None, help="Seconds per window (default: the model's).")
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    group.add_argument("--precision", default=None, choices=list(PRECISIONS),
                       help="Precision of the towers (build_index.py: default fp32; search.py: default as built).")
    group.add_argument("--protocol", default=None, choices=["paper", "laion", "msclap", "hf"],
                       help="How audio is read and fitted to the model (evaluation.protocols; default: the "
                            "checkpoint's: laion for a LAION .pt, hf for a Hugging Face folder, msclap for MS CLAP "
                            "2023, paper (our windows) for our runs and MS CLAP 2022).")
    return parser


def model_load_args(args):
    """``ClapEmbedder.from_pretrained`` keyword arguments from the parsed flags (absolute paths)."""
    def absolute(path):
        return os.path.abspath(path) if path else None

    overrides = {"text_model": args.text_model, "eval_duration": args.eval_duration, "precision": args.precision,
                 "protocol": getattr(args, "protocol", None)}
    if args.text_model and os.path.isdir(args.text_model):
        overrides["text_model"] = os.path.abspath(args.text_model)
    return {
        "clap_ckpt_path": absolute(args.clap_ckpt_path), "ssl_checkpoints_dir": absolute(args.ssl_checkpoints_dir),
        **({"laion_ckpt_path": absolute(args.laion_ckpt_path)} if getattr(args, "laion_ckpt_path", None) else {}),
        **({"model": args.model} if getattr(args, "model", None) else {}),
        "ssl_select": args.ssl_select, "model_hparams": absolute(args.model_hparams), "device": args.device,
        **{k: v for k, v in overrides.items() if v is not None},
    }


def model_record(embedder, load_args):
    """What ``index.json`` keeps about the model: how to load it again, and its weights' fingerprint."""
    config = dict(embedder.config)
    text_model = str(config.get("text_model", ""))
    if os.path.isdir(text_model):
        config["text_model"] = os.path.abspath(text_model)
    load = {"clap_ckpt_path": load_args.get("clap_ckpt_path"), "ssl_checkpoints_dir": None,
            "precision": embedder.precision, "protocol": embedder.protocol}
    if load_args.get("laion_ckpt_path"):
        load["laion_ckpt_path"] = load_args["laion_ckpt_path"]
    if load_args.get("ssl_checkpoints_dir"):
        # The chosen CKPT+ folder itself: "best by loss" may name another one once the run goes on.
        load["ssl_checkpoints_dir"] = find_checkpoint(load_args["ssl_checkpoints_dir"],
                                                      load_args.get("ssl_select", "loss"))
    return {"load": load, "architecture": {k: config[k] for k in ARCHITECTURE_KEYS if k in config},
            "source": embedder.source, "fingerprint": embedder.fingerprint}


# ------------------------------------------------------------------ search
def search(index, paths, query_emb, topk=10, nprobe=None):
    """The ``topk`` files of ``index`` closest to each query embedding.

    Arguments
    ---------
    index : faiss.Index
        An inner-product index (see :func:`make_index`).
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
    load.setdefault("protocol", "paper")  # an index written before protocols existed holds our windows
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
