import numpy as np
import pytest

from vqdb.rag.bm25 import BM25Index, tokenize


def test_tokenize_lowercases_splits_and_drops_stop_words():
    assert tokenize("The Cat's hat, and a DOG!") == ["cat", "s", "hat", "dog"]
    assert tokenize("naïve café") == ["naïve", "café"]
    assert tokenize("the of and") == []


@pytest.fixture(scope="module")
def bm25(wordnet):
    idx = BM25Index()
    ids = np.arange(1000, 1000 + 2000, dtype=np.int64)  # ids need not be row numbers
    idx.build(ids, [tokenize(t) for t in wordnet.texts[:2000]])
    return idx


def test_finds_the_defining_passage_first(bm25, wordnet):
    target = 123
    word = wordnet.texts[target].split(" (")[0].split(",")[0]
    ids, scores = bm25.search(word, 10)
    assert 1000 + target in ids.tolist()
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)


def test_mask_unknown_words_and_k(bm25):
    ids, _ = bm25.search("zzzqqq unknownword", 10)
    assert ids.size == 0
    ids, _ = bm25.search("the of", 10)
    assert ids.size == 0
    ids_all, _ = bm25.search("plant", 50)
    mask = np.zeros(len(bm25), dtype=bool)
    mask[::2] = True
    ids_masked, _ = bm25.search("plant", 50, mask)
    assert set(ids_masked.tolist()) <= set(bm25.ids[mask].tolist())
    assert ids_masked.size > 0 and ids_masked.size <= 50
    assert bm25.search("plant", 3)[0].tolist() == ids_all[:3].tolist()


def test_save_load_round_trip(bm25, tmp_path):
    bm25.save(str(tmp_path / "b"))
    again = BM25Index.load(str(tmp_path / "b"))
    for q in ["plant", "small bird", "river bank"]:
        a, sa = bm25.search(q, 20)
        b, sb = again.search(q, 20)
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb)


def test_empty_and_stop_word_only_corpus(tmp_path):
    idx = BM25Index()
    idx.build(np.zeros(0, dtype=np.int64), [])
    assert idx.search("anything", 5)[0].size == 0
    idx.build(np.array([7, 8]), [[], ["cat"]])
    assert idx.search("cat", 5)[0].tolist() == [8]
    idx.build(np.array([7]), [[]])
    assert idx.search("cat", 5)[0].size == 0
    idx.save(str(tmp_path / "e"))
    assert BM25Index.load(str(tmp_path / "e")).search("cat", 5)[0].size == 0


def test_import_vqdb_rag_is_light():
    import subprocess
    import sys

    code = (
        "import sys, vqdb.rag, vqdb.rag.cli, vqdb.rag.demo\n"
        "print(','.join(m for m in ['torch', 'sentence_transformers', 'transformers', 'bm25s', 'numba', 'fastapi']"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _bm25s_scores(texts: list[str], query: str) -> np.ndarray:
    """bm25s (method "lucene"), built from scratch over ``texts``: the oracle of the incremental index."""
    import bm25s

    vocab: dict = {}
    corpus = [[vocab.setdefault(t, len(vocab)) for t in tokenize(x)] for x in texts]
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index((corpus, vocab), show_progress=False)
    ids = retriever.get_tokens_ids(tokenize(query))
    return np.asarray(retriever.get_scores_from_ids(ids), dtype=np.float32) if ids else np.zeros(len(texts))


def test_incremental_adds_and_removes_score_as_a_full_rebuild(wordnet):
    """Written 100 passages at a time with removals in between, the index scores every passage exactly as
    bm25s rebuilt from scratch over the live passages (N, df and avgdl move with every write)."""
    texts = list(wordnet.texts[:1500])
    idx = BM25Index()
    for s in range(0, 1500, 100):
        idx.add(np.arange(s, s + 100), [tokenize(t) for t in texts[s : s + 100]])
        if s % 300 == 0:
            idx.remove(np.arange(s, s + 100, 7))  # removals, some rows of every third batch
    assert idx.remove([5000, 0]) == 0  # absent ids are ignored (0 is already gone)
    live = np.array(sorted(set(range(1500)) - {i for s in range(0, 1500, 300) for i in range(s, s + 100, 7)}))
    assert len(idx) == live.size and sorted(idx.ids.tolist()) == live.tolist()
    for query in ["plant", "small bird", "river bank water", "the of"]:
        want = _bm25s_scores([texts[i] for i in live], query)
        got_ids, got = idx.search(query, live.size)
        full = np.zeros(live.size, np.float32)
        full[np.searchsorted(live, got_ids)] = got
        np.testing.assert_allclose(full, want, rtol=1e-5, atol=1e-6)
    idx.compact()  # row numbers change, scores do not
    a, sa = idx.search("small bird", 20)
    assert a.size == 20 and np.all(np.diff(sa) <= 0)


def test_string_ids_and_save_load_of_an_incremental_index(wordnet, tmp_path):
    idx = BM25Index()
    ids = np.array([f"doc-{i}" for i in range(300)], dtype=object)
    idx.add(ids[:200], [tokenize(t) for t in wordnet.texts[:200]])
    idx.add(ids[200:], [tokenize(t) for t in wordnet.texts[200:300]])
    idx.remove(ids[:10])
    idx.save(str(tmp_path / "b"))
    again = BM25Index.load(str(tmp_path / "b"))
    assert len(again) == 290 and again.ids.dtype == object
    for q in ["plant", "small bird"]:
        a, sa = idx.search(q, 15)
        b, sb = again.search(q, 15)
        assert a.tolist() == b.tolist() and all(x.startswith("doc-") for x in b.tolist())
        np.testing.assert_allclose(sa, sb)
    again.add(np.array(["late"], dtype=object), [["zebra"]])
    assert again.search("zebra", 3)[0].tolist() == ["late"]
