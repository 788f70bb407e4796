"""Exact similarity joins by blocked matrix products: all (query, key) pairs with cosine ≥ threshold.

Curation compares ~2M AudioSet clips with ~10^5 captions; the N×M
similarity matrix (800 GB in float32) never exists. Queries and keys are cut
into blocks; each block product goes into one preallocated float32 buffer, a
tile-wise maximum finds the candidates and only those leave the block.

Exactness. A float32 block product differs from the true dot product by at
most ``gamma(d) * |q| * |k|`` (``gamma(d) = d*u / (1 - d*u)``, ``u = 2^-24``),
whatever order or blocking the BLAS library uses. So the block keeps every
pair whose float32 value is within that margin of the threshold or above, and
for the pairs within the margin the decision ``sim >= threshold`` is taken on
the float64 dot product of the stored rows. For float16 embeddings (the
default storage) the float64 dot product of unit vectors is *exact* (each
product is a multiple of 2^-48 and every partial sum stays below 2 in
magnitude, so 49 bits suffice), hence independent of summation order; it is
computed for every kept pair, so the result (pairs, ties at the threshold
and similarities) is identical for every block size and equal to a
brute-force float64 reference. For float32 rows the float64 value is within
~1e-13 of exact; pairs clearly above the threshold keep their float32 block
value (whose last bit may depend on the block shape; the pair set does not).

Output order is (query, key) ascending, whatever the blocks.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "JoinBlock",
    "iter_threshold_join",
    "threshold_join",
    "brute_force_join",
    "PairStats",
]

# Pairs refined together in float64: the temporaries (2 * 1024 * d * 8 bytes) stay in cache.
_REFINE_CHUNK = 1024
# Columns per tile of the candidate search (see _candidates).
_TILE = 128


@dataclass
class JoinBlock:
    """The pairs of one block of queries, sorted by (query, key).

    Attributes
    ----------
    query : numpy.ndarray
        int64 query row indices.
    key : numpy.ndarray
        int64 key row indices.
    sim : numpy.ndarray
        float64 similarities: the dot products of the stored rows (see the
        module docstring for float32 rows).
    query_start, query_stop : int
        The range of positions (in ``query_rows`` order) the block covered.
    """

    query: np.ndarray
    key: np.ndarray
    sim: np.ndarray
    query_start: int
    query_stop: int


def _float32_error_bound(dim):
    """``gamma(dim + 2)``: worst-case relative error of a float32 dot product (plus input rounding)."""
    nu = (dim + 2) * 2.0**-24
    return nu / (1.0 - nu)


def _float32_below(value):
    """The largest float32 that is <= ``value`` (a float64)."""
    f = np.float32(value)
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def _float32_above(value):
    """The smallest float32 that is >= ``value`` (a float64)."""
    f = np.float32(value)
    if float(f) < value:
        f = np.nextafter(f, np.float32(np.inf))
    return float(f)


def _is_float16(matrix):
    return matrix.dtype in (np.float16, torch.float16)


def _as_tensor(rows):
    """A torch view (or copy, for memmaps and non-contiguous arrays) of a block of rows."""
    if isinstance(rows, torch.Tensor):
        return rows.contiguous()
    if not rows.flags.writeable:
        # Read-only memmap rows: torch wants a writable array, and the block is read anyway.
        return torch.from_numpy(np.array(rows))
    return torch.from_numpy(np.ascontiguousarray(rows))


def _gather_rows(matrix, rows, start, stop):
    """Rows ``start:stop`` of ``matrix``, or of ``matrix[rows]`` when ``rows`` is given."""
    if rows is None:
        return _as_tensor(matrix[start:stop])
    # Sorted fancy indexing keeps memmap reads sequential.
    return _as_tensor(matrix[rows[start:stop]])


def _exact_dots(q_src, keys, r, c):
    """float64 dot products of ``q_src[r]`` and ``keys[c]``, in chunks (exact for float16 unit vectors).

    Called once per query block with the candidates of all key blocks: few
    large operations rather than many small ones, each of which would wait
    for every thread of the pool.
    """
    out = torch.empty(r.numel(), dtype=torch.float64)
    for s in range(0, r.numel(), _REFINE_CHUNK):
        e = s + _REFINE_CHUNK
        cols = c[s:e]
        k_rows = keys[cols] if isinstance(keys, torch.Tensor) else _as_tensor(keys[cols.numpy()])
        out[s:e] = torch.linalg.vecdot(q_src[r[s:e]].double(), k_rows.double())
    return out


def _candidates(scores, low, tile_max):
    """(row, column) of the entries of ``scores`` that are ``>= low``, in row-major order.

    A direct ``ge`` + ``nonzero`` over the block costs about a quarter of the
    block's matrix product (both passes are memory-bound). Instead the maximum
    of each tile of ``_TILE`` columns is taken (one read of the block), and
    only tiles whose maximum passes are looked into: the pairs are rare.
    """
    nq, nk = scores.shape
    main = nk - nk % _TILE
    rows, cols = [], []
    if main:
        tiles = scores[:, :main].unflatten(1, (main // _TILE, _TILE))
        maxima = tile_max[: nq * (main // _TILE)].view(nq, main // _TILE)
        torch.amax(tiles, dim=2, out=maxima)
        hit = (maxima >= low).nonzero()
        if hit.numel():
            r, t = hit[:, 0], hit[:, 1]
            inner = (tiles[r, t] >= low).nonzero()
            rows.append(r[inner[:, 0]])
            cols.append(t[inner[:, 0]] * _TILE + inner[:, 1])
    if main < nk:
        tail = (scores[:, main:] >= low).nonzero()
        rows.append(tail[:, 0])
        cols.append(tail[:, 1] + main)
    if not rows:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(rows), torch.cat(cols)


def _top_k(query, key, sim, k):
    """Keeps the ``k`` most similar keys of each query (ties: lower key index first); sorted by (query, key)."""
    order = np.lexsort((key, -sim, query))
    query, key, sim = query[order], key[order], sim[order]
    first = np.r_[True, query[1:] != query[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(query.size), 0))
    keep = (np.arange(query.size) - group_start) < k
    query, key, sim = query[keep], key[keep], sim[keep]
    order = np.lexsort((key, query))
    return query[order], key[order], sim[order]


@contextlib.contextmanager
def _ieee_float32_matmul():
    # "high"/"medium" would let oneDNN use bf16 internally, breaking the error bound.
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def iter_threshold_join(
    queries,
    keys,
    threshold,
    query_block=2048,
    key_block=16384,
    top_k=None,
    query_rows=None,
    progress=False,
    desc="join",
    key_cache_mb=1024,
):
    """Yields, block of queries by block of queries, every pair with ``queries[i] · keys[j] >= threshold``.

    Memory is bounded by the blocks: one ``query_block × key_block`` float32
    buffer and its tile maxima (1/128 of it), plus one block of each input
    (so ``queries`` and ``keys`` may be ``numpy.memmap`` files larger than RAM)
    and, if at most ``key_cache_mb``, the keys in float32.

    Arguments
    ---------
    queries : numpy.ndarray, numpy.memmap or torch.Tensor
        ``[N, d]`` rows (float16, float32 or float64), e.g. audio embeddings.
    keys : numpy.ndarray, numpy.memmap or torch.Tensor
        ``[M, d]`` rows, e.g. caption embeddings.
    threshold : float
        Pairs with a dot product ``>=`` this value are kept (cosine, for unit rows).
    query_block : int
        Query rows per block.
    key_block : int
        Key rows per block.
    top_k : int, optional
        Keep at most this many keys per query: the most similar ones above
        the threshold (ties: lower key index first).
    query_rows : array of int, optional
        Only these query rows (ascending), e.g. a subset of the clips.
    progress : bool
        Show a tqdm bar over query blocks.
    desc : str
        Label of the bar.
    key_cache_mb : float
        Keep the float32 copy of all keys (converted once) when it takes at
        most this many MiB; otherwise convert each key block when used.

    Yields
    ------
    JoinBlock
        The pairs of one query block, sorted by (query, key).

    Example
    -------
    >>> q = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    >>> k = np.array([[0.0, 1.0], [0.8, 0.6]], dtype=np.float32)
    >>> [b.key.tolist() for b in iter_threshold_join(q, k, 0.8, query_block=1)]
    [[1], [0, 1]]
    """
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} columns but keys have {keys.shape[1]}.")
    if query_block < 1 or key_block < 1:
        raise ValueError(f"Block sizes must be positive, got query_block={query_block}, key_block={key_block}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}.")
    threshold = float(threshold)
    dim = int(queries.shape[1])
    if query_rows is not None:
        query_rows = np.asarray(query_rows, dtype=np.int64)
        if query_rows.size and np.any(np.diff(query_rows) <= 0):
            raise ValueError("query_rows must be strictly increasing.")
    n_queries = int(queries.shape[0] if query_rows is None else query_rows.size)
    n_keys = int(keys.shape[0])
    query_block, key_block = min(query_block, max(n_queries, 1)), min(key_block, max(n_keys, 1))
    gamma = _float32_error_bound(dim)
    # float16 rows: every kept pair gets its exact value (cheap enough, and block-size
    # independent to the last bit). Other rows: only pairs within the margin are recomputed.
    exact_values = _is_float16(queries) and _is_float16(keys)

    # Key norms per key block, for the error bound (one cheap pass over the keys).
    key_starts = list(range(0, n_keys, key_block))
    key_norm_max = []
    for ks in key_starts:
        block = _as_tensor(keys[ks : ks + key_block]).float()
        key_norm_max.append(float(block.norm(dim=1).max()) if block.numel() else 0.0)

    # float16 keys are converted once, not once per query block, when their float32 copy fits.
    cache_keys = n_keys * dim * 4 <= key_cache_mb * 2**20
    key_cache = {}
    buffer = torch.empty(query_block * key_block, dtype=torch.float32)
    tile_max = torch.empty(query_block * (key_block // _TILE), dtype=torch.float32)
    starts = range(0, n_queries, query_block)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_queries, desc=desc, unit="rows", dynamic_ncols=True)
    with _ieee_float32_matmul(), torch.inference_mode():
        for qs in starts:
            qe = min(qs + query_block, n_queries)
            q_src = _gather_rows(queries, query_rows, qs, qe)
            q32 = q_src.float()
            q_norm = float(q32.norm(dim=1).max()) if q32.numel() else 0.0
            q_index = torch.arange(qs, qe) if query_rows is None else torch.from_numpy(query_rows[qs:qe])
            parts_r, parts_c, parts_v, parts_sure = [], [], [], []
            for kb, ks in enumerate(key_starts):
                ke = min(ks + key_block, n_keys)
                k32 = key_cache.get(kb)
                if k32 is None:
                    k32 = _as_tensor(keys[ks:ke]).float()
                    if cache_keys:
                        key_cache[kb] = k32
                nq, nk = qe - qs, ke - ks
                scores = buffer[: nq * nk].view(nq, nk)
                torch.matmul(q32, k32.T, out=scores)
                # Candidates: float32 value within the worst-case error of the threshold.
                margin = gamma * q_norm * key_norm_max[kb] + 1e-30
                low = _float32_below(threshold - margin)
                r, c = _candidates(scores, low, tile_max)
                values = scores[r, c]
                parts_r.append(r)
                parts_c.append(c + ks)
                parts_v.append(values)
                if exact_values:
                    parts_sure.append(torch.zeros_like(r, dtype=torch.bool))
                else:
                    parts_sure.append(values >= _float32_above(threshold + margin))
            r, c = torch.cat(parts_r), torch.cat(parts_c)
            if r.numel():
                sim = torch.cat(parts_v).double()
                # Near the threshold (every pair, for float16 rows) the decision and the
                # reported value are the float64 dot product of the stored rows.
                refine = ~torch.cat(parts_sure)
                if refine.any():
                    sim[refine] = _exact_dots(q_src, keys, r[refine], c[refine])
                keep = sim >= threshold
                query = q_index[r[keep]].numpy().astype(np.int64, copy=False)
                key = c[keep].numpy().astype(np.int64, copy=False)
                sim = sim[keep].numpy()
            else:
                query = key = np.empty(0, dtype=np.int64)
                sim = np.empty(0, dtype=np.float64)
            if top_k is not None:
                query, key, sim = _top_k(query, key, sim, top_k)
            else:
                order = np.lexsort((key, query))
                query, key, sim = query[order], key[order], sim[order]
            if bar is not None:
                bar.update(qe - qs)
            yield JoinBlock(query, key, sim, qs, qe)
    if bar is not None:
        bar.close()


def threshold_join(queries, keys, threshold, **kwargs):
    """All pairs with ``queries[i] · keys[j] >= threshold``, as three arrays sorted by (query, key).

    Arguments
    ---------
    queries, keys, threshold
        See :func:`iter_threshold_join`.
    **kwargs
        ``query_block``, ``key_block``, ``top_k``, ``query_rows``, ``progress``.

    Returns
    -------
    query : numpy.ndarray
        int64 query indices.
    key : numpy.ndarray
        int64 key indices.
    sim : numpy.ndarray
        float64 similarities.

    Example
    -------
    >>> q = np.eye(3, dtype=np.float16)
    >>> k = np.array([[1, 0, 0], [0.6, 0.8, 0]], dtype=np.float16)
    >>> i, j, s = threshold_join(q, k, 0.6)
    >>> i.tolist(), j.tolist(), np.round(s, 3).tolist()
    ([0, 0, 1], [0, 1, 1], [1.0, 0.6, 0.8])
    """
    blocks = list(iter_threshold_join(queries, keys, threshold, **kwargs))
    if not blocks:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    return tuple(np.concatenate([getattr(b, f) for b in blocks]) for f in ("query", "key", "sim"))


def brute_force_join(queries, keys, threshold, top_k=None):
    """Reference: the full float64 similarity matrix, thresholded (for tests; O(N·M) memory).

    Example
    -------
    >>> q = np.eye(2, dtype=np.float16)
    >>> brute_force_join(q, q, 0.5)[1].tolist()
    [0, 1]
    """
    sims = np.asarray(queries, dtype=np.float64) @ np.asarray(keys, dtype=np.float64).T
    query, key = np.nonzero(sims >= threshold)
    sim = sims[query, key]
    if top_k is not None:
        return _top_k(query.astype(np.int64), key.astype(np.int64), sim, top_k)
    return query.astype(np.int64), key.astype(np.int64), sim


class PairStats:
    """Running summary of a join: pairs kept, queries with a pair, keys used, similarity histogram.

    Arguments
    ---------
    n_queries, n_keys : int
        Sizes of the two sides (for the fractions).
    threshold : float
        The join threshold (first histogram edge).
    bin_width : float
        Width of the histogram bins (the last bin is open-ended above 1.0).

    Example
    -------
    >>> stats = PairStats(4, 3, 0.5)
    >>> stats.update(np.array([0, 0, 2]), np.array([1, 2, 1]), np.array([0.55, 0.9, 0.62]))
    >>> d = stats.as_dict()
    >>> d["pairs"], d["queries_with_pair"], d["keys_used"], d["histogram"]["[0.50, 0.55)"]
    (3, 2, 2, 0)
    """

    def __init__(self, n_queries, n_keys, threshold, bin_width=0.05):
        self.n_queries, self.n_keys = int(n_queries), int(n_keys)
        self.threshold = float(threshold)
        first = math.floor(self.threshold / bin_width + 1e-9) * bin_width
        n_bins = max(1, int(math.ceil((1.0 - first) / bin_width - 1e-9)))
        # Rounded so that a value such as 0.55 falls in the bin that its label names.
        self.edges = np.array([round(first + i * bin_width, 10) for i in range(n_bins + 1)] + [np.inf])
        self.edges[0] = min(self.edges[0], self.threshold)
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.pairs = 0
        self.queries_with_pair = 0
        self.pairs_per_query_max = 0
        self.keys_used = np.zeros(self.n_keys, dtype=bool)
        self.sim_min, self.sim_max, self.sim_sum = math.inf, -math.inf, 0.0

    def update(self, query, key, sim):
        """Adds the pairs of one block (whose queries no other block holds)."""
        if len(query) == 0:
            return
        self.pairs += int(len(query))
        per_query = np.unique(query, return_counts=True)[1]
        self.queries_with_pair += int(per_query.size)
        self.pairs_per_query_max = max(self.pairs_per_query_max, int(per_query.max()))
        self.keys_used[key] = True
        self.counts += np.histogram(sim, bins=self.edges)[0]
        self.sim_min = min(self.sim_min, float(sim.min()))
        self.sim_max = max(self.sim_max, float(sim.max()))
        self.sim_sum += float(sim.sum())

    def as_dict(self):
        """The summary as plain Python values (for JSON)."""
        labels = [
            f"[{lo:.2f}, {hi:.2f})" if np.isfinite(hi) else f">= {lo:.2f}"
            for lo, hi in zip(self.edges[:-1], self.edges[1:])
        ]
        return {
            "threshold": self.threshold,
            "pairs": self.pairs,
            "queries": self.n_queries,
            "queries_with_pair": self.queries_with_pair,
            "keys": self.n_keys,
            "keys_used": int(self.keys_used.sum()),
            "pairs_per_query_mean": self.pairs / self.queries_with_pair if self.queries_with_pair else 0.0,
            "pairs_per_query_max": self.pairs_per_query_max,
            "sim_min": self.sim_min if self.pairs else None,
            "sim_mean": self.sim_sum / self.pairs if self.pairs else None,
            "sim_max": self.sim_max if self.pairs else None,
            "histogram": dict(zip(labels, (int(c) for c in self.counts))),
        }
