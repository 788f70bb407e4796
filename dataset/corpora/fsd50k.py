"""FSD50K (Fonseca et al., 2022): one row per clip, captioned by its Freesound description."""

import html
import json
import logging
import os
import re

from dataset.corpora.cleaning import clean_caption
from dataset.corpora.files import as_splits, caption_row, find_metadata, index_audio_files, lookup, require_columns
from dataset.manifest import read_csv

logger = logging.getLogger(__name__)

__all__ = ["read_fsd50k", "strip_html"]

_HTML_TAG = re.compile(r"<[^>]*>")
_WHITESPACE = re.compile(r"\s+")


def strip_html(text):
    """Plain text of an HTML snippet: tags removed, entities decoded, whitespace collapsed.

    Example
    -------
    >>> strip_html('Rain on a <a href="http://x.org">tin roof</a>.<br/>\\n Rec &amp; edit')
    'Rain on a tin roof . Rec & edit'
    """
    text = _HTML_TAG.sub(" ", text or "")
    # Escaped markup (&lt;b&gt;) becomes a tag only after unescaping.
    text = _HTML_TAG.sub(" ", html.unescape(text))
    return _WHITESPACE.sub(" ", text).strip()


def _fsd50k_caption(info, labels, caption_cleaning="none"):
    if caption_cleaning == "paper":
        return _fsd50k_paper_text(info, labels)
    caption = strip_html(info.get("description", "")) or strip_html(info.get("title", ""))
    if not caption:
        caption = ", ".join(label.replace("_", " ").strip() for label in labels.split(",") if label.strip())
    return caption


def _fsd50k_paper_text(info, labels):
    """The text :func:`clean_caption` turns into the caption under ``caption_cleaning: paper``: the raw description.

    The paper's code cleans the description as written (HTML included); when
    nothing is left (the paper's code would train on an empty caption), the
    title, then the labels, are the text instead.
    """
    label_text = ", ".join(label.strip() for label in labels.split(",") if label.strip())
    for text in (info.get("description") or "", info.get("title") or "", label_text):
        if clean_caption(text, "fsd50k"):
            return text
    return ""


def read_fsd50k(folder, splits=("dev",), caption_cleaning="none"):
    """Reads FSD50K: one row per clip, captioned by its Freesound description.

    The caption is the description without HTML; if empty, the title; if still
    empty, the labels (``Electric_guitar,Music`` → ``Electric guitar, Music``).
    With ``caption_cleaning="paper"`` it is the description as written (HTML
    included) for :func:`dataset.corpora.cleaning.clean_captions` to clean as
    the paper's code does (title, then labels, when that leaves nothing).

    Arguments
    ---------
    folder : str
        FSD50K root holding ``FSD50K.ground_truth/<split>.csv``,
        ``FSD50K.metadata/<split>_clips_info_FSD50K.json`` and
        ``FSD50K.<split>_audio/<fname>.wav`` (directly or one folder down).
    splits : tuple of str
        ``"dev"`` and/or ``"eval"``.
    caption_cleaning : str
        ``"none"`` (captions as above) or ``"paper"`` (the raw text, see above).

    Returns
    -------
    rows : list of dict
        ``ID, wav_path, caption, source="fsd50k", source_id`` (``fname``, a Freesound id).
    n_missing : int
        Clips whose audio file was not found.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for sub in ("FSD50K.ground_truth", "FSD50K.metadata", "FSD50K.dev_audio"):
    ...     os.makedirs(os.path.join(d, sub))
    >>> open(os.path.join(d, "FSD50K.dev_audio", "64760.wav"), "wb").close()
    >>> with open(os.path.join(d, "FSD50K.ground_truth", "dev.csv"), "w") as f:
    ...     _ = f.write('fname,labels,mids,split\\n64760,"Electric_guitar,Music","/m/1,/m/2",train\\n')
    >>> with open(os.path.join(d, "FSD50K.metadata", "dev_clips_info_FSD50K.json"), "w") as f:
    ...     _ = f.write('{"64760": {"title": "riff.wav", "description": "", "tags": []}}')
    >>> read_fsd50k(d)[0][0]["caption"]
    'riff.wav'
    """
    folder = os.path.abspath(folder)
    splits = as_splits(splits)
    index = None
    rows, n_missing, n_found_csv = [], 0, 0
    for split in splits:
        gt_path = find_metadata(folder, os.path.join("FSD50K.ground_truth", f"{split}.csv"))
        if gt_path is None:
            logger.warning(
                "FSD50K: no FSD50K.ground_truth/%s.csv in %s or one folder down; split skipped.", split, folder
            )
            continue
        n_found_csv += 1
        if index is None:
            index = index_audio_files(folder)
        info_path = find_metadata(folder, os.path.join("FSD50K.metadata", f"{split}_clips_info_FSD50K.json"))
        clips_info = {}
        if info_path is None:
            logger.warning("FSD50K: no %s_clips_info_FSD50K.json; captions fall back to the labels.", split)
        else:
            with open(info_path, encoding="utf-8") as f:
                clips_info = json.load(f)
        records = read_csv(gt_path)
        require_columns(gt_path, records, ["fname", "labels"])
        for record in records:
            fname = (record["fname"] or "").strip()
            if not fname:
                continue
            caption = _fsd50k_caption(clips_info.get(fname) or {}, record["labels"] or "", caption_cleaning)
            if not caption:
                continue
            wav_path = lookup(index, fname + ".wav", prefer=(f"FSD50K.{split}_audio",))
            if wav_path is None:
                n_missing += 1
                continue
            rows.append(caption_row("fsd50k", len(rows), wav_path, caption, fname))
    if n_found_csv == 0:
        raise FileNotFoundError(
            f"FSD50K folder {folder} holds none of "
            f"{[os.path.join('FSD50K.ground_truth', s + '.csv') for s in splits]} (looked in it and one folder down)."
        )
    return rows, n_missing
