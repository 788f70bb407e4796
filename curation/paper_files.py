"""The paper code's embedding files, read next to ours by the curation joins.

The paper's code (zhepeiw/clap_curation) saves each embedding set as one
``.npy`` array of L2-normalised float16 rows and keeps the row labels
elsewhere:

- audio (``microsoft_curation_toemb.py``, ``aud_svpth``, default
  ``audio_audioset_embeddings.npy``): one row per line of the audio path
  list (``audio_pathfile``; ``aud_ds_path`` when read back);
- captions (``txt_svpth``, default ``text_insper_embeddings.npy``): one row
  per row of the caption CSV (``ID,wav_path,caption``; ``txt_ds_path`` /
  ``target_csv_path`` when read back), repeated and empty captions included;
- DS captions (``retrieve_ds_t2t.py``): ``<set>_insper_t2t_embeddings.npy``
  with its CSV ``<set>_insper_t2t_ds.csv`` (``<set>`` = ``esc``, ``us8k``,
  ``tut``), the kept rows of the caption file and CSV.

Ours keep the labels next to the rows (``audio_paths.txt``,
``<set>_captions.csv``) and a record of the model (``embeddings.json``). The
readers here turn the paper's files into our in-memory sets: the clips in
list order, and the distinct non-empty captions (first row of each text),
which is what our own embedding step stores, so a join gives the same pairs
from either format.
"""

import logging
import os

import numpy as np

from dataset.manifest import read_caption_csv
from embeddings.lists import caption_table, read_path_list
from embeddings.store import AUDIO_EMB

logger = logging.getLogger(__name__)

__all__ = [
    "PAPER_AUDIO_EMB", "PAPER_TEXT_EMB", "PAPER_DS_PREFIX", "paper_ds_files", "load_paper_rows",
    "first_rows", "load_paper_audio_set", "load_paper_caption_set", "paper_embedding_files",
]

#: The paper code's default file names (``aud_svpth``, ``txt_svpth`` of its embedding YAML).
PAPER_AUDIO_EMB = "audio_audioset_embeddings.npy"
PAPER_TEXT_EMB = "text_insper_embeddings.npy"
#: Our DS caption sets and the prefix of the paper code's DS files.
PAPER_DS_PREFIX = {"ds_esc50": "esc", "ds_us8k": "us8k", "ds_tut17": "tut"}
#: How far a stored row's norm may be from 1 (float16 rounding is ~1e-3).
_NORM_TOLERANCE = 0.02


def paper_ds_files(caption_set):
    """``(embeddings, CSV)`` file names of the paper code's DS output for one of our caption sets, or None.

    Example
    -------
    >>> paper_ds_files("ds_esc50"), paper_ds_files("text")
    (('esc_insper_t2t_embeddings.npy', 'esc_insper_t2t_ds.csv'), None)
    """
    prefix = PAPER_DS_PREFIX.get(caption_set)
    if prefix is None:
        return None
    return f"{prefix}_insper_t2t_embeddings.npy", f"{prefix}_insper_t2t_ds.csv"


def load_paper_rows(path, n_rows, flag, rows_flag, rows_what):
    """The rows of one of the paper code's ``.npy`` embedding files, checked against their labels.

    Arguments
    ---------
    path : str
        The ``.npy`` file.
    n_rows : int
        How many rows its labels say it has.
    flag, rows_flag : str
        The keys that named the file and its labels (for messages).
    rows_what : str
        What one row is, for messages ("line", "CSV row").

    Returns
    -------
    numpy.ndarray
        A read-only memmap ``[n_rows, d]``.
    """
    if not os.path.isfile(path):
        raise SystemExit(f"--{flag}={path}: file not found (the paper code's embeddings, a .npy array).")
    try:
        emb = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SystemExit(f"--{flag}={path}: not a .npy array ({err}).") from None
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise SystemExit(f"--{flag}={path}: expected a 2-D float array [rows, dim], got {emb.dtype} {emb.shape}.")
    if emb.shape[0] != n_rows:
        raise SystemExit(
            f"--{flag}={path} has {emb.shape[0]} rows but --{rows_flag} has {n_rows} ({rows_what} i is row i): "
            "give the list or CSV the embeddings were computed from."
        )
    sample = np.asarray(emb[:: max(1, n_rows // 1000)], dtype=np.float64)
    norms = np.linalg.norm(sample, axis=1)
    if sample.size and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        raise SystemExit(
            f"--{flag}={path}: its rows are not unit vectors (norms {norms.min():.3f} to {norms.max():.3f}); "
            "the joins compare cosines, as the paper code's files hold L2-normalised rows."
        )
    return emb


def first_rows(rows, table):
    """Index of the first CSV row of each caption-table entry (the table of :func:`embeddings.lists.caption_table`).

    Example
    -------
    >>> rows = [{"ID": "0", "caption": "rain"}, {"ID": "1", "caption": ""}, {"ID": "2", "caption": "wind"},
    ...         {"ID": "3", "caption": " rain"}]
    >>> first_rows(rows, caption_table(rows)).tolist()
    [0, 2]
    """
    first = {}
    for i, row in enumerate(rows):
        text = (row.get("caption") or "").strip()
        if text:
            first.setdefault(text, i)
    return np.array([first[entry["caption"]] for entry in table], dtype=np.int64)


def load_paper_audio_set(aud_emb_path, aud_ds_path):
    """The audio set of the paper code's files: its ``.npy`` rows and the clips of its path list.

    Returns
    -------
    (emb, paths, info)
        As :func:`embeddings.store.load_audio_set`; ``info`` is empty (the
        paper's files record no model).
    """
    if not aud_ds_path:
        raise SystemExit(
            f"--aud_emb_path={aud_emb_path} is an embedding file of the paper's code: its rows are the clips of "
            "its audio path list; give that list as --aud_ds_path (one path a line)."
        )
    paths = read_path_list(aud_ds_path)
    emb = load_paper_rows(aud_emb_path, len(paths), "aud_emb_path", "aud_ds_path", "line")
    return emb, paths, {}


def load_paper_caption_set(txt_emb_path, txt_ds_path, flag="txt_emb_path", csv_flag="txt_ds_path"):
    """The caption set of the paper code's files: one ``.npy`` row per row of its caption CSV.

    Repeated captions are kept once (the first row's embedding) and empty
    ones left out, as our embedding step stores them.

    Returns
    -------
    (emb, table, info)
        As :func:`embeddings.store.load_caption_set` (``emb`` in memory); ``info`` is empty.
    """
    if not txt_ds_path:
        raise SystemExit(
            f"--{flag}={txt_emb_path} is an embedding file of the paper's code: its rows are the rows of a caption "
            f"CSV (ID,wav_path,caption); give that CSV as --{csv_flag}."
        )
    rows = read_caption_csv(txt_ds_path)
    emb = load_paper_rows(txt_emb_path, len(rows), flag, csv_flag, "CSV row")
    table = caption_table(rows)
    index = first_rows(rows, table)
    dropped = len(rows) - len(table)
    if dropped:
        logger.info("%s: %d of %d rows repeat an earlier caption or are empty; each distinct caption is joined once.",
                    txt_ds_path, dropped, len(rows))
    return np.ascontiguousarray(emb[index]), table, {}


def paper_embedding_files(emb_dir, caption_set, aud_emb_path=None, aud_ds_path=None, txt_emb_path=None,
                          txt_ds_path=None):
    """Which embedding files a join reads: the paper code's (``(npy, list or CSV)``) or ours (None), per side.

    The paper's files are read when named (``aud_emb_path``, ``txt_emb_path``)
    or when ``emb_dir`` holds them under the paper code's default names and
    not ours (``audio_audioset_embeddings.npy``; ``text_insper_embeddings.npy``
    for the training captions, whose CSV is then ``txt_ds_path``;
    ``<set>_insper_t2t_embeddings.npy`` + ``<set>_insper_t2t_ds.csv`` for DS).

    Returns
    -------
    (audio, captions)
        Each None (ours) or ``(embedding file, its path list or CSV)``.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for name in ("audio_audioset_embeddings.npy", "esc_insper_t2t_embeddings.npy", "esc_insper_t2t_ds.csv"):
    ...     open(os.path.join(d, name), "w").close()
    >>> audio, captions = paper_embedding_files(d, "ds_esc50", aud_ds_path="list.txt")
    >>> os.path.basename(audio[0]), audio[1], [os.path.basename(p) for p in captions]
    ('audio_audioset_embeddings.npy', 'list.txt', ['esc_insper_t2t_embeddings.npy', 'esc_insper_t2t_ds.csv'])
    >>> paper_embedding_files(d, "text")[1] is None  # no text_insper_embeddings.npy there
    True
    """
    audio = None
    if aud_emb_path:
        audio = (aud_emb_path, aud_ds_path)
    elif not os.path.isfile(os.path.join(emb_dir, AUDIO_EMB)):
        if os.path.isfile(os.path.join(emb_dir, PAPER_AUDIO_EMB)):
            audio = (os.path.join(emb_dir, PAPER_AUDIO_EMB), aud_ds_path)
    captions = None
    if txt_emb_path:
        captions = (txt_emb_path, txt_ds_path)
    elif not os.path.isfile(os.path.join(emb_dir, f"{caption_set}_emb.npy")):
        if caption_set == "text":
            if os.path.isfile(os.path.join(emb_dir, PAPER_TEXT_EMB)):
                captions = (os.path.join(emb_dir, PAPER_TEXT_EMB), txt_ds_path)
        elif paper_ds_files(caption_set):
            emb_name, csv_name = paper_ds_files(caption_set)
            if os.path.isfile(os.path.join(emb_dir, emb_name)):
                captions = (os.path.join(emb_dir, emb_name), txt_ds_path or os.path.join(emb_dir, csv_name))
    for side, found in (("audio", audio), ("captions", captions)):
        if found:
            logger.info("Reading the paper code's %s embeddings: %s (rows: %s).", side, found[0], found[1])
    return audio, captions
