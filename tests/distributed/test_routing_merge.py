"""Routing and merging, without Ray: the pure functions the sharded index is built on."""

import numpy as np
import pytest

from vqdb.distributed._merge import merge_topk
from vqdb.distributed._routing import shard_of, split_by_shard, splitmix64


def test_splitmix64_matches_the_published_sequence():
    # SplittableRandom / splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF first (gamma added once)
    assert splitmix64(np.array([0]))[0] == np.uint64(0xE220A8397B1DCDAF)


def _splitmix64_py(i: int) -> int:
    """Plain-Python SplitMix64 finaliser on the two's-complement bits of ``i`` (the oracle)."""
    mask = (1 << 64) - 1
    z = (i + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_routing_matches_a_plain_python_oracle():
    ids = [0, 1, 2, 7, 12345, -1, -(2**63), 2**63 - 1, 2**40 + 3]
    want = [_splitmix64_py(i) % 5 for i in ids]
    assert shard_of(np.array(ids, dtype=np.int64), 5).tolist() == want


def test_routing_is_stable_and_balanced():
    ids = np.arange(100_000, dtype=np.int64)
    owner = shard_of(ids, 4)
    # pinned: routing must never change for data already written
    assert owner[:8].tolist() == [3, 1, 2, 1, 2, 2, 0, 3]
    counts = np.bincount(owner, minlength=4)
    assert counts.min() > 0.97 * 25_000 and counts.max() < 1.03 * 25_000


def test_split_by_shard_keeps_input_order():
    ids = np.array([7, 3, 9, 1, 4, 4000, -5], dtype=np.int64)
    parts = split_by_shard(ids, 3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(ids.size))
    owner = shard_of(ids, 3)
    for s, rows in enumerate(parts):
        assert np.all(np.diff(rows) > 0)
        assert np.all(owner[rows] == s)


@pytest.mark.parametrize("k", [1, 5, 12])
def test_merge_equals_topk_of_the_union(k, rng):
    m, n = 6, 40
    scores = rng.standard_normal((m, n)).astype(np.float32)
    scores[:, 10:14] = scores[:, [0]]  # ties, broken by lower id
    ids = np.arange(n, dtype=np.int64)
    owner = shard_of(ids, 3)
    parts_i, parts_s = [], []
    for s in range(3):
        cols = np.flatnonzero(owner == s)
        order = np.lexsort((np.broadcast_to(ids[cols], (m, cols.size)), -scores[:, cols]), axis=1)[:, :k]
        pi = ids[cols][order]
        ps = np.take_along_axis(scores[:, cols], order, axis=1)
        if pi.shape[1] < k:
            pi = np.pad(pi, ((0, 0), (0, k - pi.shape[1])), constant_values=-1)
            ps = np.pad(ps, ((0, 0), (0, k - ps.shape[1])), constant_values=-np.inf)
        parts_i.append(pi)
        parts_s.append(ps)
    got_i, got_s = merge_topk(parts_i, parts_s, k, -np.inf)
    want = np.lexsort((np.broadcast_to(ids, (m, n)), -scores), axis=1)[:, :k]
    assert np.array_equal(got_i, want)
    assert np.array_equal(got_s, np.take_along_axis(scores, want, axis=1))


def test_merge_pads_when_fewer_than_k():
    ids, scores = merge_topk(
        [np.array([[4, -1]]), np.array([[2, -1]])],
        [np.array([[0.5, -np.inf]], np.float32), np.array([[0.9, -np.inf]], np.float32)],
        5,
        -np.inf,
    )
    assert ids.tolist() == [[2, 4, -1, -1, -1]]
    assert scores[0, :2].tolist() == [np.float32(0.9), np.float32(0.5)] and np.isneginf(scores[0, 2:]).all()


def test_importing_vqdb_distributed_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, vqdb.distributed, vqdb.distributed.service; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
