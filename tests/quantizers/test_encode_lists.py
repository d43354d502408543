"""TurboQuantizer.encode_lists (IVF residuals in one pass): the bytes of per-list encode(centre=), bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from vqdb import TurboQuantizer
from vqdb.errors import DimensionMismatchError, InvalidInputError
from vqdb.presets import make_quantizer


@pytest.mark.parametrize(
    "make",
    [
        lambda d: make_quantizer("turbo-1", d),
        lambda d: make_quantizer("turbo-4", d),
        lambda d: make_quantizer("turbo-2.5", d),  # two blocks: list by list
        lambda d: TurboQuantizer(d, 3, variant="prod"),
    ],
    ids=["turbo-1", "turbo-4", "turbo-2.5", "prod-3"],
)
def test_encode_lists_equals_per_list_encode(make):
    rng = np.random.default_rng(5)
    d = 97
    x = (rng.standard_normal((300, d)) * np.linspace(2, 0.3, d) + 0.5).astype(np.float32)
    cents = (rng.standard_normal((7, d)) * 0.5).astype(np.float32)
    cents[3] = 0.0  # a zero centroid codes like encode(centre=0)
    lists = rng.integers(0, 7, 300)
    q = make(d).fit(x)
    got = q.encode_lists(x, cents, lists)
    for i in (0, 1, 57, 299) if q._fused_fht() else ():  # prod's untiled sgemm path rounds by batch shape
        np.testing.assert_array_equal(got[i : i + 1], q.encode(x[i : i + 1], centre=cents[lists[i]]))
    for g in range(7):
        rows = np.flatnonzero(lists == g)
        np.testing.assert_array_equal(got[rows], q.encode(x[rows], centre=cents[g]))
    # the scores of the residual codes plus the list term estimate <q, x> (the IVF form)
    qs = rng.standard_normal((3, d)).astype(np.float32)
    est = q.score(qs, got, centre=np.zeros(d, np.float32)) + qs @ cents[lists].T
    exact = qs @ x.T
    assert np.corrcoef(est.ravel(), exact.ravel())[0, 1] > 0.7  # 1 bit at d = 97: 0.77; 4 bits: 0.99


def test_encode_lists_bad_input():
    q = make_quantizer("turbo-2", 16).fit(np.eye(16, dtype=np.float32))
    x = np.ones((4, 16), np.float32)
    c = np.zeros((2, 16), np.float32)
    with pytest.raises(InvalidInputError, match="lists must lie"):
        q.encode_lists(x, c, np.array([0, 1, 2, 0]))
    with pytest.raises(InvalidInputError, match="lists must lie"):
        q.encode_lists(x, c, np.array([0, -1, 0, 0]))
    with pytest.raises(InvalidInputError, match="shape"):
        q.encode_lists(x, c, np.array([0, 1]))
    with pytest.raises(InvalidInputError, match="integer"):
        q.encode_lists(x, c, np.zeros(4))
    with pytest.raises(DimensionMismatchError):
        q.encode_lists(x, np.zeros((2, 15), np.float32), np.zeros(4, int))
    assert q.encode_lists(x[:0], c, np.zeros(0, int)).shape == (0, q.code_size)
