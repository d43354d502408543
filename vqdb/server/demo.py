"""The demo collection created on the first start with an empty data directory.

``wordnet``: the 5,000 real WordNet passages shipped with vqdb (all-MiniLM-L6-v2, 384-d, cosine,
full vectors kept for exact re-ranking), ids 0..4999, so a new user can search at once:

* with ``vqdb.rag`` importable it is a *text collection* (``vqdb.rag.demo``): payload
  ``{"_text": ..., "synset": ..., "pos": ...}``, and a question in words works,
  ``GET /collections/wordnet/query?text=a+large+wild+cat&k=3``;
* otherwise a plain vector collection with payload ``{"text": ...}``.

Either way ``POST /collections/wordnet/search {"id": 42, "k": 5}`` returns the passages nearest to
passage 42. Vectors ship with the package: no model runs at build time.
"""

from __future__ import annotations

import logging

import numpy as np

from .collections import CollectionStore

log = logging.getLogger("vqdb.server")

DEMO_NAME = "wordnet"


def create_demo(store: CollectionStore) -> None:
    collection = store.create(DEMO_NAME, dim=384, metric="cos", quantizer="turbo-4", store_vectors=True)
    try:
        from ..rag.demo import build_demo_collection
    except ImportError as exc:  # the rag extra is not installed: vectors + texts only
        log.info("demo collection without text search (%s)", exc)
        _fill_vectors(collection)
    else:
        with collection.write_lock, collection.lease() as index:
            build_demo_collection(collection.root, index=index)
    log.info("created demo collection %r: %d WordNet passages", DEMO_NAME, collection.size()[0])


def _fill_vectors(collection) -> None:
    from .. import datasets

    ds = datasets.wordnet_sample()
    ids = np.arange(ds.base.shape[0], dtype=np.int64)
    collection.upsert(ds.base, ids, [{"text": t} for t in ds.texts])
    collection.save()
