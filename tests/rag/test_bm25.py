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
