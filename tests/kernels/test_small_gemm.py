"""Few-row query products on the calling thread (vqdb.kernels.small_gemm) and the dense rotation's query path."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from vqdb.kernels import small_gemm  # noqa: E402
from vqdb.kernels.scorer import SMALL_BATCH  # noqa: E402
from vqdb.quantizers._rotation import DenseRotation, haar_rotation  # noqa: E402


def test_rows_matmul_is_the_float32_product_and_each_row_the_same_for_any_batch():
    a = np.array([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]], np.float32)
    bt = np.array([[1.0, 0.0, 2.0, -1.0], [0.0, 3.0, 1.0, 1.0], [2.0, 1.0, 0.0, 0.5]], np.float32)
    np.testing.assert_array_equal(small_gemm.rows_matmul(a, bt), a @ bt)  # small integers: exact
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3 * SMALL_BATCH, 300)).astype(np.float32)
    bt = rng.standard_normal((300, 70)).astype(np.float32)
    whole = small_gemm.rows_matmul(a, bt)  # past SMALL_BATCH: numba's threads
    assert whole.dtype == np.float32 and whole.shape == (a.shape[0], 70) and whole.flags.c_contiguous
    want = a.astype(np.float64) @ bt.astype(np.float64)
    np.testing.assert_allclose(whole, want, rtol=0, atol=1e-4 * np.abs(want).max())
    for i in (0, 5, 3 * SMALL_BATCH - 1):  # one row on the calling thread: the same bits
        np.testing.assert_array_equal(small_gemm.rows_matmul(a[i : i + 1], bt)[0], whole[i])
    np.testing.assert_array_equal(small_gemm.rows_matmul(a[:SMALL_BATCH], bt), whole[:SMALL_BATCH])


def test_dense_rotation_query_path_equals_forward_up_to_rounding():
    rng = np.random.default_rng(4)
    rot = DenseRotation(haar_rotation(96, rng))
    q = rng.standard_normal((20, 96)).astype(np.float32)
    batch = rot.forward_queries(q)
    np.testing.assert_allclose(batch, rot.forward(q), rtol=0, atol=1e-5)
    for i in (0, 7, 19):
        np.testing.assert_array_equal(rot.forward_queries(q[i : i + 1])[0], batch[i])
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), np.linalg.norm(q, axis=1), rtol=1e-5)


def test_rows_matmul_exact_is_the_numpy_twin_for_any_batch():
    """exact=True (encoding): every row by the serial loop whatever m, bit for bit the NumPy twin (the path
    without numba), and a row's product the same alone or in a batch."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3 * SMALL_BATCH + 5, 130)).astype(np.float32)
    bt = rng.standard_normal((130, 90)).astype(np.float32)
    got = small_gemm.rows_matmul(a, bt, exact=True)
    np.testing.assert_array_equal(got, small_gemm.rows_matmul_numpy(a, bt))
    np.testing.assert_array_equal(got, small_gemm.rows_matmul(a, bt))  # the query path: the same bits
    for i in (0, SMALL_BATCH, a.shape[0] - 1):
        np.testing.assert_array_equal(small_gemm.rows_matmul(a[i : i + 1], bt, exact=True)[0], got[i])
    want = a.astype(np.float64) @ bt.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
    assert small_gemm.rows_matmul(a[:0], bt, exact=True).shape == (0, 90)
