"""String ids in ``TextCollection``: documents added under their own ids (UUIDs, framework ids) come
back under those ids in queries, survive a reopen, and long documents get ``<id>#<chunk>`` passages."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from vqdb.errors import DTypeError, InvalidInputError
from vqdb.rag import TextCollection


def doc_ids(n: int) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"doc/{i}")) for i in range(n)]


def test_documents_keep_their_string_ids_through_queries_and_reopen(tmp_path, embedder, wordnet):
    texts = list(wordnet.texts[:40])
    ids = doc_ids(40)
    col = TextCollection(tmp_path / "c", model=embedder.name, chunk_size=2000)
    got = col.add(texts, metadata=[{"i": i} for i in range(40)], ids=ids)
    assert got.dtype == object and got.tolist() == ids  # one passage per document: exactly its id
    for mode in ("dense", "bm25", "hybrid"):
        hit = col.query(texts[7], k=1, mode=mode)[0]
        assert hit.id == ids[7] and hit.doc_id == ids[7] and hit.metadata == {"i": 7}
    assert col.delete([ids[7]]) == 1
    assert all(h.id != ids[7] for h in col.query(texts[7], k=5))
    col.close()
    again = TextCollection(tmp_path / "c")
    assert len(again) == 39
    hit = again.query(texts[8], k=1, mode="bm25")[0]
    assert hit.id == ids[8] and hit.text == texts[8]
    with pytest.raises(DTypeError):
        again.add(["one more"], ids=[5])
    more = again.add(["a new document about rivers"])  # no ids: new UUIDs
    assert more.dtype == object and str(uuid.UUID(more[0])) == more[0]
    again.close()


def test_long_documents_get_one_id_per_chunk(embedder, wordnet):
    long_text = " ".join(wordnet.texts[:30])
    col = TextCollection(model=embedder.name, chunk_size=300, chunk_overlap=0)
    got = col.add([long_text, "short one"], ids=["long", "short"])
    n_chunks = len(got) - 1
    assert n_chunks > 1 and got.tolist() == [f"long#{c}" for c in range(n_chunks)] + ["short"]
    hits = col.query(wordnet.texts[0], k=3, mode="bm25")
    assert hits[0].doc_id == "long" and hits[0].id.startswith("long#")


def test_integer_document_ids_must_name_one_passage(embedder):
    col = TextCollection(model=embedder.name, chunk_size=50, chunk_overlap=0)
    assert col.add(["tiny"], ids=[41]).tolist() == [41]
    with pytest.raises(InvalidInputError, match="cut into"):
        col.add(["word " * 40], ids=[42])
    assert len(col) == 1
    assert np.asarray(col.add(["next"])).tolist() == [42]  # auto ids continue after the largest


def test_passages_never_exceed_the_models_token_window(embedder, wordnet):
    """800 characters of numbers and codes are far more than MiniLM's 256 word pieces: chunks are cut by
    the model's own tokenizer, so the model reads every passage whole."""
    from vqdb.rag.chunking import chunk_spans

    rng = np.random.default_rng(0)
    numbers = " ".join(f"{v:.6f}" for v in rng.normal(size=1200))  # ~6 word pieces per number
    text = " ".join(wordnet.texts[:20]) + "\n\n" + numbers
    tokenizer, window = embedder.tokenizer, embedder.model.max_seq_length
    by_chars = [text[s.start : s.end] for s in chunk_spans(text, 800, 100)]
    assert max(len(tokenizer(p)["input_ids"]) for p in by_chars) > window  # what used to be truncated
    col = TextCollection(model=embedder.name)  # default chunk_size: 800 characters
    col.add([text], ids=["doc"])
    passages = [r["_text"] for r in col.index.get(col.index.ids(), include_vectors=False).metadata]
    lengths = [len(tokenizer(p)["input_ids"]) for p in passages]
    assert max(lengths) <= window and len(passages) > len(by_chars)
    assert "".join(p for p in passages).replace(" ", "").count("0.") >= numbers.count("0.") // 2
