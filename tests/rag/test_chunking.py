"""Chunking is exact: every chunk is a slice of its document, within the size bound, neighbours share
at most ``chunk_overlap`` characters, and no non-whitespace character is lost."""

import pytest

from vqdb.errors import InvalidInputError
from vqdb.rag.chunking import chunk_spans, chunk_text


def _check(text, size, overlap):
    spans = chunk_spans(text, size, overlap)
    assert chunk_text(text, size, overlap) == [text[s.start : s.end] for s in spans]
    covered = [False] * len(text)
    prev = None
    for s in spans:
        piece = text[s.start : s.end]
        assert 1 <= len(piece) <= size
        assert piece == piece.strip(), "no chunk starts or ends with whitespace"
        for i in range(s.start, s.end):
            covered[i] = True
        if prev is not None:
            assert s.start > prev.start
            assert prev.end - s.start <= overlap, "neighbours share at most chunk_overlap characters"
            if s.start > prev.end:
                assert text[prev.end : s.start].isspace(), "a gap between chunks holds only whitespace"
        prev = s
    assert all(c or ch.isspace() for c, ch in zip(covered, text)), "every non-space character is in a chunk"
    return spans


@pytest.fixture(scope="module")
def long_document(wordnet):
    # real English: 300 WordNet definitions as sentences, with paragraph breaks every 7
    parts = []
    for i, t in enumerate(wordnet.texts[:300]):
        parts.append(t + ("\n\n" if i % 7 == 6 else " "))
    return "".join(parts)


@pytest.mark.parametrize(
    "size,overlap", [(1, 0), (7, 3), (50, 0), (97, 20), (200, 199), (800, 100), (5000, 500)]
)
def test_chunks_are_exact_slices_within_bounds(long_document, size, overlap):
    spans = _check(long_document, size, overlap)
    assert spans[0].start == 0 and spans[-1].end == len(long_document.rstrip())


def test_short_text_is_one_chunk_without_outer_whitespace():
    assert chunk_text("  a cat sat.\n", 100, 10) == ["a cat sat."]
    assert chunk_spans("  a cat sat.\n", 100, 10)[0].start == 2
    assert chunk_text(" \n\t ", 100, 10) == []


def test_prefers_paragraph_then_sentence_then_word_boundaries():
    para = "First paragraph is here.\n\nSecond one follows with more words."
    assert chunk_text(para, 45, 0)[0] == "First paragraph is here."
    sent = "One two three four. Five six seven eight nine"
    assert chunk_text(sent, 30, 0)[0] == "One two three four."
    # a boundary in the first half of the window is not used: chunks stay at least half full
    assert chunk_text("Hi. " + "word " * 10, 30, 0)[0].startswith("Hi. word")
    words = "alpha beta gamma delta epsilon"
    first = chunk_text(words, 20, 0)[0]
    assert first == "alpha beta gamma"
    # a word longer than the chunk is cut hard, nothing is lost
    assert "".join(chunk_text("x" * 25, 10, 0)) == "x" * 25


def test_line_structured_text_is_cut_between_lines():
    text = "\n".join(f"line {i:02d} has a few words" for i in range(60))
    spans = _check(text, 100, 30)
    for s in spans:
        assert s.end == len(text) or text[s.end] == "\n"
    for s in spans[1:]:
        assert text[s.start - 1] == "\n"  # overlap begins at a line start
    assert all(a.end > b.start for a, b in zip(spans, spans[1:]))


def test_overlap_starts_on_a_word():
    text = " ".join(f"w{i:03d}" for i in range(200))
    spans = _check(text, 60, 15)
    for s in spans[1:]:
        assert text[s.start - 1] == " " and text[s.start] == "w"
    # consecutive chunks do share text when the overlap allows a whole word
    assert any(a.end > b.start for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize(
    "size,overlap", [(0, 0), (-5, 0), (10, 10), (10, -1), (10, 2.5), ("10", 0), (True, 0)]
)
def test_bad_knobs_are_refused(size, overlap):
    with pytest.raises(InvalidInputError):
        chunk_spans("some text", size, overlap)
