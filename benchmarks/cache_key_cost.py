"""What keying the embedding caches on content would cost, against our size + modification time key.

The audio caches (``audio_stat.npy`` of the curation step and the index, the
prepared manifests) key each file on ``(st_size, st_mtime_ns)``: one ``stat``
per file, no read. A content hash would also catch a file rewritten with the
same size and a restored modification time, but it reads every byte of every
file on every run. This script writes ``--files`` AudioSet-like WAVs (10 s,
32 kHz, 16-bit mono), warms the page cache (the hash figures are therefore a
lower bound: a cold disk adds its read time), and times per file, best of
``--repeats`` passes:

- ``embeddings.keys.file_keys`` (what the caches use),
- reading every byte (no hash),
- ``hashlib.file_digest`` with blake2b and sha256,

then scales each to 2 M clips (AudioSet) and prints the ratio to ``file_keys``.

Usage::

    python benchmarks/cache_key_cost.py [--files 300] [--repeats 5] [--json] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

import numpy as np
import soundfile as sf

from embeddings.keys import file_keys
from machine import describe, emit_json

AUDIOSET_CLIPS = 2_000_000


def write_clips(folder, n, seconds=10.0, sample_rate=32000):
    """``n`` WAVs of random noise (16-bit PCM mono); returns their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"Y{i:06d}.wav")
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype("float32"), sample_rate,
                 subtype="PCM_16")
        paths.append(path)
    return paths


def best_per_file(fn, n, repeats):
    """Best wall time of ``repeats`` calls of ``fn()``, divided by ``n``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) / n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cache-key-cost-") as folder:
        paths = write_clips(folder, args.files)
        size = os.path.getsize(paths[0])

        def read_all():
            for p in paths:
                with open(p, "rb") as f:
                    while f.read(1 << 20):
                        pass

        def hash_all(name):
            def run():
                for p in paths:
                    with open(p, "rb") as f:
                        hashlib.file_digest(f, name)
            return run

        read_all()  # warm the page cache
        methods = {
            "file_keys (size, mtime_ns)": lambda: file_keys(paths),
            "read every byte": read_all,
            "blake2b of the content": hash_all("blake2b"),
            "sha256 of the content": hash_all("sha256"),
        }
        per_file = {name: best_per_file(fn, len(paths), args.repeats) for name, fn in methods.items()}

    base = per_file["file_keys (size, mtime_ns)"]
    rows = [{"method": name, "us_per_file": round(t * 1e6, 2),
             "minutes_for_2M_clips": round(t * AUDIOSET_CLIPS / 60, 2), "ratio_to_file_keys": round(t / base, 1)}
            for name, t in per_file.items()]
    report = {"machine": describe(), "files": args.files, "bytes_per_file": size, "page_cache": "warm",
              "repeats": args.repeats, "rows": rows,
              "hash_over_stat": round(per_file["blake2b of the content"] / base, 1)}
    emit_json(report, args.out, args.json)
    if args.json:
        return
    print(f"{args.files} files of {size} bytes (10 s, 32 kHz, 16-bit mono), page cache warm; "
          f"{report['machine']['cpu']}")
    for row in rows:
        print(f"{row['method']:>28}: {row['us_per_file']:9.1f} us/file -> 2 M clips: "
              f"{row['minutes_for_2M_clips']:7.2f} min ({row['ratio_to_file_keys']}x file_keys)")


if __name__ == "__main__":
    main()
