"""The second hardening pass (issue 25): twelve defects a hostile user found, one row each.

Each row builds its inputs under ``tmp_path`` (``setup``), does the one thing that used to
fail badly (``act``, which returns the text the user sees: the exception's message or the
warning line), and names the strings that text must contain (``names``: the input and the
fix). The table asserts, for every row:

- the text is one line, with no ``Traceback`` and no library's own exception name;
- it contains every name;
- every folder in ``watched`` is byte-for-byte as it was before ``act`` (or still absent):
  nothing is written or changed on failure.

Rows 1-6 are the inputs that are refused (:mod:`hardening_rows_inputs`), rows 7-12 the disk,
the index and the audio folder (:mod:`hardening_rows_storage`).
"""

import hashlib
import os
from dataclasses import dataclass, field
from typing import Callable

import pytest


@dataclass
class Row:
    """One defect: how to build its inputs, what to do, what the user must be told."""

    id: str
    setup: Callable  # (tmp_path) -> ctx dict
    act: Callable  # (ctx) -> str, the text the user sees
    names: Callable  # (ctx) -> list of strings the text must contain
    watched: Callable = field(default=lambda ctx: [])  # (ctx) -> folders that must not change


def snapshot(folders):
    """Every file's relative path and content digest (and every folder) under each folder; None if absent."""
    shot = {}
    for folder in map(str, folders):
        if not os.path.lexists(folder):
            shot[folder] = None
            continue
        entries = {}
        for root, dirs, files in os.walk(folder):
            for name in dirs:
                entries[os.path.relpath(os.path.join(root, name), folder)] = "dir"
            for name in files:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    entries[os.path.relpath(path, folder)] = "special"
                    continue
                with open(path, "rb") as handle:
                    entries[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
        shot[folder] = entries
    return shot


def _rows():
    from hardening_rows_inputs import ROWS as INPUT_ROWS
    from hardening_rows_storage import ROWS as STORAGE_ROWS

    return INPUT_ROWS + STORAGE_ROWS


ROWS = _rows()


def test_the_table_has_the_twelve_defects():
    assert len(ROWS) == 12
    assert len({row.id for row in ROWS}) == 12


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_each_defect_gives_one_line_naming_the_input_and_changes_nothing(row, tmp_path):
    ctx = row.setup(tmp_path)
    watched = row.watched(ctx)
    before = snapshot(watched)
    text = row.act(ctx)
    assert isinstance(text, str) and text.strip(), f"{row.id}: no message"
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"{row.id}: not one line:\n{text}"
    assert "Traceback" not in text
    for name in row.names(ctx):
        assert str(name) in text, f"{row.id}: {name!r} not named in: {text}"
    assert snapshot(watched) == before, f"{row.id}: something under {watched} was written or changed"
