import numpy as np
import pytest

from vqdb.rag.fusion import reciprocal_rank_fusion


def test_rrf_matches_the_formula():
    a = np.array([10, 20, 30])
    b = np.array([30, 40])
    ids, scores = reciprocal_rank_fusion([a, b], 10, rrf_k=60)
    expect = {10: 1 / 61, 20: 1 / 62, 30: 1 / 63 + 1 / 61, 40: 1 / 62}
    assert ids.tolist() == [30, 10, 20, 40]  # 20 and 40 tie at 1/62: better best rank, then smaller id
    np.testing.assert_allclose(scores, [expect[i] for i in ids.tolist()], rtol=1e-6)


def test_rrf_weights_k_and_empty_lists():
    ids, _ = reciprocal_rank_fusion([np.array([1, 2]), np.array([2, 1])], 1, weights=[2.0, 1.0])
    assert ids.tolist() == [1]
    ids, scores = reciprocal_rank_fusion([np.array([], dtype=np.int64), np.array([5])], 3)
    assert ids.tolist() == [5] and scores[0] == pytest.approx(1 / 61)
    ids, _ = reciprocal_rank_fusion([np.array([], dtype=np.int64)], 3)
    assert ids.shape == (0,) and ids.dtype == np.int64
