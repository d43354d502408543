"""Few-row query products on the calling thread (vqdb.kernels.small_gemm) and the dense rotation's query path."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from vqdb.kernels import small_gemm  # noqa: E402
from vqdb.kernels.scorer import SMALL_BATCH  # noqa: E402
from vqdb.quantizers._rotation import DenseRotation, haar_rotation  # noqa: E402


def test_rows_matmul_is_the_sequential_float32_product():
    a = np.array([[1.0, 2.0, -3.0], [0.5, 0.0, 4.0]], np.float32)
    bt = np.array([[1.0, 0.0, 2.0, -1.0], [0.0, 3.0, 1.0, 1.0], [2.0, 1.0, 0.0, 0.5]], np.float32)
    np.testing.assert_array_equal(small_gemm.rows_matmul(a, bt), a @ bt)  # small integers: exact
    rng = np.random.default_rng(3)
    for m in (1, SMALL_BATCH, SMALL_BATCH + 1):  # the serial loop and, past SMALL_BATCH, BLAS
        a = rng.standard_normal((m, 300)).astype(np.float32)
        bt = rng.standard_normal((300, 70)).astype(np.float32)
        got = small_gemm.rows_matmul(a, bt)
        assert got.dtype == np.float32 and got.shape == (m, 70) and got.flags.c_contiguous
        want = a.astype(np.float64) @ bt.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_dense_rotation_query_path_equals_forward_and_keeps_one_query_like_a_batch():
    rng = np.random.default_rng(4)
    rot = DenseRotation(haar_rotation(96, rng))
    q = rng.standard_normal((20, 96)).astype(np.float32)
    batch = rot.forward_queries(q)  # 20 rows: BLAS
    np.testing.assert_array_equal(batch, rot.forward(q))
    for i in (0, 7, 19):
        one = rot.forward_queries(q[i : i + 1])  # one row: the serial loop
        np.testing.assert_allclose(one[0], batch[i], rtol=0, atol=1e-5)
        assert np.isclose(np.linalg.norm(one), np.linalg.norm(q[i]), rtol=1e-5)  # still a rotation
