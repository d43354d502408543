"""The demo collection created on the first start with an empty data directory.

``wordnet``: the 5,000 real WordNet passages shipped with vqdb (all-MiniLM-L6-v2, 384-d, cosine),
payload ``{"text": ...}``, ids 0..4999 — so a new user can search at once, e.g. for the passages
nearest to passage 42: ``POST /collections/wordnet/search {"id": 42, "k": 5}``.
"""

from __future__ import annotations

import logging

import numpy as np

from .collections import CollectionStore

log = logging.getLogger("vqdb.server")

DEMO_NAME = "wordnet"


def create_demo(store: CollectionStore) -> None:
    from .. import datasets

    ds = datasets.wordnet_sample()
    collection = store.create(DEMO_NAME, dim=ds.dim, metric="cos", quantizer="turbo-4", store_vectors=True)
    ids = np.arange(ds.base.shape[0], dtype=np.int64)
    payloads = [{"text": t} for t in ds.texts]
    collection.upsert(ds.base, ids, payloads)
    collection.save()
    log.info("created demo collection %r: %d WordNet passages (%d-d)", DEMO_NAME, len(ids), ds.dim)
