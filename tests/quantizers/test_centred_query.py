"""TurboQuant's centred-query estimator (``centred_query=True``, the ``turbo-N`` presets).

<q, x> = <q, c> + <c, r> + est<q - c, r> with r = x - c and est<v, r> = f <Πv, ĉ>, f = ||r|| / <u, ĉ>.
Since est is linear in v, this is the plain estimate plus one exact per-vector scalar
β = <c, r> - f <Πc, ĉ>, stored in the code. Checked here: an independent NumPy oracle, unbiasedness over
rotation seeds, the error law of RaBitQ (Gao & Long 2024, Thm 3.2: the error of ||r|| <Πv', ō>/<u, ō> is
about N(0, ||r||² ||v||² (1 - <u,ō>²) / (<u,ō>² (d - 1))), ō = ĉ/||ĉ||), the IVF residual form, and that
states written before this option load and score as before.
"""

from __future__ import annotations

import numpy as np
import pytest

import vqdb
from vqdb import TurboQuantizer
from vqdb.errors import InvalidInputError


def _oracle_scores(q: TurboQuantizer, x: np.ndarray, queries: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Scores from scratch (dense rotation, integer bits): rotate, bucketize, levels, f, β."""
    rot = q.state_dict()["arrays"]["part0.rotation"].astype(np.float64)
    cents, bounds = (a.astype(np.float64) for a in q.codebook)
    r = x.astype(np.float64) - c
    nrm = np.linalg.norm(r, axis=1)
    u = (r @ rot.T) / nrm[:, None]
    chat = cents[np.searchsorted(bounds, u.astype(np.float32).astype(np.float64), side="right")]
    f = nrm / np.einsum("ij,ij->i", u, chat)
    beta = r @ c - f * (chat @ (rot @ c))
    qd = queries.astype(np.float64)
    return (qd @ c)[:, None] + f[None, :] * ((qd @ rot.T) @ chat.T) + beta[None, :]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_scores_equal_the_numpy_oracle(wordnet, bits):
    x, queries = wordnet.base[:600], wordnet.queries[:20]
    q = TurboQuantizer(x.shape[1], bits, centred_query=True).fit(x)
    codes = q.encode(x)
    want = _oracle_scores(q, x, queries, q.centre_.astype(np.float64))
    np.testing.assert_allclose(q.score(queries, codes), want, rtol=1e-4, atol=2e-5)
    # the same codes bytes as the plain estimator but one float: indices and f are unchanged
    plain = TurboQuantizer(x.shape[1], bits).fit(x).encode(x)
    assert q.code_size == plain.shape[1] + 4
    np.testing.assert_array_equal(codes[:, : q.code_size - 8], plain[:, : plain.shape[1] - 4])
    np.testing.assert_array_equal(codes[:, -4:], plain[:, -4:])  # exact ||x||² stays last


def test_error_follows_the_rabitq_law_and_shrinks_with_the_query_offset(wordnet):
    x, queries = wordnet.base[:3000], wordnet.queries[:100]
    d = x.shape[1]
    for bits in (1, 2, 4):
        q = TurboQuantizer(d, bits, centred_query=True).fit(x)
        codes = q.encode(x)
        c = q.centre_.astype(np.float64)
        r = x.astype(np.float64) - c
        v = queries.astype(np.float64) - c
        err = q.score(queries, codes).astype(np.float64) - queries.astype(np.float64) @ x.T.astype(np.float64)
        rh = q.decode(codes).astype(np.float64) - c  # f Πᵀĉ: direction ō of the code
        cos = np.einsum("ij,ij->i", rh, r) / np.linalg.norm(rh, axis=1) / np.linalg.norm(r, axis=1)
        bound = (
            np.linalg.norm(v, axis=1)[:, None]
            * (np.linalg.norm(r, axis=1) * np.sqrt(1 - cos**2) / cos)[None, :]
            / np.sqrt(d - 1)
        )
        z = err / bound
        assert abs(z.mean()) < 0.03 and 0.93 < z.std() < 1.07, (bits, z.mean(), z.std())
        # RaBitQ's ε0 = 1.9 bound holds with the Gaussian probability (0.943); 3σ for 99.7%
        assert 0.93 < (np.abs(z) <= 1.9).mean() < 0.96
        assert (np.abs(z) <= 3.0).mean() > 0.995
        # the plain estimate's error scales with ||q||, the centred one's with ||q - c||
        plain = TurboQuantizer(d, bits).fit(x)
        err_plain = plain.score(queries, plain.encode(x)) - queries @ x.T
        ratio = np.sqrt(np.mean(err**2) / np.mean(err_plain.astype(np.float64) ** 2))
        want = np.sqrt(np.mean(np.sum(v**2, 1)) / np.mean(np.sum(queries.astype(np.float64) ** 2, 1)))
        assert abs(ratio - want) < 0.1 * want, (bits, ratio, want)


def test_unbiased_over_rotation_seeds():
    rng = np.random.default_rng(7)
    d, n_seeds = 48, 200
    x = (rng.standard_normal((40, d)) + 1.5).astype(np.float32)  # far from the origin, like real embeddings
    queries = (rng.standard_normal((5, d)) + 1.5).astype(np.float32)
    exact = queries.astype(np.float64) @ x.T.astype(np.float64)
    for bits in (1, 2):
        errs = []
        for seed in range(n_seeds):
            q = TurboQuantizer(d, bits, centred_query=True, seed=seed).fit(x)
            errs.append(q.score(queries, q.encode(x)) - exact)
        errs = np.stack(errs)
        t = errs.mean(0) / (errs.std(0) / np.sqrt(n_seeds))  # per (query, vector) pair, over rotations
        assert np.abs(t).max() < 4.5 and np.abs(t).mean() < 1.2, (bits, np.abs(t).max(), np.abs(t).mean())


def test_ivf_residual_form(wordnet):
    """encode(x, centre=c_j): β is taken against the list centroid; score(centre=c_j) is the centred form."""
    x, queries = wordnet.base[:400], wordnet.queries[:10]
    q = TurboQuantizer(x.shape[1], 2, centred_query=True).fit(wordnet.base[:2000])
    cj = x[:50].mean(0)
    codes = q.encode(x, centre=cj)
    want = _oracle_scores(q, x, queries, cj.astype(np.float64))
    np.testing.assert_allclose(q.score(queries, codes, centre=cj), want, rtol=1e-4, atol=2e-5)
    # what an index does: residual scores with centre 0, plus the exact <q, c_j> it keeps per list
    zero = np.zeros(x.shape[1], np.float32)
    np.testing.assert_allclose(
        q.score(queries, codes, centre=zero) + (queries @ cj)[:, None], want, rtol=1e-4, atol=2e-5
    )
    # a zero centre gives β = 0 (nothing to centre) and the plain code
    plain = q.encode(x - cj[None, :], centre=zero)
    np.testing.assert_array_equal(q.score_offsets(plain), np.zeros(x.shape[0], np.float32))


def test_ivf_index_recall_improves_on_real_data(wordnet):
    # passages as queries (held out of the base): near their lists' centroids, where centring pays
    x, queries = wordnet.base[300:], wordnet.base[:300]
    gt = np.argsort(-(queries.astype(np.float64) @ x.T.astype(np.float64)), axis=1)[:, :10]
    got = {}
    for centred in (False, True):
        idx = vqdb.Index(x.shape[1], quantizer=TurboQuantizer(x.shape[1], 1, centred_query=centred), ivf=32)
        idx.add(x)
        ids = idx.search(queries, k=10, nprobe=8, rerank=0).ids
        got[centred] = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, gt)])
    assert got[True] > got[False] + 0.01, got


def test_old_states_load_and_score_as_before(wordnet):
    x, queries = wordnet.base[:300], wordnet.queries[:5]
    old = TurboQuantizer(x.shape[1], 4).fit(x)
    state = old.state_dict()
    assert "centred_query" not in state["config"]  # what states written before this option look like
    again = vqdb.load_quantizer(state)
    assert not again.centred_query and again.code_size == old.code_size
    codes = old.encode(x)
    np.testing.assert_array_equal(again.encode(x), codes)
    np.testing.assert_array_equal(again.score(queries, codes), old.score(queries, codes))
    new = vqdb.make_quantizer("turbo-4", x.shape[1])
    assert new.centred_query and new.code_size == old.code_size + 4
    assert vqdb.load_quantizer(new.state_dict()).centred_query
    assert vqdb.make_quantizer("turbo-mse-4", x.shape[1]).centred_query is False
    assert vqdb.make_quantizer("turbo-prod-4", x.shape[1]).centred_query is False


def test_centred_query_is_for_the_scaled_variant_only():
    for variant in ("mse", "prod"):
        with pytest.raises(InvalidInputError, match="centred_query"):
            TurboQuantizer(16, 2, variant=variant, centred_query=True)
    with pytest.raises(InvalidInputError, match="bool"):
        TurboQuantizer(16, 2, centred_query="yes")


@pytest.mark.parametrize("metric", ["ip", "l2sq"])
def test_graph_rows_carry_the_offsets_and_old_graphs_keep_theirs(wordnet, metric, tmp_path):
    """The graph's per-node code constant folds β in (ip: -β, l2sq: ||x||² - 2β); a graph table written
    without the ``code_offsets`` flag (before β) is read back with the old meaning."""
    x, queries = wordnet.base[:1500], wordnet.queries[:50]
    q = vqdb.make_quantizer("turbo-2", x.shape[1])
    idx = vqdb.Index(x.shape[1], metric=metric, quantizer=q, graph=True)
    idx.add(x)
    g, q = idx._graph, idx._quantizer  # the index fits its own copy of the quantizer on the first add
    codes = q.encode(x)
    beta, sq = q.score_offsets(codes), q.squared_norms(codes)
    want = sq - 2 * beta if metric == "l2sq" else -beta
    np.testing.assert_allclose(g.sqc[: g.n][np.argsort(g.ids[: g.n])], want, rtol=1e-6, atol=1e-6)
    assert g.meta()["code_offsets"] is True
    # graph search = exact scores of the nodes it reaches: recall against exact search stays high
    found = idx.search(queries, 10, ef=64).ids
    exact = np.argsort(
        -(queries @ x.T) if metric == "ip" else ((queries[:, None] - x[None]) ** 2).sum(-1), axis=1
    )
    assert np.mean([len(set(a) & set(b[:10])) / 10 for a, b in zip(found, exact)]) > 0.9
    meta = {k: v for k, v in g.meta().items() if k != "code_offsets"}
    from vqdb.index._storage import write_table_file

    write_table_file(str(tmp_path / "graph.arrow"), g.to_table())
    stored = [(g.ids[: g.n], g.vbits[: g.n].view(np.float16))]
    old = type(g).from_file(str(tmp_path / "graph.arrow"), g.sc, x.shape[1], metric, meta, stored)
    assert old.offsets is False
