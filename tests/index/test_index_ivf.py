"""IVF: recall@10 at several nprobe on real WordNet vectors, training once, assignment without retraining."""

from __future__ import annotations

import numpy as np

import vqdb
from vqdb.testing import recall_at_k


def test_ivf_recall_at_several_nprobe(ivf_index, flat_index, wordnet):
    q, gt = wordnet.queries[:120], wordnet.gt_ids[:120]
    recalls = {
        nprobe: recall_at_k(ivf_index.search(q, 10, nprobe=nprobe).ids, gt, 10) for nprobe in (1, 4, 16, 64)
    }
    flat = recall_at_k(flat_index.search(q, 10).ids, gt, 10)
    print("IVF64 recall@10 by nprobe:", recalls, "flat:", flat)
    assert recalls[1] <= recalls[4] <= recalls[16] <= recalls[64]
    assert recalls[1] >= 0.25 and recalls[4] >= 0.55 and recalls[16] >= 0.8  # word queries vs passages: hard
    assert recalls[64] >= flat - 0.03  # all lists ~ flat scan
    reranked = recall_at_k(ivf_index.search(q, 10, nprobe=16, rerank=True).ids, gt, 10)
    assert reranked >= recalls[16]


def test_ivf_default_nprobe_is_persisted_setting(ivf_index, wordnet):
    s = ivf_index.stats()["ivf"]
    q = wordnet.queries[:20]
    np.testing.assert_array_equal(
        ivf_index.search(q, 10).ids, ivf_index.search(q, 10, nprobe=s["default_nprobe"]).ids
    )


def test_train_once_then_assign_without_retraining(wordnet, quantizer):
    x = wordnet.base
    index = vqdb.Index(wordnet.dim, metric="cos", quantizer=quantizer, ivf=32)
    index.train(x[:2000])
    centroids = index._snap.coarse.centroids.copy()
    index.add(x[:10])  # tiny adds go straight into lists
    index.add(x[10:3000])
    index.add(x[3000:])
    np.testing.assert_array_equal(index._snap.coarse.centroids, centroids)  # never retrained
    s = index.stats()["ivf"]
    assert s["unassigned"] == 0 and s["nlist"] == 32 and s["list_size_min"] > 0
    res = index.search(x[4000:4050], 1, nprobe=2)  # vectors added after training are found
    assert np.mean(res.ids[:, 0] == np.arange(4000, 4050)) >= 0.9


def test_ivf_true_chooses_nlist_at_training(wordnet, quantizer):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, ivf=True)
    index.add(wordnet.base[:100])  # too few to train: scanned flat meanwhile
    assert not index.stats()["ivf"]["trained"]
    assert index.search(wordnet.base[:3], 1).ids[:, 0].tolist() == [0, 1, 2]
    index.add(wordnet.base[100:4000])
    s = index.stats()["ivf"]
    assert s["trained"] and s["nlist"] == 4000 // 32 and s["unassigned"] == 100
