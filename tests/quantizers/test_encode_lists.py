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


def _oracle(q, x, queries, cents, lists):
    """Scores of the centred-query estimator from scratch in float64, for each row's own centre c: rotate
    r = x - c with the dense matrix of the FHT-Kac rotation, bucket u = Πr/||r||, f = ||r|| / <u, ĉ>,
    β = <c, r> - f <Πc, ĉ>; score = <q, c> + f <Πq, ĉ> + β."""
    rot = q._blocks[0].rotation.matrix().astype(np.float64)
    cb, bounds = (a.astype(np.float64) for a in q.codebook)
    c = cents[lists].astype(np.float64)
    r = (x - cents[lists]).astype(np.float32).astype(np.float64)
    nrm = np.linalg.norm(r, axis=1)
    u = (r @ rot.T) / nrm[:, None]
    chat = cb[np.searchsorted(bounds, u, side="right")]
    f = nrm / np.einsum("ij,ij->i", u, chat)
    beta = np.einsum("ij,ij->i", r, c) - f * np.einsum("ij,ij->i", chat, c @ rot.T)
    qd = queries.astype(np.float64)
    return qd @ c.T + f[None, :] * ((qd @ rot.T) @ chat.T) + beta[None, :]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_preset_scores_equal_the_numpy_oracle_flat_and_ivf(wordnet, bits):
    """turbo-N (FHT-Kac, fused encode): flat scores and IVF residual scores (encode_lists, score with
    centre 0 plus the exact <q, c_list>) equal the float64 oracle; an index flips a few indices where a
    coordinate sits within rounding of a boundary, hence the tolerance on a few percent of scores."""
    x, queries = wordnet.base[:800], wordnet.queries[:20]
    d = x.shape[1]
    q = make_quantizer(f"turbo-{bits}", d).fit(wordnet.base[:3000])
    flat = _oracle(q, x, queries, q.centre_[None, :], np.zeros(x.shape[0], np.int64))
    got = q.score(queries, q.encode(x))
    close = np.isclose(got, flat, rtol=1e-4, atol=1e-4)
    assert close.mean() > 0.99, close.mean()
    rng = np.random.default_rng(bits)
    cents = x[rng.choice(x.shape[0], 9, replace=False)] * 0.9
    lists = rng.integers(0, 9, x.shape[0])
    codes = q.encode_lists(x, cents, lists)
    ivf = q.score(queries, codes, centre=np.zeros(d, np.float32)) + queries @ cents[lists].T
    want = _oracle(q, x, queries, cents, lists)
    close = np.isclose(ivf, want, rtol=1e-4, atol=1e-4)
    assert close.mean() > 0.99, close.mean()
