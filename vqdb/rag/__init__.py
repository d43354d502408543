"""Text retrieval for RAG: ``TextCollection`` (chunk, embed locally, store in a vqdb index, query
by meaning, by words or both).

``import vqdb.rag`` is light: torch, sentence-transformers and bm25s load on first use.

>>> from vqdb.rag import TextCollection                                    # doctest: +SKIP
>>> col = TextCollection("my-docs")                                        # doctest: +SKIP
>>> col.add(["Paris is the capital of France."], metadata=[{"src": "atlas"}])  # doctest: +SKIP
>>> col.query("capital of France", k=3, mode="hybrid")                     # doctest: +SKIP
"""

from __future__ import annotations

from .chunking import chunk_spans, chunk_text
from .collection import MODES, TextCollection, open_collection
from .hits import Hit

open = open_collection  # noqa: A001 - vqdb.rag.open(dir) mirrors vqdb.open(dir)

__all__ = ["Hit", "MODES", "TextCollection", "chunk_spans", "chunk_text", "open", "open_collection"]
