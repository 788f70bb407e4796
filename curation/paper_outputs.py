"""Embedding files in the paper code's layout, written on request (``aud_svpth``, ``txt_svpth``, ``output_emb_path``).

The paper code's curation steps hand bare ``.npy`` arrays of unit float16
rows to each other: the embedding step writes one row per line of the audio
list (``aud_svpth``) and one per row of the caption CSV (``txt_svpth``,
repeated and empty captions included); the DS step writes one row per row of
its DS CSV (``output_emb_path`` beside ``output_csv_path``). Ours keep one row
per readable clip and per distinct caption in ``emb_dir`` (with their lists);
these functions expand them to the paper code's rows, so its later commands
(``--aud_emb_path``, ``--txt_emb_path`` with ``--txt_ds_path``) can read them.

A clip that could not be read has no embedding: its row cannot be written.
Then the audio file holds the readable clips only, their list is written
beside it (``<file>_paths.txt``, to give as ``--aud_ds_path``) and a warning
says so; the paper code would have stopped on that clip.
"""

import logging
import os

import numpy as np

from embeddings.lists import read_path_list, write_path_list
from embeddings.store import save_npy

__all__ = ["PAPER_DTYPE", "audio_rows", "caption_rows", "write_audio_rows", "write_caption_rows",
           "export_embedding_step"]

logger = logging.getLogger(__name__)

#: The paper code's storage type (``.half()``).
PAPER_DTYPE = np.float16


def audio_rows(list_paths, embedded_paths):
    """Row of our audio matrix for each line of the audio list (None: not embedded).

    Example
    -------
    >>> audio_rows(["/a", "/b", "/a", "/c"], ["/a", "/c"])
    [0, None, 0, 1]
    """
    row_of = {p: i for i, p in enumerate(embedded_paths)}
    return [row_of.get(p) for p in list_paths]


def caption_rows(rows, table):
    """Row of our caption matrix for each CSV row (None: an empty caption, which our tables leave out).

    Example
    -------
    >>> caption_rows([{"caption": "Rain."}, {"caption": ""}, {"caption": " Rain. "}, {"caption": "Dog"}],
    ...              [{"caption": "Rain."}, {"caption": "Dog"}])
    [0, None, 0, 1]
    """
    index = {entry["caption"]: i for i, entry in enumerate(table)}
    return [index.get((row.get("caption") or "").strip()) for row in rows]


def write_audio_rows(path, emb, embedded_paths, audio_pathfile):
    """Writes ``aud_svpth``: one unit float16 row per line of ``audio_pathfile`` (readable clips only, see above).

    Returns
    -------
    int
        Rows written.
    """
    wanted = read_path_list(audio_pathfile)
    where = audio_rows(wanted, embedded_paths)
    kept = [(p, r) for p, r in zip(wanted, where) if r is not None]
    matrix = np.asarray(emb)[[r for _, r in kept]].astype(PAPER_DTYPE) if kept else np.zeros((0, emb.shape[1]),
                                                                                              PAPER_DTYPE)
    _makedirs(path)
    save_npy(path, np.ascontiguousarray(matrix))
    if len(kept) < len(wanted):
        paths_file = os.path.splitext(path)[0] + "_paths.txt"
        write_path_list(paths_file, [p for p, _ in kept])
        logger.warning("%s: %d of the %d clips of %s could not be read and have no row; its rows follow %s "
                       "(give it as --aud_ds_path).", path, len(wanted) - len(kept), len(wanted), audio_pathfile,
                       paths_file)
    return len(kept)


def write_caption_rows(path, emb, table, rows, embed_empty=None):
    """Writes one unit float16 row per caption-CSV row (``txt_svpth``, ``output_emb_path``).

    Arguments
    ---------
    path : str
        The ``.npy`` file.
    emb : array ``[len(table), d]``
        Our embeddings of the distinct captions ``table``.
    table : list of dict
        Our caption table (``caption`` of each row of ``emb``).
    rows : list of dict
        The CSV rows, in order (``caption``).
    embed_empty : callable, optional
        ``() -> [d]`` the embedding of an empty caption, called only if a row
        has one (the paper code embeds it like any text); None: such a row is an error.

    Returns
    -------
    int
        Rows written.
    """
    where = caption_rows(rows, table)
    emb = np.asarray(emb)
    matrix = np.zeros((len(rows), emb.shape[1]), dtype=PAPER_DTYPE)
    known = [i for i, r in enumerate(where) if r is not None]
    if known:
        matrix[known] = emb[[where[i] for i in known]].astype(PAPER_DTYPE)
    empty = [i for i, r in enumerate(where) if r is None]
    if empty:
        if embed_empty is None:
            raise SystemExit(f"{path}: {len(empty)} row(s) have a caption without an embedding.")
        matrix[empty] = np.asarray(embed_empty()).astype(PAPER_DTYPE)
    _makedirs(path)
    save_npy(path, matrix)
    return len(rows)


def _makedirs(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def export_embedding_step(hparams, emb_dir, model, device, precision="fp32"):
    """The embedding step's files in the paper code's layout, where ``aud_svpth`` / ``txt_svpth`` name them."""
    from dataset.manifest import read_caption_csv
    from embeddings.encoders import encode_texts
    from embeddings.store import load_audio_set, load_caption_set

    if hparams.get("aud_svpth"):
        emb, paths, _ = load_audio_set(emb_dir)
        n = write_audio_rows(hparams["aud_svpth"], emb, paths, hparams["audio_pathfile"])
        logger.info("The paper code's audio embeddings: %s (%d rows).", hparams["aud_svpth"], n)
    if hparams.get("txt_svpth"):
        if not hparams.get("text_pathfile"):
            raise SystemExit("--txt_svpth needs --text_pathfile (the caption CSV whose rows it holds).")
        emb, table, _ = load_caption_set(emb_dir, "text")

        def embed_empty():
            return encode_texts(model, hparams["tokenizer"], [""], max_length=hparams["text_max_length"],
                                device=device, precision=precision)[0]

        n = write_caption_rows(hparams["txt_svpth"], emb, table, read_caption_csv(hparams["text_pathfile"]),
                               embed_empty=embed_empty)
        logger.info("The paper code's caption embeddings: %s (%d rows).", hparams["txt_svpth"], n)
