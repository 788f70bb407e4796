"""``python -m dataset.toy OUT [--size tiny|demo] [--seed N] [--workers K]``: writes a toy world."""

import sys

from dataset.toy.world import main

if __name__ == "__main__":
    sys.exit(main())
