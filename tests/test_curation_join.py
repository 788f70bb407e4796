"""The blocked threshold join: exact (ties at the threshold included), block-size independent, bounded."""

import os

import numpy as np
import pytest
import torch

from curation.join import (
    PairStats, brute_force_join, iter_threshold_join, resolve_join_precision, threshold_join,
)

LOW_PRECISIONS = ["bf16", "fp16"]


def unit_rows(rng, n, d, dtype):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def assert_same(got, ref):
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def rounding_world():
    """A threshold equal to the exact similarity of a pair whose float32 product rounds *below* it."""
    rng = np.random.default_rng(3)
    queries = unit_rows(rng, 200, 256, np.float16)
    keys = unit_rows(rng, 300, 256, np.float16)
    exact = queries.astype(np.float64) @ keys.astype(np.float64).T
    single = (torch.from_numpy(queries).float() @ torch.from_numpy(keys).float().T).double().numpy()
    # Below even the float32 just under the exact value: a plain float32 ">=" would lose the pair.
    below = exact.astype(np.float32).astype(np.float64)
    below = np.where(below > exact, np.nextafter(exact.astype(np.float32), np.float32(-1)).astype(np.float64), below)
    low = np.argwhere((single < below) & (exact > np.quantile(exact, 0.9)))
    i, j = low[0]
    return queries, keys, float(exact[i, j]), (int(i), int(j))


def test_pairs_whose_float32_product_rounds_below_the_threshold_are_kept(rounding_world):
    queries, keys, threshold, pair = rounding_world
    ref = brute_force_join(queries, keys, threshold)
    for qb, kb in [(200, 300), (16, 16), (64, 256)]:
        got = threshold_join(queries, keys, threshold, query_block=qb, key_block=kb)
        assert_same(got, ref)
        assert pair in set(zip(got[0].tolist(), got[1].tolist()))


@pytest.fixture(scope="module")
def tied_world():
    """float16 unit rows with repeated rows, and a threshold equal to the exact similarity of several pairs."""
    rng = np.random.default_rng(0)
    queries = unit_rows(rng, 300, 48, np.float16)
    keys = unit_rows(rng, 130, 48, np.float16)
    near = queries[10].astype(np.float64) + 0.15 * rng.standard_normal(48)
    keys[3] = (near / np.linalg.norm(near)).astype(np.float16)
    keys[7] = keys[3]  # two keys with identical similarities to every query
    queries[11] = queries[10]
    exact = queries.astype(np.float64) @ keys.astype(np.float64).T
    # (10, 3), (10, 7), (11, 3) and (11, 7) sit exactly on the threshold.
    threshold = float(exact[10, 3])
    return queries, keys, threshold, exact


def test_join_equals_brute_force_with_ties_at_threshold(tied_world):
    queries, keys, threshold, exact = tied_world
    ties = np.argwhere(exact == threshold)
    assert len(ties) >= 4, "the fixture must put pairs exactly on the threshold"
    ref = brute_force_join(queries, keys, threshold)
    got = threshold_join(queries, keys, threshold, query_block=64, key_block=50)
    assert_same(got, ref)
    kept = set(zip(got[0].tolist(), got[1].tolist()))
    assert all((int(i), int(j)) in kept for i, j in ties)
    # The reported similarity is the exact dot product of the stored float16 rows.
    np.testing.assert_array_equal(got[2], exact[got[0], got[1]])


@pytest.mark.parametrize("query_block,key_block", [(1, 1), (7, 13), (64, 130), (300, 1000), (1000, 17), (5, 128)])
def test_join_is_identical_for_every_block_size(tied_world, query_block, key_block):
    queries, keys, threshold, _ = tied_world
    ref = threshold_join(queries, keys, threshold, query_block=32, key_block=32)
    assert_same(threshold_join(queries, keys, threshold, query_block=query_block, key_block=key_block), ref)
    ref_top = brute_force_join(queries, keys, threshold, top_k=2)
    assert_same(threshold_join(queries, keys, threshold, query_block=query_block, key_block=key_block, top_k=2),
                ref_top)


def test_float32_rows_give_the_brute_force_pairs():
    """float32 rows: the exact pair set; values clearly above the threshold are the float32 block values."""
    rng = np.random.default_rng(4)
    queries, keys = unit_rows(rng, 500, 64, np.float32), unit_rows(rng, 300, 64, np.float32)
    ref = brute_force_join(queries, keys, 0.3)
    for qb, kb in [(500, 300), (37, 129)]:
        got = threshold_join(queries, keys, 0.3, query_block=qb, key_block=kb)
        assert_same(got[:2], ref[:2])
        np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=1e-6)


def test_float32_exact_values_at_threshold():
    """Dyadic rows: every dot product is exact in float32, so 0.5 sits exactly on the threshold."""
    rows = np.array([[.5, .5, .5, .5], [.5, .5, .5, -.5], [1, 0, 0, 0], [0, 1, 0, 0], [.5, -.5, .5, -.5]], np.float32)
    ref = brute_force_join(rows, rows, 0.5)
    assert (ref[2] == 0.5).sum() == 14
    for qb, kb in [(1, 1), (2, 3), (5, 5)]:
        assert_same(threshold_join(rows, rows, 0.5, query_block=qb, key_block=kb), ref)
    # Just above the threshold, the ties go.
    assert threshold_join(rows, rows, np.nextafter(0.5, 1.0))[0].size == 5


def test_top_k_breaks_ties_by_key_index():
    q = np.array([[1.0, 0.0]], np.float16)
    k = np.array([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]], np.float16)
    i, j, s = threshold_join(q, k, 0.5, top_k=2, key_block=1)
    assert j.tolist() == [0, 2] and s.tolist() == [1.0, 1.0]


def test_query_rows_and_memmap(tmp_path):
    rng = np.random.default_rng(1)
    queries, keys = unit_rows(rng, 50, 16, np.float16), unit_rows(rng, 20, 16, np.float16)
    np.save(tmp_path / "q.npy", queries)
    mm = np.load(tmp_path / "q.npy", mmap_mode="r")
    rows = np.array([3, 4, 20, 49])
    i, j, s = threshold_join(mm, keys, 0.3, query_rows=rows, query_block=3)
    ri, rj, rs = brute_force_join(queries, keys, 0.3)
    sel = np.isin(ri, rows)
    assert_same((i, j, s), (ri[sel], rj[sel], rs[sel]))


def test_blocks_bound_memory():
    """The join never builds the N×M matrix: its buffer is one query_block × key_block block."""
    rng = np.random.default_rng(2)
    queries, keys = unit_rows(rng, 400, 8, np.float32), unit_rows(rng, 300, 8, np.float32)
    seen = []
    original = torch.matmul

    def spy(a, b, out=None):
        seen.append(out.shape)
        return original(a, b, out=out)

    torch.matmul = spy
    try:
        blocks = list(iter_threshold_join(queries, keys, 0.9, query_block=64, key_block=100))
    finally:
        torch.matmul = original
    assert max(s[0] * s[1] for s in seen) <= 64 * 100
    assert [b.query_start for b in blocks] == list(range(0, 400, 64))


def test_pair_stats_summary():
    stats = PairStats(n_queries=5, n_keys=4, threshold=0.7)
    stats.update(np.array([0, 0, 3]), np.array([1, 2, 2]), np.array([0.71, 0.86, 0.9]))
    stats.update(np.array([4]), np.array([2]), np.array([1.0]))
    d = stats.as_dict()
    assert (d["pairs"], d["queries_with_pair"], d["keys_used"], d["pairs_per_query_max"]) == (4, 3, 2, 2)
    assert d["histogram"]["[0.70, 0.75)"] == 1 and d["histogram"]["[0.85, 0.90)"] == 1
    assert d["histogram"][">= 1.00"] == 1 and sum(d["histogram"].values()) == 4


# ---------------------------------------------------------------- low precision
def clustered_rows(rng, n, d, clusters, spread, dtype):
    """Unit rows around a few centres: many cosines near 1, where a half-precision value is coarsest."""
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def exact_value_worlds():
    """(name, queries, keys, threshold) for random, clustered and tie-heavy inputs in float16 and float32."""
    rng = np.random.default_rng(7)
    worlds = []
    for dtype in (np.float16, np.float32):
        q, k = unit_rows(rng, 300, 96, dtype), unit_rows(rng, 250, 96, dtype)
        worlds.append((f"random-{np.dtype(dtype).name}", q, k, 0.2))
        q, k = clustered_rows(rng, 300, 64, 4, 0.3, dtype), clustered_rows(rng, 200, 64, 4, 0.3, dtype)
        exact = q.astype(np.float64) @ k.astype(np.float64).T
        worlds.append((f"clustered-{np.dtype(dtype).name}", q, k, float(np.quantile(exact, 0.8))))
    # Tie-heavy: repeated rows, a threshold equal to the value of many pairs.
    q = unit_rows(rng, 40, 32, np.float16)[rng.integers(0, 40, 200)]
    k = unit_rows(rng, 30, 32, np.float16)[rng.integers(0, 30, 150)]
    exact = q.astype(np.float64) @ k.astype(np.float64).T
    worlds.append(("ties-float16", q, k, float(np.quantile(exact, 0.7))))
    return worlds


@pytest.mark.parametrize("precision", ["fp32"] + LOW_PRECISIONS)
@pytest.mark.parametrize("world", exact_value_worlds(), ids=lambda w: w[0])
def test_every_precision_gives_the_brute_force_pairs_and_values(world, precision):
    """Low-precision products decide nothing: pairs and reported similarities equal the float64 brute force."""
    name, queries, keys, threshold = world
    ref = brute_force_join(queries, keys, threshold)
    assert ref[0].size > 0
    if name.startswith("ties"):
        assert (ref[2] == threshold).sum() >= 10, "the fixture must put many pairs exactly on the threshold"
    for qb, kb in [(1000, 1000), (17, 33), (64, 128)]:
        got = threshold_join(queries, keys, threshold, query_block=qb, key_block=kb, precision=precision)
        assert_same(got[:2], ref[:2])
        if precision != "fp32" or queries.dtype == np.float16:
            # Every kept pair's value is its float64 dot product (exact for float16 rows).
            np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=0 if queries.dtype == np.float16 else 1e-15)
        else:
            np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", LOW_PRECISIONS)
def test_low_precision_keeps_pairs_its_own_rounding_would_lose(precision):
    """A pair just above the threshold whose half-precision product falls below it is still found."""
    rng = np.random.default_rng(5)
    # float32 rows: both half precisions round them (float16 rows would be exact in float16).
    queries, keys = unit_rows(rng, 200, 1024, np.float32), unit_rows(rng, 300, 1024, np.float32)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    product = (torch.from_numpy(queries).to(low) @ torch.from_numpy(keys).to(low).T).double().numpy()
    exact = queries.astype(np.float64) @ keys.astype(np.float64).T
    # Below even the largest half-precision value under the exact one: a plain half-precision ">=" loses it.
    below = torch.from_numpy(exact).to(low).double().numpy()
    below = np.where(below > exact, below - np.abs(below) * torch.finfo(low).eps, below)
    i, j = np.argwhere((product < below) & (exact > np.quantile(exact, 0.9)))[0]
    # Just under the pair's value (float32 rows: a float64 tie is not order-independent), but above
    # its low-precision value.
    threshold = float(exact[i, j]) - 1e-9
    assert product[i, j] < threshold
    got = threshold_join(queries, keys, threshold, query_block=64, key_block=100, precision=precision)
    ref = brute_force_join(queries, keys, threshold)
    assert_same(got[:2], ref[:2])
    np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=1e-15)
    assert (int(i), int(j)) in set(zip(got[0].tolist(), got[1].tolist()))


def test_auto_precision_and_bad_values():
    assert resolve_join_precision("auto", "cpu") in ("fp32", "bf16")
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert resolve_join_precision("auto", "cpu") == ("bf16" if native else "fp32")
    with pytest.raises(ValueError, match="join_precision"):
        resolve_join_precision("int8")
