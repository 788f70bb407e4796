"""The paper code's clean-up of the corpora's captions (``caption_cleaning: paper``)."""

import re

__all__ = ["CAPTION_CLEANING", "clean_caption", "clean_captions"]

#: ``caption_cleaning``: the paper code's caption clean-up of the corpora, or captions as written.
CAPTION_CLEANING = ("paper", "none")

_PAPER_LINK = re.compile(r"<a.*</a>")


def clean_caption(text, corpus):
    """The paper code's clean-up of a corpus caption (``dataset/prepare_curation.py``).

    Commas are removed and underscores become spaces; FSD50K descriptions also
    lose their links (``<a ...>...</a>``, up to the last ``</a>`` of a line),
    ``$``, ``*`` and carriage returns, and their lines are joined.

    Example
    -------
    >>> clean_caption(" a dog_bark, then rain ", "clotho")
    'a dog bark then rain'
    >>> clean_caption('Rain* on a <a href="x">tin</a> roof, $5', "fsd50k")
    'Rain on a roof 5'
    """
    if corpus != "fsd50k":
        return text.replace(",", "").replace("_", " ").strip()
    pieces = _PAPER_LINK.split(text.strip())
    pieces = [p.strip().replace("\n", " ").replace("\r", "").replace(",", "").replace("$", "").replace("*", "")
              .replace("_", " ") for p in pieces]
    return " ".join(pieces).strip()


def clean_captions(rows, corpus):
    """Applies :func:`clean_caption` to a corpus' rows, as the paper's code prepares its corpora.

    Rows whose caption becomes empty are dropped; for Clotho and MACS, whose
    index rows hold all of a clip's captions, a clip keeps each cleaned
    caption once (the paper's code takes their set).

    Example
    -------
    >>> rows = [{"wav_path": "a.wav", "caption": "rain, hard"}, {"wav_path": "a.wav", "caption": "rain hard"},
    ...         {"wav_path": "a.wav", "caption": ","}]
    >>> [r["caption"] for r in clean_captions(rows, "clotho")], len(clean_captions(rows, "audiocaps"))
    (['rain hard'], 2)
    """
    out, seen = [], set()
    for row in rows:
        caption = clean_caption(row["caption"], corpus)
        if not caption:
            continue
        if corpus in ("clotho", "macs"):
            if (row["wav_path"], caption) in seen:
                continue
            seen.add((row["wav_path"], caption))
        out.append(dict(row, caption=caption))
    return out
