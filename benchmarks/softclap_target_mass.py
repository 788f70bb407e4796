#!/usr/bin/env python3
"""How far the paper code's SoftCLAP targets are from a distribution, for a teacher's embeddings.

The paper code's target row is ``(1-β)·I + β·S`` with ``S`` the teacher's
within-modality cosines of the batch, not normalised. This prints, for random
batches of a teacher's embeddings (the curation step's ``audio_emb.npy`` and
``text_emb.npy``), the mean within-batch cosine (off the diagonal), the share
of cosines above 0.5, and the mean row sum of the targets (1 for a distribution).

Usage:
    python benchmarks/softclap_target_mass.py EMB_DIR [--batch_size=32] [--beta=0.3] [--json out.json]
"""

import argparse
import json
import os

import numpy as np


def target_mass(emb, batch_size, beta, batches=200, seed=0):
    """Mean off-diagonal cosine, share above 0.5 and mean target row sum over random batches."""
    rng = np.random.default_rng(seed)
    emb = emb.astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cos, above, sums = [], [], []
    off = ~np.eye(batch_size, dtype=bool)
    for _ in range(batches):
        x = emb[rng.choice(len(emb), batch_size, replace=False)]
        s = x @ x.T
        cos.append(s[off].mean())
        above.append((s[off] > 0.5).mean())
        sums.append(((1 - beta) * np.eye(batch_size) + beta * s).sum(axis=1).mean())
    return {"mean_cosine": float(np.mean(cos)), "share_above_0.5": float(np.mean(above)),
            "mean_row_sum": float(np.mean(sums))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("emb_dir")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    out = {"emb_dir": os.path.abspath(args.emb_dir), "batch_size": args.batch_size, "beta": args.beta}
    for name in ("audio_emb", "text_emb"):
        out[name] = target_mass(np.load(os.path.join(args.emb_dir, f"{name}.npy")), args.batch_size, args.beta)
        print(name, {k: round(v, 3) for k, v in out[name].items()})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
