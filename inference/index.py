"""Text-to-audio search: a faiss index of audio embeddings, its files, and the model that made it.

An index folder (written by ``recipes/build_index.py``, read by
``recipes/search.py``) holds:

=====================  ==========================================================
``index.faiss``        the faiss index (row i = line i of ``paths.txt``)
``paths.txt``          the indexed files, one absolute path a line (a name holding a
                       line break or other unusual characters as a JSON string)
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
import shlex

import numpy as np

from dataset.manifest import atomic_write
from embeddings.keys import list_digest
from embeddings.lists import read_path_list, write_path_list
from experiment.checkpoints import SELECTIONS, find_checkpoint
from experiment.runtime import default_device
from experiment.usage import positive_number
from inference.embedder import ClapEmbedder
from models.factory import ARCHITECTURE_KEYS
from models.precision import PRECISIONS

__all__ = [
    "INDEX_FILE", "PATHS_FILE", "INFO_FILE", "EMB_DIR", "INDEX_TYPES", "FORMAT_VERSION", "IndexFileError",
    "make_index", "save_index", "load_index", "add_model_arguments", "model_load_args", "model_record", "search",
    "load_searcher", "format_table", "rebuild_hint",
]

INDEX_FILE = "index.faiss"
PATHS_FILE = "paths.txt"
INFO_FILE = "index.json"
EMB_DIR = "embeddings"
INDEX_TYPES = ("flat", "ivf")
FORMAT_VERSION = 1


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
    info = dict(info, paths_digest=list_digest(paths))  # search.py tells an edited paths.txt by it
    text = json.dumps(info, indent=1, sort_keys=True, ensure_ascii=False)
    atomic_write(os.path.join(folder, INFO_FILE), lambda f: f.write(text + "\n"), "w", encoding="utf-8")


class IndexFileError(RuntimeError):
    """A file of an index folder is missing, damaged or disagrees with the others: the message names it."""


def rebuild_hint(folder, info=None):
    """How to rebuild the index of ``folder``: the build_index.py command, with what ``index.json`` recorded."""
    info = info if isinstance(info, dict) else {}
    source = info.get("audio_source")
    flag = "--audio_pathfile" if source and os.path.isfile(source) else "--audio_folder"
    load = (info.get("model") or {}).get("load") if isinstance(info.get("model"), dict) else None
    model = [f"--{k}={shlex.quote(str(v))}" for k, v in (load if isinstance(load, dict) else {}).items()
             if k in ("clap_ckpt_path", "laion_ckpt_path", "ssl_checkpoints_dir") and v]
    command = " ".join([f"python recipes/build_index.py {flag}={shlex.quote(source) if source else '<audio>'}",
                        f"--output_folder={shlex.quote(os.path.abspath(folder))}"] + model)
    return (f"rebuild the index: {command} (and the other flags it was built with; "
            "its embeddings/ are reused, so this takes seconds)")


def _damaged(folder, name, detail, info=None):
    return IndexFileError(f"{os.path.join(os.path.abspath(folder), name)} {detail}; {rebuild_hint(folder, info)}.")


def _read_info(folder):
    """``index.json`` as a dict with the keys a search needs, or IndexFileError naming it."""
    info_path = os.path.join(folder, INFO_FILE)
    if not os.path.isfile(info_path):
        raise IndexFileError(f"{os.path.abspath(info_path)} not found: give the --output_folder of "
                             "recipes/build_index.py (an interrupted build has no index.json; run it again).")
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as err:
        raise _damaged(folder, INFO_FILE, f"cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(info, dict):
        raise _damaged(folder, INFO_FILE, f"holds a {type(info).__name__}, not the index's description")
    model = info.get("model")
    problems = [k for k in ("count", "dim") if not isinstance(info.get(k), int) or isinstance(info.get(k), bool)]
    if not isinstance(model, dict) or not all(isinstance(model.get(k), dict) for k in ("load", "architecture")) \
            or "fingerprint" not in model:
        problems.append("model")
    if problems:
        raise _damaged(folder, INFO_FILE, f"is damaged: {', '.join(problems)} missing or of the wrong type", info)
    return info


def _read_faiss(folder, info):
    import faiss

    path = os.path.join(folder, INDEX_FILE)
    if not os.path.isfile(path):
        raise _damaged(folder, INDEX_FILE, "not found", info)
    try:
        index = faiss.read_index(path)
    except RuntimeError:  # faiss reports a short or foreign file as a RuntimeError quoting its C++ source
        raise _damaged(folder, INDEX_FILE, "cannot be read by faiss: it is truncated or not a faiss index",
                       info) from None
    if index.d != info["dim"]:
        raise _damaged(folder, INDEX_FILE, f"holds {index.d}-dimensional vectors where index.json says {info['dim']}",
                       info)
    return index


def _read_paths(folder, info):
    path = os.path.join(folder, PATHS_FILE)
    if not os.path.isfile(path):
        raise _damaged(folder, PATHS_FILE, "not found", info)
    try:
        paths = read_path_list(path)
    except (OSError, ValueError) as err:  # ValueError: not UTF-8
        raise _damaged(folder, PATHS_FILE, f"cannot be read ({type(err).__name__}: {err})", info) from None
    return paths


def load_index(folder):
    """Reads an index folder written by :func:`save_index`, checking that its three files agree.

    Returns
    -------
    (index, paths, info)
        The faiss index, its N paths (row order) and the ``index.json`` dict.

    Raises
    ------
    IndexFileError
        A file is missing, cannot be read, or disagrees with the others
        (counts, dimension, the digest of the paths): the message names the
        file and gives the build_index.py command that rebuilds the index.
    """
    info = _read_info(folder)
    index = _read_faiss(folder, info)
    paths = _read_paths(folder, info)
    n_index, n_paths, n_info = index.ntotal, len(paths), info["count"]
    if not n_index == n_paths == n_info:
        # The file that disagrees with the two others is the damaged one.
        name = (PATHS_FILE if n_index == n_info else INDEX_FILE if n_paths == n_info
                else INFO_FILE if n_index == n_paths else PATHS_FILE)
        raise _damaged(folder, name, f"does not match the index: index.faiss holds {n_index} vectors, "
                                     f"paths.txt {n_paths} paths and index.json says {n_info}", info)
    if info.get("paths_digest") and list_digest(paths) != info["paths_digest"]:
        raise _damaged(folder, PATHS_FILE, "was changed since the index was built (its paths differ from those "
                                           "index.json recorded)", info)
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
    group.add_argument("--eval_duration", type=positive_number, default=None,
                       help="Seconds per window (default: the model's).")
    group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present, else cpu).")
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
        "ssl_select": args.ssl_select, "model_hparams": absolute(args.model_hparams),
        "device": args.device or default_device(),
        **{k: v for k, v in overrides.items() if v is not None},
    }


def _text_width(text_model):
    """The hidden size of a local text model folder (its ``config.json``), or None when it cannot be told cheaply."""
    if not os.path.isfile(os.path.join(text_model, "config.json")):
        return None
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(text_model), "hidden_size", None)
    except Exception:  # noqa: BLE001 (not readable here: building the model names the problem)
        return None


def _described_architecture(args):
    """``(flag, architecture)`` of the flag that describes the model without reading weights, or (None, None)."""
    from experiment.weights import find_run_hparams, read_architecture
    from models.factory import architecture
    from models.presets import load_preset

    if getattr(args, "model", None):
        return f"--model={args.model}", architecture(load_preset(args.model))
    if args.model_hparams:
        return f"--model_hparams={args.model_hparams}", architecture(read_architecture(args.model_hparams))
    run = find_run_hparams(args.ssl_checkpoints_dir) if args.ssl_checkpoints_dir else None
    if run:
        flag = f"--ssl_checkpoints_dir={args.ssl_checkpoints_dir} (its run's {run})"
        return flag, architecture(read_architecture(run))
    return None, None


def check_model_flags(args):
    """Model flags that contradict each other, named before anything is loaded or written (``SystemExit``).

    ``--model`` and ``--model_hparams`` both describe the architecture; a local ``--text_model`` whose
    hidden size is not the width the architecture's text tower has (``txt_emb_dim``) cannot be built.
    """
    if getattr(args, "model", None) and args.model_hparams:
        raise SystemExit(f"--model={args.model} and --model_hparams={args.model_hparams} both describe the "
                         "architecture: give one of them.")
    if not args.text_model or not os.path.isdir(args.text_model):
        return
    flag, arch = _described_architecture(args)
    width = _text_width(args.text_model)
    if arch is None or width is None or width == arch["txt_emb_dim"]:
        return
    raise SystemExit(
        f"--text_model={args.text_model} and {flag} conflict: that text model has hidden size {width}, but the "
        f"architecture {flag} gives has a text tower of width {arch['txt_emb_dim']} (txt_emb_dim; its text model "
        f"is {arch['text_model']}): give --text_model a local copy of {arch['text_model']}, or drop one of the two."
    )


def loading_error(args, err):
    """The ``SystemExit`` of an error loading the model (``ValueError``, ``OSError``): the model flags, its message."""
    names = ("model", "model_hparams", "clap_ckpt_path", "laion_ckpt_path", "ssl_checkpoints_dir", "text_model",
             "eval_duration", "precision")
    given = " ".join(f"--{name}={getattr(args, name)}" for name in names if getattr(args, name, None) is not None)
    text = " ".join(str(err).split()) or type(err).__name__
    return SystemExit(f"Cannot load the model that {given} describe: {text}")


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
    source = record.get("source", "?")
    try:
        embedder = ClapEmbedder.from_pretrained(**load)
    except FileNotFoundError as err:
        raise SystemExit(
            f"Cannot load the model that built {index_folder} ({source}): {err}\n"
            "If it has moved, give its new place with --ssl_checkpoints_dir / --clap_ckpt_path."
        ) from err
    except (TypeError, ValueError, KeyError, RuntimeError) as err:  # an architecture edited in index.json
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IndexFileError(
            f"The model recorded in {os.path.abspath(os.path.join(index_folder, INFO_FILE))} cannot be built "
            f"({first}); check the model flags given, or if index.json was edited, {rebuild_hint(index_folder, info)}."
        ) from None
    if embedder.fingerprint != record["fingerprint"]:
        raise SystemExit(
            f"The model loaded ({embedder.source}) is not the one that built {index_folder} "
            f"({source}): its weights differ. Rebuild the index or give the original model flags."
        )
    return index, paths, info, embedder


def _unprintable(path):
    return any(ord(c) < 32 or ord(c) == 127 for c in path)


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
    # A name holding a line break is shown as a JSON string, so that each result keeps its one line.
    lines += [f"{r['rank']:>6}  {r['score']:.4f}  {json.dumps(r['path']) if _unprintable(r['path']) else r['path']}"
              for r in results]
    if not results:
        lines.append("  (no result)")
    return "\n".join(lines)
