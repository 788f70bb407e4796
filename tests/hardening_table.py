"""The frame of the hardening table (:mod:`test_hardening_defects`): a row, and a folder's snapshot.

Kept apart from the test module so that the rows' modules import it without a cycle.
"""

import hashlib
import os
from dataclasses import dataclass, field
from typing import Callable


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
