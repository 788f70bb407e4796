"""The leakage audit of training audio against evaluation sets, for the pipeline and for curation run by hand.

:func:`audit_sets` runs :func:`curation.leakage.find_leaks` for every
(training set, evaluation set) pair and returns one row per leaked clip
(:data:`LEAKAGE_FIELDS`, the columns of ``leakage.csv``); :func:`drop_leaked`
writes a pairs CSV without the leaked clips. By hand, after the curation
recipes (embed the evaluation clips with the same teacher first, e.g.
``microsoft_curation_toemb.py <yaml> --audio_pathfile=esc50_clips.txt
--text_pathfile= --output_folder=esc50_emb``)::

    python -m curation.audit --emb_dir=curation/save --eval_emb_dir=esc50_emb/save \\
        --pairs curation/save/du_pairs_thr0.75.csv --policy=drop --out=audit

writes ``audit/leakage.csv`` and, with ``--policy=drop``, a copy of each
``--pairs`` CSV without the leaked clips (``audit/<name>_clean.csv``);
``python -m curation.report --emb_dir=curation/save --leakage=audit/leakage.csv``
shows it on the curation page.
"""

import argparse
import os
import sys

import numpy as np

from curation.leakage import audio_digests, find_leaks
from dataset.manifest import read_csv, write_csv

__all__ = ["LEAKAGE_FIELDS", "ACTIONS", "read_embeddings", "audit_sets", "drop_leaked", "write_leakage_csv", "main"]

#: The columns of ``leakage.csv``.
LEAKAGE_FIELDS = ["seed", "target", "set", "path", "reference", "kind", "cosine", "mel_corr", "offset_s", "wave_corr",
                  "action"]
#: What a policy did to a leaked clip.
ACTIONS = {"drop": "dropped", "warn": "warned", "fail": "stopped"}


def read_embeddings(emb_dir):
    """``(paths, embeddings)`` of an embedding folder (``audio_paths.txt``, ``audio_emb.npy``; memory-mapped)."""
    from embeddings.lists import read_path_list

    paths = read_path_list(os.path.join(emb_dir, "audio_paths.txt"))
    emb = np.load(os.path.join(emb_dir, "audio_emb.npy"), mmap_mode="r")
    if len(emb) != len(paths):
        raise ValueError(f"{emb_dir}: audio_emb.npy has {len(emb)} rows for {len(paths)} paths in audio_paths.txt; "
                         "embed again")
    return paths, emb


def audit_sets(candidate_sets, reference_sets, *, policy="drop", cosine=None, mel_corr=None, top_k=None,
               wave_corr=None, cache_path=None, progress=False, seed=""):
    """One row per leaked clip of each training set, for each evaluation set.

    Arguments
    ---------
    candidate_sets : dict
        ``{set name: (paths, embeddings)}`` of the training audio (``unpaired``, ``pairs``).
    reference_sets : dict
        ``{target name: (paths, embeddings)}`` of the evaluation clips.
    policy : str
        Recorded as each row's action (``drop`` -> ``dropped``).
    cosine, mel_corr, top_k, wave_corr : optional
        :func:`curation.leakage.find_leaks`'s gates (None: its defaults).
    cache_path : str, optional
        The decoded-audio digests' cache (resumable).
    """
    gates = {k: v for k, v in (("cosine", cosine), ("mel_corr", mel_corr), ("top_k", top_k), ("wave_corr", wave_corr))
             if v is not None}
    everything = list(dict.fromkeys(p for paths, _ in [*candidate_sets.values(), *reference_sets.values()]
                                    for p in paths))
    digests = audio_digests(everything, cache_path=cache_path, progress=progress)
    rows = []
    for target, (refs, ref_emb) in reference_sets.items():
        if not len(refs):
            continue
        ref_emb = np.array(ref_emb, dtype=np.float32)  # a writable copy (the file is memory-mapped)
        for set_name, (paths, emb) in candidate_sets.items():
            if not len(paths):
                continue
            for leak in find_leaks(list(paths), np.asarray(emb, dtype=np.float32), list(refs), ref_emb,
                                   digests=digests, progress=progress, **gates):
                rows.append({"seed": seed, "target": target, "set": set_name,
                             **{k: leak.get(k) for k in ("path", "reference", "kind", "cosine", "mel_corr",
                                                         "offset_s", "wave_corr")},
                             "action": ACTIONS.get(policy, "")})
    return rows


def write_leakage_csv(path, rows):
    """``leakage.csv`` (floats with 4 decimals)."""
    def text(value):
        return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else value)

    write_csv(path, [{k: text(r.get(k)) for k in LEAKAGE_FIELDS} for r in rows], LEAKAGE_FIELDS)
    return path


def drop_leaked(csv_path, leaked, out_path):
    """Writes ``csv_path`` without the rows whose ``wav_path`` is in ``leaked``; returns the rows dropped."""
    rows = read_csv(csv_path)
    kept = [r for r in rows if r.get("wav_path") not in leaked]
    write_csv(out_path, kept, list(rows[0]) if rows else ["ID", "wav_path", "caption"])
    return len(rows) - len(kept)


def main(argv=None):
    """``python -m curation.audit``: the audit of a curation folder's clips against evaluation clips."""
    parser = argparse.ArgumentParser(prog="python -m curation.audit", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--emb_dir", required=True, help="the curation embedding folder of the unpaired audio")
    parser.add_argument("--eval_emb_dir", required=True, nargs="+",
                        help="embedding folder(s) of the evaluation clips, embedded by the same teacher")
    parser.add_argument("--pairs", nargs="*", default=[], help="pairs CSVs to clean (with --policy=drop)")
    parser.add_argument("--policy", choices=("drop", "warn", "fail"), default="drop")
    parser.add_argument("--cosine", type=float, default=None, help="teacher cosine gate (default: 0.9)")
    parser.add_argument("--mel_corr", type=float, default=None, help="log-mel correlation that confirms (0.9)")
    parser.add_argument("--top_k", type=int, default=None, help="evaluation clips checked per clip (3)")
    parser.add_argument("--wave_corr", type=float, default=None, help="8-kHz waveform correlation that confirms (0.5)")
    parser.add_argument("--out", default="leakage_audit", help="output folder (default: leakage_audit)")
    args = parser.parse_args(argv)
    try:
        pool = read_embeddings(args.emb_dir)
        refs = {os.path.basename(os.path.normpath(d)) if len(args.eval_emb_dir) > 1 else "eval": read_embeddings(d)
                for d in args.eval_emb_dir}
    except (OSError, ValueError) as err:
        raise SystemExit(f"curation.audit: {err}") from None
    for path in args.pairs:
        if not os.path.isfile(path):
            raise SystemExit(f"curation.audit: --pairs {path} does not exist")
    os.makedirs(args.out, exist_ok=True)
    rows = audit_sets({"unpaired": pool}, refs, policy=args.policy, cosine=args.cosine, mel_corr=args.mel_corr,
                      top_k=args.top_k, wave_corr=args.wave_corr, cache_path=os.path.join(args.out, "digests.json"),
                      progress=True)
    csv_path = write_leakage_csv(os.path.join(args.out, "leakage.csv"), rows)
    leaked = {r["path"] for r in rows}
    print(f"{len(leaked)} of {len(pool[0])} clips are evaluation clips "
          f"({sum(r['kind'] == 'exact' for r in rows)} exact, {sum(r['kind'] == 'near' for r in rows)} near): "
          f"{csv_path}")
    if leaked and args.policy == "fail":
        return 1
    if args.policy == "drop":
        for path in args.pairs:
            stem = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(args.out, f"{stem}_clean.csv")
            print(f"{path}: {drop_leaked(path, leaked, out)} rows dropped -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
