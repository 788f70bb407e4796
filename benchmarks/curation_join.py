"""Threshold join: ours (``curation.join``) vs ``faiss.IndexFlatIP.range_search`` vs plain ``torch.matmul``.

Each run is a fresh process (so that faiss's thread pools and the previous
method's memory never slow the next one down) on the same random L2-normalised float32 embeddings
(default 50,000 queries × 20,000 keys × 1024 dimensions, the shape of an
AudioSet shard against a caption corpus). The threshold is chosen so that
about ``--target_pairs`` pairs pass (random unit vectors in d dimensions have
cosines of about N(0, 1/d)).

Methods: ``ours`` at the precision ``--precision`` chooses (``auto``: bf16
where the device multiplies it natively, see
``curation.join.resolve_join_precision``), ``ours_fp32`` (when that is not
fp32), ``faiss`` (``IndexFlatIP.range_search``, float32, on the CPU), and the
ceilings: ``torch.matmul`` of the same shapes without any thresholding, block
by block with our block shapes, in float32 (``matmul_blocked``, and once as
one product into a preallocated N×M output, ``matmul_full``) and in the low
precision (``matmul_blocked_<precision>``).

Reported per method: seconds, pairs found, pairs/s, GFLOP/s (2·N·M·d flops)
and peak extra memory (the kernel's resident-set high-water mark above the
level before the call), as the median over ``--repeats`` runs that alternate
the methods (``best_of_runs``: the same ratios from each method's fastest
run). ``ratio_vs_faiss`` is ``ours`` over faiss's throughput and
``fraction_of_matmul_peak`` ``ours`` over the ceiling of the precision it
used (``fp32_fraction_of_matmul_peak``: ``ours_fp32`` over the float32
ceiling). All methods must find the same pairs (``pairs_only_*``). faiss-cpu's
bundled OpenBLAS is told to use its Skylake-X kernels on AVX-512 CPUs (it
does not recognise recent Xeons and would otherwise run 4x slower).
``--device=cuda`` runs ours and the ceilings on the GPU (faiss stays on the
CPU), unchanged otherwise.

Usage::

    python benchmarks/curation_join.py [--queries 50000] [--keys 20000] [--dim 1024]
        [--target_pairs 100000] [--threads N] [--precision auto|fp32|bf16|fp16] [--device cpu|cuda] [--json]
"""

from __future__ import annotations

import os

from machine import cpu_flags, describe, synchronize  # noqa: I001 (before numpy: sets OPENBLAS_CORETYPE)


# faiss-cpu wheels bundle OpenBLAS 0.3.15, which does not recognise recent Xeons
# (here family 6 model 207) and falls back to its SSE3 "Prescott" kernels, about 4x
# slower. On an AVX-512 CPU its Skylake-X kernels are asked for, so faiss is
# measured at its best. Must be set before any OpenBLAS is loaded.
if "avx512f" in cpu_flags():
    os.environ.setdefault("OPENBLAS_CORETYPE", "SKYLAKEX")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from curation.join import resolve_join_precision, threshold_join  # noqa: E402


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _high_water_bytes() -> int:
    """The kernel's peak resident set size of this process (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak resident set size above the level at entry, from the kernel's own high-water mark.

    On entry the mark is reset to the current size (``/proc/self/clear_refs``,
    Linux ≥ 4.0), so nothing samples or wakes up during the timed call (a
    sampling thread costs a compute-bound 2-core run about 15 %). Where the
    reset is refused, ``extra`` is an upper bound (the process's peak so far
    minus the size at entry).
    """

    def __enter__(self):
        self.base = rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        self.extra = max(0, max(_high_water_bytes(), rss_bytes()) - self.base)


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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=50000)
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--target_pairs", type=int, default=100000)
    parser.add_argument("--threshold", type=float, default=None, help="overrides --target_pairs")
    parser.add_argument("--query_block", type=int, default=2048)
    parser.add_argument("--key_block", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--repeats", type=int, default=3, help="median over repeats")
    parser.add_argument("--skip_full_matmul", action="store_true", help="no N×M output (saves N·M·4 bytes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    return parser.parse_args(argv)


def threshold_of(args):
    if args.threshold is not None:
        return args.threshold
    return threshold_for_pairs(args.queries, args.keys, args.dim, args.target_pairs)


def method_call(name, args, precision):
    """The inputs, then a function that runs method ``name`` once and returns its pairs (or None).

    faiss is imported only in the process that measures it: its OpenMP and
    OpenBLAS thread pools then never compete with torch's for the cores.
    """
    device = torch.device(args.device)
    n, m, d = args.queries, args.keys, args.dim
    queries = random_unit_rows(n, d, args.seed)
    keys = random_unit_rows(m, d, args.seed + 1)
    threshold = threshold_of(args)
    if name.startswith("ours"):
        join_precision = "fp32" if name == "ours_fp32" else precision
        q_np, k_np = queries.numpy(), keys.numpy()

        def run():
            query, key, _ = threshold_join(q_np, k_np, threshold, query_block=args.query_block,
                                           key_block=args.key_block, precision=join_precision, device=device)
            return query, key
        return run
    if name == "faiss":
        import faiss

        faiss.omp_set_num_threads(args.threads)
        index = faiss.IndexFlatIP(d)
        q_np = queries.numpy()
        index.add(keys.numpy())

        def run():
            lims, _, faiss_keys = index.range_search(q_np, threshold)
            return np.repeat(np.arange(n), np.diff(lims).astype(np.int64)), faiss_keys
        return run
    if name == "matmul_full":
        q_dev, k_dev = queries.to(device), keys.to(device)

        def run():
            out = torch.empty(n, m, device=device)
            torch.matmul(q_dev, k_dev.T, out=out)
            synchronize(device)
            del out
        return run
    dtype = {"matmul_blocked": torch.float32, "matmul_blocked_bf16": torch.bfloat16,
             "matmul_blocked_fp16": torch.float16}[name]
    q_dev, k_dev = queries.to(device, dtype), keys.to(device, dtype)

    def run():
        out = torch.empty(args.query_block * min(args.key_block, m), dtype=dtype, device=device)
        for qs in range(0, n, args.query_block):
            q = q_dev[qs : qs + args.query_block]
            for ks in range(0, m, args.key_block):
                k = k_dev[ks : ks + args.key_block]
                torch.matmul(q, k.T, out=out[: q.shape[0] * k.shape[0]].view(q.shape[0], k.shape[0]))
        synchronize(device)
    return run


def _measure_in_child(conn, name, args, precision):
    """Child process: build the inputs, time one call of ``name``, send (seconds, extra bytes, pairs)."""
    torch.set_num_threads(args.threads)
    # The float32 ceilings in true float32 (no TF32 / internal bf16), as our join computes them.
    torch.set_float32_matmul_precision("highest")
    fn = method_call(name, args, precision)
    pairs, seconds, extra = measure(fn)
    conn.send((seconds, extra, pairs))
    conn.close()


def measure_fresh(name, args, precision):
    """(seconds, extra bytes, pairs) of one call of ``name`` in a fresh process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_measure_in_child, args=(child, name, args, precision))
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        proc.join()
        raise SystemExit(f"the {name} measurement failed (exit code {proc.exitcode})") from None
    proc.join()
    return result


def main(argv=None):
    args = parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    device = torch.device(args.device)
    precision = resolve_join_precision(args.precision, device.type)
    n, m, d = args.queries, args.keys, args.dim
    threshold = threshold_of(args)
    flops = 2.0 * n * m * d
    log(f"{n} x {m} x {d} float32, threshold {threshold:.5f}, {args.threads} threads, "
        f"ours in {precision} on {device}; each run in a fresh process")

    names = ["matmul_blocked", "ours"]
    if precision != "fp32":
        names += ["matmul_blocked_" + precision, "ours_fp32"]
    names.append("faiss")
    if not args.skip_full_matmul:
        names.append("matmul_full")
    runs = {name: [] for name in names}
    results = {}
    for _ in range(args.repeats):
        # Alternate the methods so that a change of machine load hits all of them.
        for name in names:
            seconds, extra, pairs = measure_fresh(name, args, precision)
            runs[name].append((seconds, extra))
            if pairs is not None:
                results[name] = pairs
            log(f"  {name}: {seconds:.2f} s, {flops / seconds / 1e9:.1f} GFLOP/s")

    import faiss

    # Same pairs? faiss keeps sim > threshold on its float32 value; ours sim >= threshold on the float64 one.
    faiss_set = set(zip(*(a.tolist() for a in results["faiss"])))

    def summary(name, pairs):
        seconds = statistics.median(r[0] for r in runs[name])
        extra = max(r[1] for r in runs[name])
        out = report(seconds, pairs, flops, extra)
        # Other jobs on a shared machine only ever slow a run down: the best run is shown too.
        out["gflops_best"] = round(flops / min(r[0] for r in runs[name]) / 1e9, 2)
        if name.startswith("matmul"):
            del out["pairs"], out["pairs_per_s"]
        return out

    out = {
        "machine": dict(describe(device), threads=args.threads, faiss=faiss.__version__,
                        openblas_coretype=os.environ.get("OPENBLAS_CORETYPE")),
        "shape": {"queries": n, "keys": m, "dim": d, "dtype": "float32"},
        "threshold": threshold,
        "precision": precision,
        "blocks": {"query_block": args.query_block, "key_block": args.key_block},
    }
    for name in names:
        out[name] = summary(name, results[name][0].size if name in results else 0)
    for name in [k for k in results if k.startswith("ours")]:
        ours_set = set(zip(results[name][0].tolist(), results[name][1].tolist()))
        out[f"pairs_only_{name}"] = len(ours_set - faiss_set)
        out[f"pairs_only_faiss_vs_{name}"] = len(faiss_set - ours_set)
    fp32_ceiling = max(out[k]["gflops"] for k in ("matmul_blocked", "matmul_full") if k in out)
    ceiling = fp32_ceiling if precision == "fp32" else out["matmul_blocked_" + precision]["gflops"]
    out["ratio_vs_faiss"] = round(out["ours"]["gflops"] / out["faiss"]["gflops"], 3)
    out["matmul_peak_gflops"] = {"fp32": fp32_ceiling, **({precision: ceiling} if precision != "fp32" else {})}
    out["fraction_of_matmul_peak"] = round(out["ours"]["gflops"] / ceiling, 3)
    if "ours_fp32" in out:
        out["fp32_ratio_vs_faiss"] = round(out["ours_fp32"]["gflops"] / out["faiss"]["gflops"], 3)
        out["fp32_fraction_of_matmul_peak"] = round(out["ours_fp32"]["gflops"] / fp32_ceiling, 3)
    out["faiss_fraction_of_matmul_peak"] = round(out["faiss"]["gflops"] / fp32_ceiling, 3)
    best_fp32 = max(out[k]["gflops_best"] for k in ("matmul_blocked", "matmul_full") if k in out)
    best_ceiling = best_fp32 if precision == "fp32" else out["matmul_blocked_" + precision]["gflops_best"]
    out["best_of_runs"] = {
        "ratio_vs_faiss": round(out["ours"]["gflops_best"] / out["faiss"]["gflops_best"], 3),
        "fraction_of_matmul_peak": round(out["ours"]["gflops_best"] / best_ceiling, 3),
        "faiss_fraction_of_matmul_peak": round(out["faiss"]["gflops_best"] / best_fp32, 3),
    }
    out["repeats"] = args.repeats
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
