"""TextCollection end to end on real text: chunking + embedding + index, filters on both sides,
persistence, bad input."""

import numpy as np
import pytest

from vqdb.errors import DimensionMismatchError, InvalidInputError, NotFoundError, VqdbError
from vqdb.rag import TextCollection
from vqdb.rag import open as open_collection

MODES = ["dense", "bm25", "hybrid"]


@pytest.fixture(scope="module")
def docs(wordnet):
    """9 documents made of real WordNet definitions (each ~1,300 characters), 3 sources."""
    texts, meta = [], []
    for d in range(9):
        parts = wordnet.texts[d * 12 : (d + 1) * 12]
        texts.append("\n\n".join(parts))
        meta.append({"source": ["atlas", "bible", "codex"][d % 3], "n": d})
    return texts, meta


@pytest.fixture(scope="module")
def col(embedder, docs):
    c = TextCollection(chunk_size=400, chunk_overlap=60)
    texts, meta = docs
    ids = c.add(texts, metadata=meta)
    assert ids.dtype == np.int64 and ids.tolist() == list(range(len(ids)))
    return c


def test_add_chunks_every_document_exactly(col, docs):
    texts, meta = docs
    hits = col.query("anything at all", k=len(col), mode="dense")
    assert len(hits) == len(col) > len(texts)
    by_doc = {}
    for h in hits:
        assert h.text == texts[h.doc_id][h.start : h.end]
        assert len(h.text) <= 400
        assert h.metadata == meta[h.doc_id]
        by_doc.setdefault(h.doc_id, []).append(h)
    assert sorted(by_doc) == list(range(len(texts)))
    for hs in by_doc.values():
        assert sorted(h.chunk for h in hs) == list(range(len(hs)))


def test_finds_the_passage_that_defines_a_word(col, docs, wordnet):
    # doc 8 holds definitions 96..107; ask for the lemma of one of them
    target = wordnet.texts[101]
    word = target.split(" (")[0].split(",")[0]
    for mode in MODES:
        hits = col.query(word, k=5, mode=mode)
        assert any(target in h.text for h in hits), (mode, word, [h.text[:60] for h in hits])
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


@pytest.mark.parametrize("mode", MODES)
def test_filters_apply_to_every_mode(col, mode):
    flt = {"source": "bible"}
    hits = col.query("a person who acts", k=8, mode=mode, filter=flt)
    assert hits and all(h.metadata["source"] == "bible" for h in hits)
    hits = col.query(
        "a person who acts", k=8, mode=mode, filter={"$and": [{"source": "codex"}, {"n": {"$gte": 5}}]}
    )
    assert hits and all(h.metadata["source"] == "codex" and h.metadata["n"] >= 5 for h in hits)
    assert col.query("plant", k=5, mode=mode, filter={"source": "nowhere"}) == []


def test_filter_errors_are_clear(col):
    with pytest.raises(VqdbError, match="unknown"):
        col.query("plant", mode="bm25", filter={"sauce": "atlas"})
    with pytest.raises(VqdbError):
        col.query("plant", mode="dense", filter={"source": {"$regex": "a"}})


def test_persistence_round_trip(tmp_path, embedder, docs, wordnet):
    texts, meta = docs
    path = tmp_path / "c"
    c = TextCollection(path, chunk_size=500, chunk_overlap=50, quantizer="turbo-4")
    c.add(wordnet.texts[1000:1400], vectors=wordnet.base[1000:1400], metadata={"source": "sample"})
    c.add(texts[:2], metadata=meta[:2])
    c.save()
    c.add(texts[2:4], metadata=meta[2:4])  # written after save: durable through the index's log
    questions = ["a kind of tree", "relating to the sea", "to move quickly"]
    before = {
        m: [[(h.id, h.text, h.metadata) for h in c.query(q, k=7, mode=m)] for q in questions] for m in MODES
    }
    n = len(c)
    c.close()
    again = open_collection(path)
    assert len(again) == n and again.chunk_size == 500 and again.chunk_overlap == 50
    after = {
        m: [[(h.id, h.text, h.metadata) for h in again.query(q, k=7, mode=m)] for q in questions]
        for m in MODES
    }
    assert after == before
    new_ids = again.add(["A brand new passage about quantum teleportation of zebras."])
    assert new_ids[0] >= n  # ids are never reused
    assert again.query("zebra teleportation", k=1, mode="bm25")[0].id == new_ids[0]
    again.close()
    with pytest.raises(InvalidInputError, match="embedded with model"):
        TextCollection(path, model=str(tmp_path / "another-model"))


def test_precomputed_vectors_and_delete(wordnet):
    c = TextCollection(chunk_size=50)  # chunking does not apply to precomputed passages
    ids = c.add(wordnet.texts[:300], vectors=wordnet.base[:300], metadata={"part": 1})
    assert len(c) == 300
    res = c.query_many(["q"], k=3, mode="dense", query_vectors=wordnet.base[42:43])[0]
    assert res[0].id == ids[42] and res[0].text == wordnet.texts[42] and res[0].metadata == {"part": 1}
    c.delete(ids[42:43])
    res = c.query_many(["q"], k=3, mode="dense", query_vectors=wordnet.base[42:43])[0]
    assert ids[42] not in [h.id for h in res]
    word = wordnet.texts[42].split(" (")[0].split(",")[0]
    assert ids[42] not in [h.id for h in c.query(word, k=10, mode="bm25")]
    with pytest.raises(DimensionMismatchError):
        c.add(["a", "b"], vectors=np.ones((2, 10), np.float32))
    with pytest.raises(DimensionMismatchError):
        c.add(["a", "b"], vectors=wordnet.base[:3])


@pytest.mark.parametrize(
    "texts,match",
    [
        ([""], "empty"),
        (["   \n\t"], "empty"),
        ([b"bytes"], "decode"),
        ([None], "string"),
        ([3], "string"),
        (42, "list of strings"),
        ({"a": "b"}, "list of strings"),
    ],
)
def test_bad_texts_are_refused_before_any_write(col, texts, match):
    n = len(col)
    with pytest.raises(InvalidInputError, match=match):
        col.add(texts)
    with pytest.raises(InvalidInputError):
        col.add(["fine text", *([""] if not isinstance(texts, list) else texts)])
    assert len(col) == n


def test_huge_document_is_chunked_up_to_a_bound(embedder):
    c = TextCollection(max_document_chars=5_000, chunk_size=1000, chunk_overlap=0)
    with pytest.raises(InvalidInputError, match="5,000"):
        c.add(["word " * 1001])
    ids = c.add(["word " * 999])
    assert len(ids) == 5 and len(c) == 5


def test_bad_metadata_query_and_knobs(col):
    with pytest.raises(InvalidInputError, match="one per text"):
        col.add(["a", "b"], metadata=[{}])
    with pytest.raises(InvalidInputError, match="reserved|invalid key"):
        col.add(["a"], metadata=[{"_text": "x"}])
    with pytest.raises(InvalidInputError):
        col.add(["a"], metadata=["not a dict"])
    for bad in ["", "  ", b"x", None]:
        with pytest.raises(InvalidInputError):
            col.query(bad)
    with pytest.raises(InvalidInputError):
        col.query("plant", k=0)
    with pytest.raises(VqdbError, match="mode"):
        col.query("plant", mode="sparse")
    with pytest.raises(InvalidInputError):
        TextCollection(chunk_size=100, chunk_overlap=100)
    with pytest.raises(InvalidInputError):
        TextCollection(rrf_k=0)


def test_unknown_collection_and_non_collection_directory(tmp_path):
    with pytest.raises(NotFoundError, match="no text collection"):
        open_collection(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="not empty"):
        TextCollection(tmp_path / "other")
    with pytest.raises(InvalidInputError, match="in memory"):
        TextCollection().save()


def test_empty_collection_and_metadata_with_different_keys(wordnet):
    c = TextCollection()
    q = wordnet.base[7:8]
    for mode in MODES:
        assert c.query_many(["dog"], k=5, mode=mode, query_vectors=q) == [[]]
    meta = [{"lang": "en"} if i % 2 else {"year": 2000 + i, "tags": "x"} for i in range(40)]
    ids = c.add(wordnet.texts[:40], vectors=wordnet.base[:40], metadata=meta)
    word = wordnet.texts[7].split(" (")[0].split(",")[0]  # row 7: odd, so {"lang": "en"}
    for mode in MODES:
        hits = c.query_many([word], k=40, mode=mode, query_vectors=q, filter={"lang": "en"})[0]
        assert hits and all(h.metadata == {"lang": "en"} for h in hits) and hits[0].id == ids[7]
        hits = c.query_many([word], k=40, mode=mode, query_vectors=q, filter={"year": {"$gte": 2010}})[0]
        assert all(h.metadata["year"] >= 2010 for h in hits)
        hits = c.query_many([word], k=40, mode=mode, query_vectors=q, filter={"_doc": 7})[0]
        assert [h.id for h in hits] == [ids[7]]
