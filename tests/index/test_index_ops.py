"""Every operation of vqdb.Index on real WordNet vectors: add, search, upsert, delete, get, len, stats, params."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import exact_topk

import vqdb
from vqdb.errors import NotFoundError
from vqdb.testing import recall_at_k


def test_search_shapes_are_always_2d(flat_index, wordnet):
    q = wordnet.queries
    for m in (0, 1, 7):
        res = flat_index.search(q[:m], 10)
        assert res.ids.shape == (m, 10) and res.ids.dtype == np.int64
        assert res.scores.shape == (m, 10) and res.scores.dtype == np.float32
        assert res.metric == "ip"
    ids, scores = flat_index.search(q[:3], 5)  # unpacks
    assert ids.shape == scores.shape == (3, 5)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first: higher is better


def test_k_larger_than_index_pads_with_minus_one(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    empty = index.search(wordnet.queries[:2], 4)
    assert np.all(empty.ids == -1) and np.all(np.isneginf(empty.scores))
    index.add(wordnet.base[:3])
    res = index.search(wordnet.queries[:2], 5)
    assert np.all(res.ids[:, 3:] == -1) and np.all(np.isneginf(res.scores[:, 3:]))
    assert sorted(res.ids[0, :3].tolist()) == [0, 1, 2]


def test_flat_recall_on_wordnet(flat_index, wordnet):
    res = flat_index.search(wordnet.queries, 10)
    assert recall_at_k(res.ids, wordnet.gt_ids, 10) >= 0.85


@pytest.mark.parametrize("metric", ["ip", "l2sq"])
def test_rerank_covering_everything_equals_exact_search(wordnet, quantizer, metric):
    x, q = wordnet.base, wordnet.queries[:40]
    index = vqdb.Index(wordnet.dim, metric=metric, quantizer=quantizer, store_vectors=True)
    index.add(x)
    k = 10
    res = index.search(q, k, rerank=x.shape[0] / k)  # oversample so that every vector is re-scored
    ids, scores = exact_topk(x, q, k, metric)  # the sample is float16-exact, so stored vectors are exact
    np.testing.assert_allclose(res.scores, scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.ids, ids)


def test_cos_normalises_vectors_and_queries(wordnet, quantizer):
    x = wordnet.base[:500] * np.linspace(0.5, 3.0, 500, dtype=np.float32)[:, None]
    q = wordnet.queries[:20] * 7.0
    index = vqdb.Index(wordnet.dim, metric="cos", quantizer=quantizer, store_vectors="float32")
    index.add(x)
    res = index.search(q, 5, rerank=100)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    ids, scores = exact_topk(xn, qn, 5)
    np.testing.assert_array_equal(res.ids, ids)
    np.testing.assert_allclose(res.scores, scores, atol=1e-5)
    assert np.all(res.scores <= 1.0 + 1e-5)
    np.testing.assert_allclose(np.linalg.norm(index.get([0, 1]).vectors, axis=1), 1.0, atol=1e-6)


def test_l2sq_scores_are_negated_squared_distances(wordnet, quantizer):
    x, q = wordnet.base[:1000], wordnet.queries[:30]
    index = vqdb.Index(wordnet.dim, metric="l2sq", quantizer=quantizer)
    index.add(x)
    res = index.search(q, 10)
    true = -((q[:, None, :] - x[res.ids]) ** 2).sum(-1)  # exact -||q - x||^2 of the returned ids
    assert np.all(res.scores <= 0.0 + 0.05)
    assert np.mean(np.abs(res.scores - true)) < 0.05  # estimates of a quantity in [-4, 0]
    gt, _ = exact_topk(x, q, 10, "l2sq")
    assert recall_at_k(res.ids, gt, 10) >= 0.8


def test_ids_auto_explicit_and_stable(wordnet, quantizer):
    x = wordnet.base
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    np.testing.assert_array_equal(index.add(x[:10]), np.arange(10))
    np.testing.assert_array_equal(index.add(x[10:13], ids=[100, 50, 70]), [100, 50, 70])
    np.testing.assert_array_equal(index.add(x[13:15]), [101, 102])  # after the largest id ever used
    index.delete([102])
    np.testing.assert_array_equal(index.add(x[15:16]), [103])  # a deleted id is not reused
    assert len(index) == 15 and 50 in index and 102 not in index
    res = index.search(x[[11]], 1)
    assert res.ids[0, 0] == 50  # its own vector, under its id


def test_upsert_replaces_delete_removes(wordnet, quantizer):
    x = wordnet.base[:2000]
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, store_vectors=True)
    index.add(x, metadata=[{"v": 1, "tag": "old"} for _ in range(2000)])
    before = index.search(wordnet.queries[:20], 10)
    # upsert: id 7 takes the vector of 1500 and new metadata; id 5000 is new
    index.upsert(x[[1500, 3]], ids=[7, 5000], metadata=[{"v": 2}, {"v": 3, "tag": "new"}])
    assert len(index) == 2001
    got = index.get([7, 5000, 8])
    np.testing.assert_array_equal(got.vectors[0], x[1500])
    assert got.metadata == [{"v": 2}, {"v": 3, "tag": "new"}, {"v": 1, "tag": "old"}]
    res = index.search(x[[1500]], 2, rerank=True)
    assert set(res.ids[0].tolist()) == {7, 1500}
    assert np.isclose(res.scores[0, 0], res.scores[0, 1])
    # delete: gone from search, get and len; every other id keeps its vector
    index.delete([7, 1500, 5000])
    assert len(index) == 1998 and 7 not in index
    with pytest.raises(NotFoundError):
        index.get([7])
    res = index.search(x[[1500, 7]], 10)
    assert not np.isin(res.ids, [7, 1500, 5000]).any()
    after = index.search(wordnet.queries[:20], 10)
    keep = ~np.isin(before.ids, [7, 1500])
    assert np.isin(before.ids[keep], after.ids).mean() > 0.99
    np.testing.assert_array_equal(index.get([8, 1999]).vectors, x[[8, 1999]])


def test_get_vectors_and_metadata(flat_index, wordnet, quantizer):
    got = flat_index.get([3, 0, 4999])
    np.testing.assert_array_equal(got.ids, [3, 0, 4999])
    np.testing.assert_array_equal(got.vectors, wordnet.base[[3, 0, 4999]])
    assert got.exact and got.metadata[0]["i"] == 3 and got.metadata[2]["b200"] == 4999 % 200
    # without stored vectors, get returns the quantizer's reconstruction
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    index.add(wordnet.base[:300])
    rec = index.get(np.arange(300))
    assert not rec.exact
    cos = np.sum(rec.vectors * wordnet.base[:300], 1) / np.linalg.norm(rec.vectors, axis=1)
    assert cos.mean() > 0.95
    assert rec.metadata == [{}] * 300
    np.testing.assert_array_equal(np.sort(index.ids()), np.arange(300))


def test_stats(flat_index, ivf_index, quantizer):
    s = flat_index.stats()
    assert (
        s["n"] == 5000 and s["dim"] == 384 and s["metric"] == "ip" and s["code_size"] == quantizer.code_size
    )
    per = s["bytes_per_vector"]
    assert per["codes"] == quantizer.code_size and per["id"] == 8 and per["vectors"] == 768
    assert per["total"] >= per["codes"] + 8
    assert set(s["metadata_fields"]) == {"i", "half", "b20", "b200", "word", "score"}
    iv = ivf_index.stats()["ivf"]
    assert iv["trained"] and iv["nlist"] == 64 and iv["unassigned"] == 0
    assert iv["list_size_min"] >= 0 and iv["list_size_max"] <= 5000


def test_search_params_per_call_and_defaults(ivf_index, wordnet, tmp_path, quantizer):
    q = wordnet.queries[:50]
    a = ivf_index.search(q, 10, nprobe=2)
    b = ivf_index.search(q, 10, params=vqdb.SearchParams(nprobe=2))
    np.testing.assert_array_equal(a.ids, b.ids)
    c = ivf_index.search(q, 10, nprobe=64, params=vqdb.SearchParams(nprobe=2))  # keyword wins over params
    assert recall_at_k(c.ids, wordnet.gt_ids) > recall_at_k(a.ids, wordnet.gt_ids)
    assert ivf_index.default_params == vqdb.SearchParams()  # no call changed index state
    # defaults are persisted with the index
    index = vqdb.Index(
        wordnet.dim,
        metric="ip",
        quantizer=quantizer,
        ivf=16,
        store_vectors=True,
        path=tmp_path / "ix",
        default_params=vqdb.SearchParams(nprobe=3, rerank=True, oversample=2),
    )
    index.add(wordnet.base[:1000])
    index.set_default_params(vqdb.SearchParams(nprobe=5, rerank=True, oversample=3))
    expected = index.search(q, 10)
    index.close()
    with vqdb.open(tmp_path / "ix") as again:
        assert again.default_params == vqdb.SearchParams(nprobe=5, rerank=True, oversample=3.0)
        np.testing.assert_array_equal(again.search(q, 10).ids, expected.ids)
