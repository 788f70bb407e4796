"""The toy world's former module, kept for existing imports and the command line.

The generator now lives in the package :mod:`dataset.toy` (signals, events,
captions, conditions, render, layouts, world); this module re-exports its
public API, so ``from dataset.toy_world import generate_toy_world,
caption_events`` keeps working. New code imports from ``dataset.toy``.

Usage
-----
``python -m dataset.toy_world OUT [--size tiny|demo] [--seed N] [--workers K]``
(the same as ``python -m dataset.toy ...``).
"""

import sys

from dataset import toy
from dataset.toy import *  # noqa: F403 (this module is the package's public API under its former name)

__all__ = list(toy.__all__)

if __name__ == "__main__":
    sys.exit(toy.main(prog="python -m dataset.toy_world"))
