"""The blocked threshold join: exact (ties at the threshold included), block-size independent, bounded."""

import numpy as np
import pytest
import torch

from curation.join import PairStats, brute_force_join, iter_threshold_join, threshold_join


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
