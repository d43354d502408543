"""The demo text collection: 5,000 WordNet 3.0 definitions with their precomputed MiniLM vectors.

Built in well under a second (no model run: the passage vectors ship with the package, see
``vqdb.datasets.wordnet_sample``); questions are embedded when they are asked.
"""

from __future__ import annotations

import gzip
import json
import os

DEMO_NAME = "wordnet"


def demo_passages() -> tuple[list[str], list[dict], object]:
    """Texts, metadata (``synset``, ``pos``) and (n, 384) float32 vectors of the bundled sample."""
    import numpy as np

    from ..datasets import PACKAGE_DATA

    z = np.load(os.path.join(PACKAGE_DATA, "wordnet_minilm_sample.npz"))
    vectors = z["base"].astype(np.float32)
    with gzip.open(
        os.path.join(PACKAGE_DATA, "wordnet_passages_sample.jsonl.gz"), "rt", encoding="utf-8"
    ) as f:
        rows = [json.loads(line) for line in f]
    texts = [r["text"] for r in rows]
    pos_names = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
    metadata = [
        {"synset": r["synset"], "pos": pos_names.get(r["synset"].rsplit("-", 1)[-1], "other")} for r in rows
    ]
    return texts, metadata, vectors


def build_demo_collection(path, *, quantizer="turbo-4", index=None):
    """Create the demo ``TextCollection`` in directory ``path`` (which must be empty or absent).

    Parameters
    ----------
    path : str or path-like, or None
        Where to build it (``<path>/rag.json``, ``<path>/index/``, ``<path>/bm25/``); None: in memory.
    quantizer : str
        Compression preset of the passage vectors.
    index : vqdb.Index, optional
        An empty index to fill instead of creating ``<path>/index`` (a service that owns its indexes).

    Returns
    -------
    TextCollection
        Saved (when it has a path), with its BM25 index built. Call ``close()`` before another
        process or object opens the same directory.
    """
    from .collection import TextCollection

    texts, metadata, vectors = demo_passages()
    col = TextCollection(path, quantizer=quantizer, index=index)
    col.add(texts, metadata=metadata, vectors=vectors)
    if path is not None:
        col.save()
    return col
