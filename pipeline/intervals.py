"""Bootstrap intervals of the toy pipeline's table, from the per-clip ``predictions.csv`` of each zero-shot run.

Every model is scored on the same clips of a target set in every seed, so a
resample draws *clips* (with replacement) and keeps all seeds of each drawn
clip: an accuracy's interval is over clips, pooled over seeds, and a
difference between two models is paired (both models, the same drawn clips).
The interval is the 2.5 and 97.5 percentiles of the resampled statistic
(percentile bootstrap). A difference whose interval contains 0 is "not shown".
"""

import csv

import numpy as np

__all__ = ["RESAMPLES", "correct_matrix", "clip_resamples", "accuracy_interval", "difference_interval", "shown"]

#: Resamples per interval (fixed, with a fixed seed: the same run prints the same intervals).
RESAMPLES = 2000


def _correct_by_clip(path):
    """``{clip ID: 1.0 if the top-1 prediction is the true label else 0.0}`` from one predictions.csv."""
    with open(path, encoding="utf-8", newline="") as f:
        return {row["ID"]: float(row["true"] == row["predicted"]) for row in csv.DictReader(f)}


def correct_matrix(paths, clips=None):
    """Correctness of each clip (columns) in each seed's predictions (rows).

    Arguments
    ---------
    paths : list of str
        One ``predictions.csv`` per seed.
    clips : list of str, optional
        The clip IDs (columns), e.g. to align two models; default: the
        clips every file scored, sorted.

    Returns
    -------
    (list of str, numpy.ndarray)
        The clip IDs and a ``(seeds, clips)`` array of 0/1.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for s, pred in enumerate(["a,b", "a,a"]):
    ...     with open(os.path.join(d, f"{s}.csv"), "w") as f:
    ...         _ = f.write("ID,true,predicted\\nc1,a," + pred.split(",")[0] + "\\nc2,a," + pred.split(",")[1] + "\\n")
    >>> correct_matrix([os.path.join(d, "0.csv"), os.path.join(d, "1.csv")])
    (['c1', 'c2'], array([[1., 0.],
           [1., 1.]]))
    """
    tables = [_correct_by_clip(p) for p in paths]
    if clips is None:
        clips = sorted(set.intersection(*(set(t) for t in tables))) if tables else []
    missing = [(p, c) for p, t in zip(paths, tables) for c in clips if c not in t]
    if missing:
        raise ValueError(f"{missing[0][0]} has no prediction for clip {missing[0][1]}")
    return list(clips), np.array([[t[c] for c in clips] for t in tables], dtype=np.float64)


def clip_resamples(n_clips, resamples=RESAMPLES, seed=0):
    """``(resamples, n_clips)`` indices of clips drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n_clips, size=(resamples, n_clips))


def _interval(values):
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def accuracy_interval(correct, draws):
    """95 % percentile-bootstrap interval of the accuracy pooled over seeds.

    ``correct`` is ``(seeds, clips)`` (see :func:`correct_matrix`); each
    resample averages the per-clip accuracy (mean over seeds) of the drawn clips.

    Example
    -------
    >>> correct = np.array([[1.0, 1.0, 0.0, 0.0]])
    >>> low, high = accuracy_interval(correct, clip_resamples(4))
    >>> 0.0 <= low < 0.5 < high <= 1.0
    True
    """
    per_clip = correct.mean(axis=0)
    return _interval(per_clip[draws].mean(axis=1))


def difference_interval(correct_a, correct_b, draws):
    """95 % paired-bootstrap interval of accuracy(a) - accuracy(b) on the same clips (columns aligned).

    Example
    -------
    >>> a, b = np.array([[1.0, 1.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 0.0, 0.0]])
    >>> difference_interval(a, b, clip_resamples(4))[0] > 0
    True
    """
    if correct_a.shape[1] != correct_b.shape[1]:
        raise ValueError("paired intervals need the same clips in both models")
    per_clip = correct_a.mean(axis=0) - correct_b.mean(axis=0)
    return _interval(per_clip[draws].mean(axis=1))


def shown(interval):
    """+1 if the interval is above 0, -1 if below, 0 (not shown) if it contains 0."""
    low, high = interval
    return 1 if low > 0 else -1 if high < 0 else 0
