"""The paper code's ``overfit_size`` debug mode: train on a few pairs many times, validate on the same pairs.

The paper code (``dataset/prepare_insper.py``, ``prepare_insper_multi_csv``)
shuffles the pairs with a fixed seed, takes the first ``overfit_size``,
repeats them 1000 times as the training set and uses them once as the
validation set: a quick check that a model and its loss can fit a few pairs.
Here the pairs are drawn from the prepared training manifest with the run's
seed; asking for more pairs than there are is an error (the paper code
silently takes fewer).
"""

import os
import random

from dataset.manifest import read_caption_csv, write_csv

__all__ = ["OVERFIT_REPEATS", "overfit_manifests"]

#: Times the chosen pairs are repeated in the training set (the paper code's constant).
OVERFIT_REPEATS = 1000


def overfit_manifests(train_csv, out_dir, size, seed, repeats=None):
    """Writes the overfit training and validation manifests; returns their paths.

    Arguments
    ---------
    train_csv : str
        The prepared training manifest (``ID,wav_path,caption``...).
    out_dir : str
        Where ``overfit_train.csv`` and ``overfit_valid.csv`` go.
    size : int
        Pairs to overfit (``--overfit_size``).
    seed : int
        Seed of the shuffle that picks them.
    repeats : int, optional
        Copies of the pairs in the training manifest (default :data:`OVERFIT_REPEATS`).

    Returns
    -------
    (str, str)
        The training and validation manifests.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_csv(os.path.join(d, "t.csv"), [{"ID": str(i), "wav_path": f"/{i}.wav", "caption": "c"} for i in range(5)])
    >>> train, valid = overfit_manifests(os.path.join(d, "t.csv"), d, 2, seed=0, repeats=3)
    >>> [r["ID"] for r in read_caption_csv(train)][:3], len(read_caption_csv(train)), len(read_caption_csv(valid))
    (['0_2', '0_1', '1_2'], 6, 2)
    """
    repeats = OVERFIT_REPEATS if repeats is None else repeats
    rows = read_caption_csv(train_csv)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SystemExit(f"--overfit_size={size!r}: expected a positive number of pairs (or null: off).")
    if size > len(rows):
        raise SystemExit(f"--overfit_size={size}: the training manifest {train_csv} has only {len(rows)} pairs.")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    chosen = [rows[i] for i in order[:size]]
    train = [dict(row, ID=f"{k}_{row['ID']}") for k in range(repeats) for row in chosen]
    train_path = os.path.join(out_dir, "overfit_train.csv")
    valid_path = os.path.join(out_dir, "overfit_valid.csv")
    write_csv(train_path, train)
    write_csv(valid_path, chosen)
    return train_path, valid_path
