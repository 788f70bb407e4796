"""Threshold join: ours (``curation.join``) vs ``faiss.IndexFlatIP.range_search`` vs plain ``torch.matmul``.

All three run in one process on the same random L2-normalised float32
embeddings (default 50,000 queries × 20,000 keys × 1024 dimensions, the
shape of an AudioSet shard against a caption corpus). The threshold is chosen
so that about ``--target_pairs`` pairs pass (random unit vectors in d
dimensions have cosines of about N(0, 1/d)). ``torch.matmul`` of the same
shapes, without any thresholding, is the machine's ceiling: once as one
product into a preallocated N×M output, once block by block with our block
shapes; the faster of the two counts.

Reported per method: seconds, pairs found, pairs/s, GFLOP/s (2·N·M·d flops)
and peak extra memory (resident set size above the level before the call,
sampled every 2 ms), as the median over ``--repeats`` runs that alternate
the methods (``best_of_runs``: the same ratios from each method's fastest
run). ``ratio_vs_faiss`` is our throughput over faiss's and
``fraction_of_matmul_peak`` our GFLOP/s over the ceiling's. faiss-cpu's
bundled OpenBLAS is told to use its Skylake-X kernels on AVX-512 CPUs (it
does not recognise recent Xeons and would otherwise run 4x slower).

Usage::

    python benchmarks/curation_join.py [--queries 50000] [--keys 20000] [--dim 1024]
        [--target_pairs 100000] [--threads N] [--json]
"""

from __future__ import annotations

import os


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# faiss-cpu wheels bundle OpenBLAS 0.3.15, which does not recognise recent Xeons
# (here family 6 model 207) and falls back to its SSE3 "Prescott" kernels, about 4x
# slower. On an AVX-512 CPU its Skylake-X kernels are asked for, so faiss is
# measured at its best. Must be set before any OpenBLAS is loaded.
if "avx512f" in _cpu_flags():
    os.environ.setdefault("OPENBLAS_CORETYPE", "SKYLAKEX")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from curation.join import threshold_join  # noqa: E402
from machine import cpu_model  # noqa: E402


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples the resident set size in a thread; ``extra`` is the peak above the level at entry."""

    def __init__(self, interval=0.002):
        self.interval = interval
        self.extra = 0

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra = self.peak - self.base


def random_unit_rows(n, dim, seed, chunk=8192):
    """``[n, dim]`` float32 unit rows, generated in chunks (no float64 temporary of the whole matrix)."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, dim)
    for s in range(0, n, chunk):
        block = torch.randn(min(chunk, n - s), dim, generator=gen)
        out[s : s + block.shape[0]] = torch.nn.functional.normalize(block, dim=1)
    return out


def threshold_for_pairs(n, m, dim, target_pairs):
    """Cosine threshold passed by about ``target_pairs`` of n·m random pairs (Gaussian approximation)."""
    from statistics import NormalDist

    tail = min(0.5, target_pairs / float(n * m))
    return NormalDist().inv_cdf(1.0 - tail) / np.sqrt(dim)


def measure(fn):
    """(result, seconds, peak extra bytes) of one call."""
    with PeakMemory() as mem:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, seconds, mem.extra


def report(seconds, pairs, flops, extra):
    return {
        "seconds": round(seconds, 3),
        "pairs": int(pairs),
        "pairs_per_s": round(pairs / seconds, 1),
        "gflops": round(flops / seconds / 1e9, 2),
        "peak_extra_mem_mb": round(extra / 2**20, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=50000)
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--target_pairs", type=int, default=100000)
    parser.add_argument("--threshold", type=float, default=None, help="overrides --target_pairs")
    parser.add_argument("--query_block", type=int, default=2048)
    parser.add_argument("--key_block", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3, help="median over repeats")
    parser.add_argument("--skip_full_matmul", action="store_true", help="no N×M output (saves N·M·4 bytes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)

    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    n, m, d = args.queries, args.keys, args.dim
    queries = random_unit_rows(n, d, args.seed)
    keys = random_unit_rows(m, d, args.seed + 1)
    q_np, k_np = queries.numpy(), keys.numpy()
    threshold = args.threshold if args.threshold is not None else threshold_for_pairs(n, m, d, args.target_pairs)
    flops = 2.0 * n * m * d
    log(f"{n} x {m} x {d} float32, threshold {threshold:.5f}, {args.threads} threads")

    def ours():
        return threshold_join(q_np, k_np, threshold, query_block=args.query_block, key_block=args.key_block)

    index = faiss.IndexFlatIP(d)
    index.add(k_np)

    def faiss_range():
        return index.range_search(q_np, threshold)

    def matmul_blocked():
        out = torch.empty(args.query_block * min(args.key_block, m))
        for qs in range(0, n, args.query_block):
            q = queries[qs : qs + args.query_block]
            for ks in range(0, m, args.key_block):
                k = keys[ks : ks + args.key_block]
                torch.matmul(q, k.T, out=out[: q.shape[0] * k.shape[0]].view(q.shape[0], k.shape[0]))

    def matmul_full():
        out = torch.empty(n, m)
        torch.matmul(queries, keys.T, out=out)
        del out

    runs = {"ours": [], "faiss": [], "matmul_blocked": [], "matmul_full": []}
    results = {}
    for _ in range(args.repeats):
        # Alternate the methods so that a change of machine load hits all of them.
        for name, fn in (("matmul_blocked", matmul_blocked), ("ours", ours), ("faiss", faiss_range),
                         ("matmul_full", matmul_full)):
            if name == "matmul_full" and args.skip_full_matmul:
                continue
            result, seconds, extra = measure(fn)
            runs[name].append((seconds, extra))
            results[name] = result
            log(f"  {name}: {seconds:.2f} s, {flops / seconds / 1e9:.1f} GFLOP/s")

    ours_pairs = results["ours"][0].size
    lims, faiss_sims, faiss_keys = results["faiss"]
    faiss_pairs = int(lims[-1])
    # Same pairs? faiss keeps sim > threshold on its float32 value; ours sim >= threshold on the float64 one.
    faiss_query = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
    ours_set = set(zip(results["ours"][0].tolist(), results["ours"][1].tolist()))
    faiss_set = set(zip(faiss_query.tolist(), faiss_keys.tolist()))

    def summary(name, pairs):
        seconds = statistics.median(r[0] for r in runs[name])
        extra = max(r[1] for r in runs[name])
        out = report(seconds, pairs, flops, extra)
        # Other jobs on a shared machine only ever slow a run down: the best run is shown too.
        out["gflops_best"] = round(flops / min(r[0] for r in runs[name]) / 1e9, 2)
        return out

    out = {
        "machine": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "faiss": faiss.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        },
        "shape": {"queries": n, "keys": m, "dim": d, "dtype": "float32"},
        "threshold": threshold,
        "blocks": {"query_block": args.query_block, "key_block": args.key_block},
        "ours": summary("ours", ours_pairs),
        "faiss": summary("faiss", faiss_pairs),
        "matmul_blocked": summary("matmul_blocked", 0),
    }
    ceiling = out["matmul_blocked"]["gflops"]
    if runs["matmul_full"]:
        out["matmul_full"] = summary("matmul_full", 0)
        ceiling = max(ceiling, out["matmul_full"]["gflops"])
    for name in [k for k in out if k.startswith("matmul")]:
        del out[name]["pairs"], out[name]["pairs_per_s"]
    out["pairs_only_ours"] = len(ours_set - faiss_set)
    out["pairs_only_faiss"] = len(faiss_set - ours_set)
    out["ratio_vs_faiss"] = round(out["ours"]["gflops"] / out["faiss"]["gflops"], 3)
    out["matmul_peak_gflops"] = ceiling
    out["fraction_of_matmul_peak"] = round(out["ours"]["gflops"] / ceiling, 3)
    out["faiss_fraction_of_matmul_peak"] = round(out["faiss"]["gflops"] / ceiling, 3)
    best_ceiling = max(out[k]["gflops_best"] for k in out if k.startswith("matmul_") and isinstance(out[k], dict))
    out["best_of_runs"] = {
        "ratio_vs_faiss": round(out["ours"]["gflops_best"] / out["faiss"]["gflops_best"], 3),
        "fraction_of_matmul_peak": round(out["ours"]["gflops_best"] / best_ceiling, 3),
        "faiss_fraction_of_matmul_peak": round(out["faiss"]["gflops_best"] / best_ceiling, 3),
    }
    out["repeats"] = args.repeats
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
