"""The toy world as a whole: its sizes, its plan, its generation and the command line.

:func:`plan_world` describes every set of a world (clip specs and metadata
rows) without rendering audio; :func:`generate_toy_world` renders and writes
that plan, then ``world.json`` (class lists, counts and the recording-condition
parameters). Same seed, same bytes: nothing records a time stamp, rows are
written in sorted order and every clip draws from its own random stream.

Usage
-----
``python -m dataset.toy OUT [--size tiny|demo] [--seed N] [--workers K]``
(``python -m dataset.toy_world ...`` works too).
"""

import argparse
import json
import os
import shutil
import time

from dataset.manifest import atomic_write
from dataset.toy.conditions import CONDITION
from dataset.toy.events import ESC10, ESC50_CLASSES, EVENT_KEYS, SCENES, TUT_SCENES, US8K_CLASSES, US8K_EVENT
from dataset.toy.layouts import (
    formats_summary,
    plan_clotho,
    plan_esc50,
    plan_tut,
    plan_unpaired,
    plan_us8k,
    write_clotho,
    write_esc50,
    write_pairs,
    write_tut,
    write_unpaired,
    write_us8k,
)
from dataset.toy.render import write_clips

FORMAT_VERSION = 1

# Sizes: counts per set. "tiny" feeds the unit tests (seconds), "demo" the
# one-command pipeline (enough data to train a small CLAP in minutes).
SIZES = {
    "tiny": {
        "clotho": {"development": 72, "validation": 12, "evaluation": 12},
        "clotho_scene_fraction": 0.25,
        "unpaired": 96,
        "unpaired_scene_fraction": 0.25,
        "esc50_per_class_per_fold": 2,
        "us8k_per_class_per_fold": 1,
        "tut_dev_locations_per_scene": 4,
        "tut_dev_clips_per_location": 1,
        "tut_eval_locations_per_scene": 1,
        "tut_eval_clips_per_location": 2,
    },
    "demo": {
        "clotho": {"development": 360, "validation": 60, "evaluation": 60},
        "clotho_scene_fraction": 0.25,
        "unpaired": 500,
        "unpaired_scene_fraction": 0.25,
        "esc50_per_class_per_fold": 4,
        "us8k_per_class_per_fold": 3,
        "tut_dev_locations_per_scene": 6,
        "tut_dev_clips_per_location": 3,
        "tut_eval_locations_per_scene": 2,
        "tut_eval_clips_per_location": 3,
    },
}



_OWNED = ["clotho", "unpaired", "ESC-50", "UrbanSound8K", "TUT2017", "pairs.csv",
          "unpaired_paths.txt", "unpaired_labels.csv", "world.json"]


def _prepare_out_dir(out):
    """Clears a previous toy world in ``out``; refuses to overwrite anything else."""
    present = [p for p in _OWNED if os.path.lexists(os.path.join(out, p))]
    if present and not os.path.isfile(os.path.join(out, "world.json")):
        raise FileExistsError(
            f"{out} already holds {present} but no world.json, so it does not look like a toy "
            f"world written by this module; choose an empty or new folder.")
    # world.json goes first: an interrupted clean-up must not leave a folder
    # that looks complete.
    for p in ["world.json"] + [p for p in present if p != "world.json"]:
        full = os.path.join(out, p)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        elif os.path.lexists(full):
            os.remove(full)



def _checked_seed(size, seed):
    """Validates ``size`` and ``seed``; returns the seed as an int."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def plan_world(out_dir, size="tiny", seed=0):
    """Plans the toy world that :func:`generate_toy_world` writes, without rendering audio.

    Every decision (file names, labels, captions, formats, the events of each
    clip) is drawn from per-clip streams of ``seed``, so the plan is what the
    generator renders and writes, whatever was planned or written before.
    Nothing is read or written on disk.

    Arguments
    ---------
    out_dir : str
        Folder of the world (made absolute: the specs hold absolute paths).
    size : str
        ``"tiny"`` or ``"demo"`` (see ``SIZES``).
    seed : int
        World seed (>= 0).

    Returns
    -------
    dict
        ``out_dir`` (absolute), ``size``, ``seed``, and one section per set:
        ``clotho`` (:func:`~dataset.toy.layouts.plan_clotho`: ``clips``,
        ``captions``, ``metadata`` per split), ``unpaired`` (``clips``),
        ``esc50`` and ``us8k`` (``clips``, ``rows``) and ``tut`` (``clips``,
        ``development``, ``evaluation`` rows and the two set folders). A clip
        spec holds ``key``, ``path``, ``sr``, ``seconds``, ``channels``,
        ``subtype``, ``events``, ``scene`` and ``shifted``; rows are those of
        the set's metadata files, in file order.

    Example
    -------
    >>> plan = plan_world("/data/toy", "tiny", seed=0)
    >>> plan["out_dir"], len(plan["esc50"]["rows"]), len(plan["unpaired"]["clips"])
    ('/data/toy', 100, 96)
    >>> spec = plan["esc50"]["clips"][0]
    >>> spec["path"].startswith("/data/toy/ESC-50/audio/"), spec["events"][0] in ESC50_CLASSES
    (True, True)
    """
    seed = _checked_seed(size, seed)
    cfg = SIZES[size]
    out = os.path.abspath(os.fspath(out_dir))
    return {
        "out_dir": out,
        "size": size,
        "seed": seed,
        "clotho": plan_clotho(out, seed, cfg),
        "unpaired": plan_unpaired(out, seed, cfg),
        "esc50": plan_esc50(out, seed, cfg),
        "us8k": plan_us8k(out, seed, cfg),
        "tut": plan_tut(out, seed, cfg),
    }


def _all_clips(plan):
    """Every clip spec of a plan: Clotho (by split), unpaired, ESC-50, UrbanSound8K, TUT2017."""
    return [s for split in plan["clotho"]["clips"].values() for s in split] + plan["unpaired"]["clips"] \
        + plan["esc50"]["clips"] + plan["us8k"]["clips"] + plan["tut"]["clips"]


def generate_toy_world(out_dir, size="tiny", seed=0, workers=None):
    """Writes the toy world (audio and metadata in the real layouts) under ``out_dir``.

    The world is :func:`plan_world`'s plan, rendered and written.

    Arguments
    ---------
    out_dir : str
        Output folder; created if needed. A previous toy world in it is
        replaced; a non-empty folder that is not a toy world is refused.
    size : str
        ``"tiny"`` (tests, a few seconds) or ``"demo"`` (the demo pipeline).
    seed : int
        World seed (>= 0). Same seed, same bytes.
    workers : int, optional
        Processes rendering audio (default: up to 2). The output does not
        depend on it.

    Returns
    -------
    dict
        ``counts`` per set, ``paths`` of the set roots and key files, and the
        class lists.

    Example
    -------
    >>> import tempfile
    >>> summary = generate_toy_world(tempfile.mkdtemp(), "tiny", seed=0)  # doctest: +SKIP
    >>> summary["counts"]["esc50"]  # doctest: +SKIP
    100
    """
    plan = plan_world(out_dir, size, seed)
    out, seed = plan["out_dir"], plan["seed"]
    os.makedirs(out, exist_ok=True)
    _prepare_out_dir(out)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)

    write_clips(_all_clips(plan), seed, workers)

    clotho_root = write_clotho(out, plan["clotho"])
    pairs = write_pairs(out, plan["clotho"])
    write_unpaired(out, plan["unpaired"])
    esc_root = write_esc50(out, plan["esc50"])
    us8k_root = write_us8k(out, plan["us8k"])
    tut_root = write_tut(out, plan["tut"])

    counts = {
        "clotho": {split: len(v) for split, v in plan["clotho"]["clips"].items()},
        "pairs": len(pairs),
        "unpaired": len(plan["unpaired"]["clips"]),
        "esc50": len(plan["esc50"]["rows"]),
        "us8k": len(plan["us8k"]["rows"]),
        "tut_development": len(plan["tut"]["development"]),
        "tut_evaluation": len(plan["tut"]["evaluation"]),
    }
    world = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "events": EVENT_KEYS,
        "scenes": {k: {"events": v["events"], "optional": v["optional"]} for k, v in SCENES.items()},
        "esc50": {"targets": {str(t): c for t, c in enumerate(ESC50_CLASSES)},
                  "esc10": sorted(ESC10)},
        "us8k": {"classes": {str(i): c for i, c in enumerate(US8K_CLASSES)},
                 "events": US8K_EVENT},
        "tut": {"scenes": TUT_SCENES},
        "counts": counts,
        "condition": CONDITION,
        "formats": formats_summary(),
    }
    # world.json is written last: its presence marks a complete world. It holds
    # no absolute path, so it is identical wherever the world is written.
    atomic_write(os.path.join(out, "world.json"),
                 lambda f: f.write(json.dumps(world, indent=2, sort_keys=True) + "\n"),
                 "w", encoding="utf-8", newline="")

    return {
        "out_dir": out,
        "seed": seed,
        "size": size,
        "counts": counts,
        "paths": {
            "clotho": clotho_root,
            "pairs_csv": os.path.join(out, "pairs.csv"),
            "unpaired_dir": os.path.join(out, "unpaired"),
            "unpaired_paths": os.path.join(out, "unpaired_paths.txt"),
            "unpaired_labels": os.path.join(out, "unpaired_labels.csv"),
            "esc50": esc_root,
            "us8k": us8k_root,
            "tut": tut_root,
            "world_json": os.path.join(out, "world.json"),
        },
        "esc50_classes": list(ESC50_CLASSES),
        "us8k_classes": list(US8K_CLASSES),
        "tut_scenes": list(TUT_SCENES),
    }


def _disk_size(path):
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total


def main(argv=None, prog="python -m dataset.toy"):
    """Command line: ``python -m dataset.toy OUT [--size tiny|demo] [--seed N] [--workers K]``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).
    prog : str
        Program name shown in the usage and error messages.

    Returns
    -------
    int
        0 on success (argument and folder errors exit with status 2).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a deterministic synthetic world (Clotho, unpaired pool, ESC-50, "
                    "UrbanSound8K, TUT2017 layouts) for the tests and the demo pipeline.")
    parser.add_argument("out_dir", help="output folder (a previous toy world in it is replaced)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes rendering audio (default: up to 2; the output does not depend on it)")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    try:
        summary = generate_toy_world(args.out_dir, args.size, args.seed, args.workers)
    except (FileExistsError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    c = summary["counts"]
    print(f"Toy world ({summary['size']}, seed {summary['seed']}) written to {summary['out_dir']} "
          f"in {time.perf_counter() - begin:.1f} s, {_disk_size(summary['out_dir']) / 1e6:.1f} MB")
    print(f"  Clotho: {c['clotho']['development']} development, {c['clotho']['validation']} validation, "
          f"{c['clotho']['evaluation']} evaluation clips (5 captions each); pairs.csv: {c['pairs']} rows")
    print(f"  unpaired pool: {c['unpaired']} clips -> {summary['paths']['unpaired_paths']}")
    print(f"  ESC-50: {c['esc50']} clips, {len(summary['esc50_classes'])} classes, 5 folds")
    print(f"  UrbanSound8K: {c['us8k']} clips, {len(summary['us8k_classes'])} classes, 10 folds")
    print(f"  TUT2017: {c['tut_development']} development + {c['tut_evaluation']} evaluation clips, "
          f"{len(summary['tut_scenes'])} scenes")
    return 0

