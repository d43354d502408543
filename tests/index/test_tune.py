"""Index.tune: defaults chosen from measured recall and speed, persisted, on real WordNet vectors."""

from __future__ import annotations

import numpy as np
import pytest

import vqdb
from vqdb import errors
from vqdb.testing import recall_at_k


def _exact(x, q, k):
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def test_tune_picks_the_fastest_setting_reaching_the_target_and_persists_it(tmp_path, wordnet, quantizer):
    x, q = wordnet.base, wordnet.queries[:100]
    path = tmp_path / "ix"
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer, ivf=64, store_vectors=True, path=path)
    index.add(x)
    report = index.tune(q, 10, target_recall=0.9)
    chosen, settings = report["chosen"], report["settings"]
    assert report["reached"] and chosen["recall"] >= 0.9
    assert chosen["qps"] == max(s["qps"] for s in settings if s["recall"] >= 0.9)
    assert {s["rerank"] for s in settings} == {False, 2.0, 4.0, 8.0}
    assert all(s["nprobe"] in (1, 2, 4, 8, 16, 32, 64) for s in settings)
    # the measured recall is the recall against brute force, and the default now gives it
    truth = _exact(x, q, 10)
    assert recall_at_k(index.search(q, 10).ids, truth, 10) == pytest.approx(chosen["recall"], abs=1e-9)
    assert index.default_params.nprobe == chosen["nprobe"]
    index.close()
    with vqdb.open(path) as again:  # persisted in the manifest
        assert again.default_params.nprobe == chosen["nprobe"]
        assert again.default_params.rerank_factor() == (chosen["rerank"] or 0.0)


def test_tune_flat_without_vectors_and_an_unreachable_target(wordnet, quantizer):
    x, q = wordnet.base[:2000], wordnet.queries[:50]
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    index.add(x)
    truth = _exact(x, q, 10)
    report = index.tune(q, 10, target_recall=1.0, truth=truth)
    # one setting only (flat, no stored vectors): the code scan's own recall, below 1.0
    assert len(report["settings"]) == 1 and report["settings"][0]["nprobe"] is None
    assert not report["reached"] and 0.8 < report["chosen"]["recall"] < 1.0
    assert index.default_params.rerank_factor() == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_recall": 0.0},
        {"target_recall": 1.5},
        {"target_recall": "high"},
        {"truth": np.zeros((50, 3), np.int64)},
        {"truth": np.zeros((7, 10), np.int64)},
        {"truth": np.zeros((50, 10), np.float32)},
    ],
)
def test_tune_rejects_bad_arguments_and_keeps_the_defaults(wordnet, quantizer, kwargs):
    index = vqdb.Index(wordnet.dim, metric="ip", quantizer=quantizer)
    index.add(wordnet.base[:500])
    before = index.default_params
    with pytest.raises(errors.InvalidInputError):
        index.tune(wordnet.queries[:50], 10, **kwargs)
    assert index.default_params == before
