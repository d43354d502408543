"""Every available backend x every op against the NumPy reference and the slow bit-by-bit oracle."""

from __future__ import annotations

import numpy as np
import pytest
from reference.oracles import nearest, pack_slow, unpack_slow

from vqdb.kernels import reference as ref
from vqdb.quantizers._codebooks import lloyd_max


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("k", [1, 3, 8, 97])
def test_pack_unpack_bit_exact(ops, bits, k):
    rng = np.random.default_rng(bits * 100 + k)
    idx = rng.integers(0, 2**bits, size=(7, k), dtype=np.uint8)
    packed = ops.pack_bits(idx, bits)
    np.testing.assert_array_equal(packed, pack_slow(idx, bits))
    np.testing.assert_array_equal(ops.unpack_bits(packed, bits, k), idx)
    np.testing.assert_array_equal(unpack_slow(packed, bits, k), idx)


def test_packing_layout_documented_examples(ops):
    # 4 bits: index 2p in the low nibble of byte p, 2p+1 in the high nibble
    np.testing.assert_array_equal(ops.pack_bits(np.array([[0x3, 0xA]], np.uint8), 4), [[0xA3]])
    # 1 bit: bit j of byte 0 is index j
    np.testing.assert_array_equal(
        ops.pack_bits(np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1]], np.uint8), 1), [[0b1101, 1]]
    )
    # 3 bits: index 2 straddles bytes 0 and 1
    np.testing.assert_array_equal(ops.pack_bits(np.array([[0, 0, 0b111]], np.uint8), 3), [[0b11000000, 0b1]])


@pytest.mark.parametrize("n", [0, 1, 7])
def test_empty_and_tiny_batches(ops, n):
    x = np.random.default_rng(n).standard_normal((n, 5)).astype(np.float32)
    c, b = lloyd_max(2, 5)
    packed = ops.encode_scalar(x, b, 2)
    assert packed.shape == (n, 2) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packed, ref.encode_scalar(x, b, 2))
    assert ops.lut_scores(x[:2], packed, 0, 2, c.astype(np.float32)).shape == (min(n, 2), n)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_bucketize_and_encode(ops, bits):
    d = 97
    rng = np.random.default_rng(bits)
    c, b = lloyd_max(bits, d)
    x = (rng.standard_normal((50, d)) / np.sqrt(d)).astype(np.float32)
    x[0, :5] = b[:5] if b.size >= 5 else 0.0  # values exactly on a boundary go up
    idx = ops.bucketize(x, b)
    np.testing.assert_array_equal(idx, ref.bucketize(x, b))
    # equals nearest-centroid off the boundaries (paper's argmin rule)
    np.testing.assert_array_equal(idx[1:], nearest(x[1:], c))
    np.testing.assert_array_equal(ops.encode_scalar(x, b, bits), pack_slow(idx, bits))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_encode_scaled_matches_reference(ops, bits):
    d = 64
    rng = np.random.default_rng(3)
    u = rng.standard_normal((40, d))
    u = (u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)
    c, b = lloyd_max(bits, d)
    scales = np.array([1.0, 0.9, 1.1, 1.3])
    want = ref.encode_scaled(u, b, c, scales, bits)
    np.testing.assert_array_equal(ops.encode_scaled(u, b, c, scales, bits), want)
    np.testing.assert_array_equal(ops.scaled_indices(u, b, c, scales), ref.scaled_indices(u, b, c, scales))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("m", [1, 5, 40])
def test_lut_scores_and_decode(ops, bits, m):
    d, n, offset = 37, 61, 3
    rng = np.random.default_rng(bits * 7 + m)
    idx = rng.integers(0, 2**bits, size=(n, d), dtype=np.uint8)
    codes = np.hstack(
        [
            rng.integers(0, 256, size=(n, offset), dtype=np.uint8),
            pack_slow(idx, bits),
            rng.integers(0, 256, size=(n, 5), dtype=np.uint8),
        ]
    )
    values = rng.standard_normal(2**bits).astype(np.float32)
    q = rng.standard_normal((m, d)).astype(np.float32)
    np.testing.assert_array_equal(ops.decode_values(codes, offset, bits, d, values), values[idx])
    want = q.astype(np.float64) @ values[idx].astype(np.float64).T
    got = ops.lut_scores(q, codes, offset, bits, values)
    assert got.shape == (m, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bits", [2, 3])
def test_numba_lut_scores_serial_and_parallel_paths_agree_bit_for_bit(bits):
    """Above SERIAL_MAX_ROWS rows numba's lut_scores switches to the multi-threaded kernel (byte tables
    for bits dividing 8, coordinate decoding otherwise); every row's sum is the same arithmetic either way."""
    from vqdb.kernels import numba_cpu as ops

    serial_max = ops.SERIAL_MAX_ROWS

    d, n = 37, serial_max + 77
    rng = np.random.default_rng(bits)
    codes = pack_slow(rng.integers(0, 2**bits, size=(n, d), dtype=np.uint8), bits)
    values = rng.standard_normal(2**bits).astype(np.float32)
    q = rng.standard_normal((2, d)).astype(np.float32)
    whole = ops.lut_scores(q, codes, 0, bits, values)
    parts = [ops.lut_scores(q, codes[s : s + serial_max], 0, bits, values) for s in (0, serial_max)]
    np.testing.assert_array_equal(whole, np.hstack(parts))


def test_sign_scores(ops):
    rng = np.random.default_rng(11)
    signs = rng.integers(0, 2, size=(20, 45), dtype=np.uint8)
    codes = pack_slow(signs, 1)
    q = rng.standard_normal((3, 45)).astype(np.float32)
    want = q.astype(np.float64) @ (2.0 * signs - 1).T
    np.testing.assert_allclose(ops.sign_scores(q, codes, 0), want, rtol=1e-5, atol=1e-4)


def test_topk_order_ties_and_padding(ops):
    s = np.array([[0.5, 0.9, 0.9, -np.inf, 0.1, 0.9], [3, 2, 1, 0, -1, -2]], dtype=np.float32)
    ids, top = ops.topk(s, 3)
    np.testing.assert_array_equal(ids, [[1, 2, 5], [0, 1, 2]])
    np.testing.assert_array_equal(top, np.array([[0.9, 0.9, 0.9], [3, 2, 1]], np.float32))
    ids, top = ops.topk(s[:, :2], 4)
    np.testing.assert_array_equal(ids, [[1, 0, -1, -1], [0, 1, -1, -1]])
    assert np.isneginf(top[:, 2:]).all()
    rng = np.random.default_rng(0)
    big = rng.integers(0, 5, size=(4, 300)).astype(np.float32)  # many ties at the cut
    ids, top = ops.topk(big, 17)
    for row, got in zip(big, ids):
        want = np.lexsort((np.arange(300), -row))[:17]
        np.testing.assert_array_equal(got, want)


def test_scaled_indices_segments(ops):
    d = 40
    rng = np.random.default_rng(5)
    u = rng.standard_normal((30, d))
    u = (u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)
    segment = np.repeat([0, 1, 2], [8, 16, 16]).astype(np.int64)  # segment 2: no bits (all +inf boundaries)
    (c3, b3), (c1, b1) = lloyd_max(3, d), lloyd_max(1, d)
    bounds = np.full((3, 7), np.inf)
    cents = np.zeros((3, 8))
    bounds[0], cents[0] = b3 * 2, c3 * 2
    bounds[1, :1], cents[1, :2] = b1, c1
    scales = np.array([1.0, 0.8, 1.25])
    want = ref.scaled_indices_segments(u, segment, bounds, cents, scales)
    np.testing.assert_array_equal(ops.scaled_indices_segments(u, segment, bounds, cents, scales), want)
    assert (want[:, 24:] == 0).all() and want[:, 8:24].max() <= 1 and want[:, :8].max() <= 7
    # one segment == the single-codebook op
    np.testing.assert_array_equal(
        ref.scaled_indices_segments(u, np.zeros(d, np.int64), b3[None], c3[None], scales),
        ref.scaled_indices(u, b3, c3, scales),
    )


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_numba_lut_scores_few_rows_sum_bytes_as_the_tables_do(bits):
    """Below BYTE_TABLE_MIN_ROWS rows numba's lut_scores sums each code byte directly instead of building the
    256-entry byte tables: bit for bit the table path's scores (and the reference's)."""
    from vqdb.kernels import numba_cpu as ops
    from vqdb.kernels import reference

    few = ops.BYTE_TABLE_MIN_ROWS - 1
    d, n, offset = 383, few + 40, 5
    rng = np.random.default_rng(10 + bits)
    idx = rng.integers(0, 2**bits, size=(n, d), dtype=np.uint8)
    codes = np.hstack([rng.integers(0, 256, size=(n, offset), dtype=np.uint8), pack_slow(idx, bits)])
    values = rng.standard_normal(2**bits).astype(np.float32)
    for m in (1, 3):
        q = rng.standard_normal((m, d)).astype(np.float32)
        tables = ops.lut_scores(q, codes, offset, bits, values)  # n >= BYTE_TABLE_MIN_ROWS: the tables
        direct = ops.lut_scores(q, codes[:few], offset, bits, values)
        np.testing.assert_array_equal(direct, tables[:, :few])
        np.testing.assert_array_equal(direct, reference.lut_scores(q, codes[:few], offset, bits, values))
        np.testing.assert_array_equal(ops.lut_scores(q, codes[:1], offset, bits, values), tables[:, :1])


def test_topk_short_and_long_rows_give_the_same_order(ops):
    """Rows of up to reference.TOPK_SORT_MAX columns are sorted whole, longer ones partitioned: either way the
    best k are best first with ties (also among -inf) broken by lower column index, -1 / -inf padded."""
    from vqdb.kernels.reference import TOPK_SORT_MAX

    rng = np.random.default_rng(3)
    for n in (1, 7, TOPK_SORT_MAX - 56, TOPK_SORT_MAX, TOPK_SORT_MAX + 1, 2 * TOPK_SORT_MAX):
        s = rng.integers(0, 6, size=(3, n)).astype(np.float32)  # many ties
        s[rng.random((3, n)) < 0.2] = -np.inf
        for k in (1, 10, n, n + 3):
            ids, top = ops.topk(s, k)
            for row, got_ids, got_top in zip(s, ids, top):
                want = np.lexsort((np.arange(n), -row))[:k]
                np.testing.assert_array_equal(got_ids[: want.size], want)
                np.testing.assert_array_equal(got_top[: want.size], row[want])
                assert (got_ids[want.size :] == -1).all() and np.isneginf(got_top[want.size :]).all()
