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

Low precision (``precision="bf16"`` or ``"fp16"``). The block products can
run on bfloat16 or float16 rows with float32 accumulation, 2-3x faster where
the hardware has matrix units for them (AVX-512 BF16 or AMX on CPU, CUDA).
With ``q̂``, ``k̂`` the rounded rows and ``r_q = q - q̂``, ``r_k = k - k̂`` the
rounding residuals (computed exactly, per row),

``|q·k - q̂·k̂| <= |q̂|·|r_k| + |r_q|·|k̂| + |r_q|·|r_k|``        (Cauchy-Schwarz),

the float32 accumulation of the exact bf16/fp16 products adds at most
``gamma(d)·|q̂|·|k̂|``, and the low-precision output at most one rounding
(``u = 2^-8`` for bf16, ``2^-11`` for fp16) of the result. Every pair whose
low-precision value is within that bound of the threshold or above is a
candidate, and every candidate is decided and reported on the float64 dot
product of the stored rows, so the output is the same as in float32: the
pairs and similarities of the float64 brute force. The residual norms are
measured, not assumed (about half of the worst case ``u·|q|``), which keeps
the candidates few. The accumulation must be float32: the low-precision
path turns off CUDA's reduced-precision reductions.

``precision="auto"`` takes bfloat16 where the device multiplies it natively
(a CPU with the ``avx512_bf16`` or ``amx_bf16`` flag, a CUDA GPU with bf16;
float16 on older GPUs) and float32 elsewhere.

Output order is (query, key) ascending, whatever the blocks.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from models.precision import native_bf16

__all__ = [
    "JOIN_PRECISIONS",
    "resolve_join_precision",
    "JoinBlock",
    "iter_threshold_join",
    "threshold_join",
    "brute_force_join",
    "PairStats",
]

# Pairs refined together in float64: the temporaries (2 * 256 * d * 8 bytes) stay in cache
# (with 1024 pairs they do not, and the refinement runs several times slower).
_REFINE_CHUNK = 256
#: ``precision`` values of the join.
JOIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_LOW_PRECISION = {"bf16": (torch.bfloat16, 2.0**-8), "fp16": (torch.float16, 2.0**-11)}
# float16 rows are kept only while their products and sums stay far from float16's largest value (65504).
_FP16_SAFE_PRODUCT = 2.0**14
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


def _lowp_below(value, dtype):
    """The largest ``dtype`` (bfloat16 / float16) value that is <= ``value``, as a float.

    Example
    -------
    >>> _lowp_below(0.1, torch.bfloat16) <= 0.1 < _lowp_below(0.1, torch.bfloat16) + 2**-10
    True
    """
    info = torch.finfo(dtype)
    x = float(torch.tensor(value, dtype=torch.float64).to(dtype))
    while x > value:  # one ulp down (at most two at a power of two), until below
        x = float(torch.tensor(x - max(abs(x) * info.eps, info.tiny), dtype=torch.float64).to(dtype))
    return x


def resolve_join_precision(precision="auto", device="cpu"):
    """The precision the join's block products use: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``"auto"`` is bfloat16 where the device multiplies it natively (CPU flag
    ``avx512_bf16`` or ``amx_bf16``; CUDA with bf16, else float16) and float32
    elsewhere. Any other value is returned as given (after a check).

    Example
    -------
    >>> resolve_join_precision("fp16"), resolve_join_precision("auto") in ("fp32", "bf16")
    ('fp16', True)
    """
    if precision not in JOIN_PRECISIONS:
        raise ValueError(f"join_precision must be one of {JOIN_PRECISIONS}, got {precision!r}.")
    if precision != "auto":
        return precision
    if native_bf16(device)[0]:
        return "bf16"
    return "fp16" if str(device).startswith("cuda") else "fp32"


def _rounded(rows, dtype):
    """``(rows in dtype, max |rounded row|, max |residual row|)``, the norms rounded up.

    The residual ``rows - rounded`` is exact in float32 (a float minus its own
    rounding); the float32 norms are inflated by their own worst-case error.
    """
    low = rows.to(dtype)
    if not rows.numel():
        return low, 0.0, 0.0
    up = 1.0 + _float32_error_bound(rows.shape[1]) + 2.0**-22
    wide = low.float()
    low_norm = float(wide.norm(dim=1).max()) * up
    residual_norm = float(torch.sub(rows, wide, out=wide).norm(dim=1).max()) * up
    return low, low_norm, residual_norm


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
    for every thread of the pool. The query block is converted to float64
    once when it has more candidates than rows.
    """
    out = torch.empty(r.numel(), dtype=torch.float64)
    q_wide = q_src.double() if r.numel() > q_src.shape[0] else None
    if isinstance(keys, np.ndarray) and keys.flags.writeable:
        keys = torch.from_numpy(keys)  # a view: torch's row gather is faster than numpy's
    for s in range(0, r.numel(), _REFINE_CHUNK):
        e = s + _REFINE_CHUNK
        cols = c[s:e]
        if isinstance(keys, torch.Tensor):
            k_rows = torch.index_select(keys, 0, cols)
        else:
            k_rows = _as_tensor(keys[cols.numpy()])
        q_rows = torch.index_select(q_wide, 0, r[s:e]) if q_wide is not None else torch.index_select(q_src, 0, r[s:e])
        out[s:e] = torch.linalg.vecdot(q_rows.double(), k_rows.double())
    return out


def _candidates(scores, low):
    """(row, column) of the entries of ``scores`` that are ``>= low``, in row-major order.

    A direct ``ge`` + ``nonzero`` over the block costs about a quarter of the
    block's matrix product (both passes are memory-bound). Instead the maximum
    of each tile of ``_TILE`` columns is taken (one read of the block), and
    only tiles whose maximum passes are looked into: the pairs are rare.

    Half-precision scores with ``low > 0`` are compared as their int16 bit
    patterns: for non-negative floats the integer order is the float order
    and every negative float is a negative integer, so the test is the same,
    and integer maxima are several times faster than bfloat16 ones on CPUs.

    Example
    -------
    >>> scores = torch.tensor([[0.5, 0.9, -0.2], [0.1, 0.95, 0.91]]).repeat(1, 100)
    >>> [len(_candidates(scores.to(dt), 0.9)[0]) for dt in (torch.float32, torch.bfloat16)]
    [300, 300]
    """
    if scores.dtype in (torch.bfloat16, torch.float16) and low > 0:
        low = int(torch.tensor(low, dtype=scores.dtype).view(torch.int16))
        scores = scores.view(torch.int16)
    nq, nk = scores.shape
    main = nk - nk % _TILE
    rows, cols = [], []
    if main:
        tiles = scores[:, :main].unflatten(1, (main // _TILE, _TILE))
        maxima = torch.amax(tiles, dim=2)
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
    # "high"/"medium" would let oneDNN use bf16 (or CUDA TF32) internally, breaking the error bound;
    # reduced-precision reductions would accumulate half-precision products in half precision.
    previous = torch.get_float32_matmul_precision()
    cuda = torch.backends.cuda.matmul
    reductions = (cuda.allow_fp16_reduced_precision_reduction, cuda.allow_bf16_reduced_precision_reduction)
    torch.set_float32_matmul_precision("highest")
    cuda.allow_fp16_reduced_precision_reduction = cuda.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
        cuda.allow_fp16_reduced_precision_reduction, cuda.allow_bf16_reduced_precision_reduction = reductions


class _BlockProducts:
    """The block products of a join: the keys in blocks, in the precision of the products, and the error
    bounds that say which products may lie on either side of the threshold.

    The norms the bounds need are computed in one pass over the keys, which
    also keeps the converted keys when that copy takes at most ``key_cache_mb``.
    """

    def __init__(self, keys, key_block, precision, device, key_cache_mb):
        self.keys, self.key_block, self.precision, self.device = keys, key_block, precision, device
        self.gamma = _float32_error_bound(int(keys.shape[1]))
        self.low_dtype, self.unit = _LOW_PRECISION.get(precision, (torch.float32, 0.0))
        self.n_keys = int(keys.shape[0])
        self.starts = list(range(0, self.n_keys, key_block))
        bytes_per_value = 4 if precision == "fp32" else 2
        cache_keys = self.n_keys * int(keys.shape[1]) * bytes_per_value <= key_cache_mb * 2**20
        self.cache, self.bounds = {}, []
        for kb in range(len(self.starts)):
            block, bounds = self._convert(kb)
            self.bounds.append(bounds)
            if cache_keys:
                self.cache[kb] = block
        if precision == "fp16" and max((b[1] for b in self.bounds), default=0.0) > _FP16_SAFE_PRODUCT:
            raise ValueError("These keys are too large for float16 products; use join_precision fp32 or bf16.")

    def _convert(self, kb):
        """Key block ``kb`` on the device in the precision of the products, and its norms for the bound."""
        ks = self.starts[kb]
        rows = _as_tensor(self.keys[ks : ks + self.key_block]).float()
        if self.precision == "fp32":
            return rows.to(self.device), (float(rows.norm(dim=1).max()) if rows.numel() else 0.0, 0.0, 0.0)
        # The low-precision bound needs only the rounded rows' and the residuals' norms.
        low, low_norm, residual = _rounded(rows, self.low_dtype)
        return low.to(self.device), (None, low_norm, residual)

    def _queries(self, q_src):
        """A query block on the device in the precision of the products, and its norms for the bound."""
        q32 = q_src.float()
        if self.precision == "fp32":
            return q32.to(self.device), (float(q32.norm(dim=1).max()) if q32.numel() else 0.0, None, None)
        q_low, q_low_norm, q_residual = _rounded(q32, self.low_dtype)
        return q_low.to(self.device), (None, q_low_norm, q_residual)

    def _floor(self, threshold, q_bounds, k_bounds):
        """``(low, margin)``: block values ``>= low`` are candidates; ``margin`` bounds a value's error."""
        q_norm, q_low_norm, q_residual = q_bounds
        k_norm, k_low_norm, k_residual = k_bounds
        if self.precision == "fp32":
            # Candidates: float32 value within the worst-case error of the threshold.
            margin = self.gamma * q_norm * k_norm + 1e-30
            return _float32_below(threshold - margin), margin
        # Input rounding (measured residuals), float32 accumulation, then one output rounding.
        margin = (q_low_norm * k_residual + q_residual * k_low_norm + q_residual * k_residual
                  + self.gamma * q_low_norm * k_low_norm + 1e-30)
        low = threshold - margin
        return _lowp_below(low - self.unit * abs(low) - 1e-30, self.low_dtype), margin

    def candidates(self, q_src, buffer, threshold, exact_values):
        """The candidate pairs of a query block with every key block: ``(row, key, value, sure)``.

        ``value`` is the block value of each candidate (zero when ``exact_values``:
        every candidate is then refined); ``sure`` marks the values far enough
        above the threshold to be kept as they are.
        """
        q_dev, q_bounds = self._queries(q_src)
        nq = q_src.shape[0]
        parts_r, parts_c, parts_v, parts_sure = [], [], [], []
        for kb, ks in enumerate(self.starts):
            ke = min(ks + self.key_block, self.n_keys)
            k_dev = self.cache.get(kb)
            if k_dev is None:
                k_dev = self._convert(kb)[0]
            scores = buffer[: nq * (ke - ks)].view(nq, ke - ks)
            torch.matmul(q_dev, k_dev.T, out=scores)
            low, margin = self._floor(threshold, q_bounds, self.bounds[kb])
            r, c = _candidates(scores, low)
            r, c = r.cpu(), c.cpu()
            parts_r.append(r)
            parts_c.append(c + ks)
            if exact_values:
                parts_v.append(torch.zeros(r.numel(), dtype=torch.float32))
                parts_sure.append(torch.zeros_like(r, dtype=torch.bool))
            else:
                values = scores[r, c].cpu()
                parts_v.append(values)
                parts_sure.append(values >= _float32_above(threshold + margin))
        return torch.cat(parts_r), torch.cat(parts_c), parts_v, parts_sure


def _kept_pairs(q_src, keys, q_index, candidates, threshold, top_k):
    """The pairs of one query block at or above the threshold, sorted by (query, key): ``(query, key, sim)``."""
    r, c, parts_v, parts_sure = candidates
    if r.numel():
        sim = torch.cat(parts_v).double()
        # Near the threshold (every pair, for float16 rows and low-precision products) the
        # decision and the reported value are the float64 dot product of the stored rows.
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
        return _top_k(query, key, sim, top_k)
    order = np.lexsort((key, query))
    return query[order], key[order], sim[order]


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
    precision="fp32",
    device="cpu",
):
    """Yields, block of queries by block of queries, every pair with ``queries[i] · keys[j] >= threshold``.

    Memory is bounded by the blocks: one ``query_block × key_block`` buffer
    (float32, or the low precision) and its tile maxima (1/128 of it), plus
    one block of each input (so ``queries`` and ``keys`` may be
    ``numpy.memmap`` files larger than RAM) and, if at most ``key_cache_mb``,
    the keys in the precision of the products.

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
        Keep the converted copy of all keys (converted once) when it takes at
        most this many MiB; otherwise convert each key block when used.
    precision : str
        Precision of the block products: ``"fp32"``, ``"bf16"``, ``"fp16"``
        or ``"auto"`` (:func:`resolve_join_precision`). The output is the
        same for all of them (see the module docstring).
    device : str or torch.device
        Where the block products run (``"cpu"``, ``"cuda"``, ...). The
        decisions near the threshold are taken on the CPU in float64.

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
    >>> [b.key.tolist() for b in iter_threshold_join(q, k, 0.8, query_block=1, precision="bf16")]
    [[1], [0, 1]]
    """
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} columns but keys have {keys.shape[1]}.")
    if query_block < 1 or key_block < 1:
        raise ValueError(f"Block sizes must be positive, got query_block={query_block}, key_block={key_block}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}.")
    threshold = float(threshold)
    device = torch.device(device)
    precision = resolve_join_precision(precision, device.type)
    if query_rows is not None:
        query_rows = np.asarray(query_rows, dtype=np.int64)
        if query_rows.size and np.any(np.diff(query_rows) <= 0):
            raise ValueError("query_rows must be strictly increasing.")
    n_queries = int(queries.shape[0] if query_rows is None else query_rows.size)
    n_keys = int(keys.shape[0])
    query_block, key_block = min(query_block, max(n_queries, 1)), min(key_block, max(n_keys, 1))
    # float16 rows and the low-precision products: every kept pair gets its exact value (cheap enough,
    # and block-size independent to the last bit). float32 products of other rows: only pairs within
    # the margin are recomputed.
    exact_values = (_is_float16(queries) and _is_float16(keys)) or precision != "fp32"
    products = _BlockProducts(keys, key_block, precision, device, key_cache_mb)

    buffer = torch.empty(query_block * key_block, dtype=products.low_dtype, device=device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_queries, desc=desc, unit="rows", dynamic_ncols=True)
    with _ieee_float32_matmul(), torch.inference_mode():
        for qs in range(0, n_queries, query_block):
            qe = min(qs + query_block, n_queries)
            q_src = _gather_rows(queries, query_rows, qs, qe)
            q_index = torch.arange(qs, qe) if query_rows is None else torch.from_numpy(query_rows[qs:qe])
            candidates = products.candidates(q_src, buffer, threshold, exact_values)
            query, key, sim = _kept_pairs(q_src, keys, q_index, candidates, threshold, top_k)
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
        ``query_block``, ``key_block``, ``top_k``, ``query_rows``, ``progress``, ``precision``, ``device``.

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
