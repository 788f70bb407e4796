"""What the pipeline's stages share, and what only the toy world knows.

The table's rows and the toy's target sets, the seeds, the checks of the
method keys, the data-derived thresholds, and the toy-only pair precision
(the share of curated pairs whose caption names an event of its clip). The
stages themselves are laid out by :class:`pipeline.plan.SeedPlan`.
"""

import csv
import math
import os

import numpy as np

from dataset.manifest import read_caption_csv
from dataset.toy import caption_events
from pipeline.stages import REPO

__all__ = ["TARGETS", "ROWS", "parse_seeds", "check_hparams", "repo_path", "cosine_threshold", "threshold_flag",
           "printed_path", "count_rows", "pair_precision", "existing_outputs"]

# Target sets: zero-shot dataset name -> (world folder, curation YAML short name, table title).
TARGETS = {
    "esc50": ("ESC-50", "esc", "ESC-50"),
    "us8k": ("UrbanSound8K", "us8k", "UrbanSound8K"),
    "tut17": ("TUT2017", "tut", "TUT2017"),
}
# Rows of the table: student kind -> title.
ROWS = {"teacher": "teacher", "du": "DU", "ds": "DS", "ads": "ADS",
        "ds_softclap": "DS+SoftCLAP", "ads_softclap": "ADS+SoftCLAP"}


def parse_seeds(hparams):
    """The training seeds: ``seeds`` ("1,2,3" or a list) or else ``[seed]``."""
    seeds = hparams.get("seeds")
    if seeds is None:
        return [int(hparams["seed"])]
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace(" ", ",").split(",") if s]
    if isinstance(seeds, int):
        seeds = [seeds]
    return [int(s) for s in seeds]


def check_hparams(hparams, toy=True):
    """Fails early, saying what to fix (``toy``: the target sets are the toy world's)."""
    unknown = [s for s in hparams["target_sets"] if s not in TARGETS]
    if toy and (unknown or not hparams["target_sets"]):
        raise SystemExit(f"--target_sets must be a non-empty subset of {list(TARGETS)}; got {hparams['target_sets']}.")
    bad = [s for s in hparams["students"] if s not in ROWS or s == "teacher"]
    if bad or not hparams["students"]:
        raise SystemExit(f"--students: unknown student(s) {bad}; give a non-empty subset of "
                         f"{[r for r in ROWS if r != 'teacher']}.")
    high_ok = hparams["curation_mixing"] == "replace"
    if not (0.0 < float(hparams["curation_prob"]) < 1.0 or (high_ok and float(hparams["curation_prob"]) == 1.0)):
        raise SystemExit(
            f"--curation_prob must be in (0, 1) for the DU and ADS students (1 too with --curation_mixing=replace); "
            f"got {hparams['curation_prob']}."
        )
    for key in ("du_clip_fraction", "ads_clip_fraction"):
        if not 0.0 < float(hparams[key]) <= 1.0:
            raise SystemExit(f"--{key} must be in (0, 1]; got {hparams[key]}.")


def repo_path(path):
    """A YAML path relative to the repository (the pipeline runs from anywhere)."""
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def cosine_threshold(emb_dir, caption_set, clip_fraction):
    """The cosine that ``clip_fraction`` of the unpaired clips reach with their best caption (2 decimals, floor)."""
    audio = np.load(os.path.join(emb_dir, "audio_emb.npy")).astype(np.float32)
    captions = np.load(os.path.join(emb_dir, f"{caption_set}_emb.npy")).astype(np.float32)
    best = np.full(len(audio), -1.0, dtype=np.float32)
    for start in range(0, len(captions), 4096):
        best = np.maximum(best, (audio @ captions[start:start + 4096].T).max(axis=1))
    value = float(np.quantile(best, 1.0 - float(clip_fraction)))
    return math.floor(value * 100) / 100


def threshold_flag(value):
    """``--sim_threshold`` text whose YAML value prints back the same (it names the output file)."""
    return repr(round(float(value), 4))


def printed_path(stdout, prefix):
    """The path a recipe printed after ``prefix`` (e.g. ``Curation CSV: ``)."""
    for line in (stdout or "").splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].rsplit(" (summary: ", 1)[0].strip()
    raise ValueError(f"the log has no line starting with {prefix!r}")


def count_rows(path):
    """Rows of a caption CSV."""
    return len(read_caption_csv(path))


def pair_precision(pairs_csv, world):
    """Share of curated (unpaired clip, caption) pairs whose caption names an event of the clip (toy truth)."""
    truth = {}
    with open(os.path.join(world, "unpaired_labels.csv"), encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            truth[row["wav_path"]] = set(row["events"].split(";"))
    rows = read_caption_csv(pairs_csv)
    if not rows:
        return None
    hits = sum(bool(truth.get(r["wav_path"], set()) & set(caption_events(r["caption"]))) for r in rows)
    return hits / len(rows)


def existing_outputs(paths):
    """``paths`` itself when every file exists; ValueError naming the first that does not."""
    for path in paths.values():
        if not os.path.isfile(path):
            raise ValueError(f"missing {path}")
    return dict(paths)
