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

import re

import pytest

from hardening_table import snapshot


def _rows():
    from hardening_rows_inputs import ROWS as INPUT_ROWS
    from hardening_rows_storage import ROWS as STORAGE_ROWS

    return INPUT_ROWS + STORAGE_ROWS


ROWS = _rows()

#: Exception class names that, in the user's line, would mean a library's error went through unexplained.
LIBRARY_ERRORS = (r"\b(PytorchStreamReader\w*|ConstructorError|ScannerError|ParserError|ManifestError|TypeError|"
                  r"KeyError|AttributeError|UnpicklingError|IndexError)\b")


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
    assert not re.search(LIBRARY_ERRORS, text), f"{row.id}: a library's own exception reached the user: {text}"
    for name in row.names(ctx):
        assert str(name) in text, f"{row.id}: {name!r} not named in: {text}"
    assert snapshot(watched) == before, f"{row.id}: something under {watched} was written or changed"
