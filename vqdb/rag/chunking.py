"""Split documents into passages: character windows that end on natural boundaries.

A chunk is always an exact slice ``text[start:end]`` of the document (no rewriting), so a hit can
be traced back to its place in the source. The rules, in order:

1. Leading and trailing whitespace is never part of a chunk; a whitespace-only text has no chunk.
2. A document of at most ``chunk_size`` characters (after rule 1) is one chunk.
3. Otherwise each chunk holds at most ``chunk_size`` characters. Its end is the last paragraph
   break (blank line) in the second half of the window, else the last line break, else the last
   sentence end (``.``, ``!``, ``?`` followed by whitespace), else the last whitespace, else a hard
   cut at ``chunk_size`` (the order of LangChain's recursive splitter, plus sentences).
3b. With a token budget (``token_offsets`` + ``max_tokens``: the embedding model's window), the window
   also ends where the ``max_tokens``-th token of the chunk ends, so no chunk is longer than the model
   reads (an 800-character window of digits, code or non-English text can hold far more than
   MiniLM's 256 word pieces, and the model would silently drop the rest).
4. The next chunk starts in the last ``chunk_overlap`` characters of the previous one, at the first
   line start there, else the first sentence start, else the first word start (so two neighbours
   share at most ``chunk_overlap`` characters and never half a word); with no such start it begins
   where the previous chunk ended. It always starts after the previous start. Consecutive chunks
   either overlap or are separated by whitespace only: every non-whitespace character of the
   document is in at least one chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range
from ..errors import InvalidInputError

DEFAULT_CHUNK_SIZE = 800  # characters; ~190 MiniLM word pieces of English, under its 256 limit
DEFAULT_CHUNK_OVERLAP = 100  # characters shared by neighbouring chunks
MAX_CHUNK_SIZE = 1_000_000

_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?][\"')\]]*\s")
_SPACE = re.compile(r"\s")
# where a chunk may end: (pattern, end = match start (True) or just before the match's last character (False))
_ENDS = ((_PARAGRAPH, True), (_LINE, True), (_SENTENCE, False), (_SPACE, True))
# where a chunk may start: right after a match, if a non-space character follows
_STARTS = (re.compile(r"\n\s*(?=\S)"), re.compile(r"[.!?][\"')\]]*\s+(?=\S)"), re.compile(r"\s+(?=\S)"))


@dataclass(frozen=True)
class Span:
    """One chunk: ``text[start:end]`` of its document."""

    start: int
    end: int


def check_chunking(chunk_size, chunk_overlap) -> tuple[int, int]:
    """Validate the two chunking knobs; returns them as ints.

    ``chunk_overlap=None`` means ``min(DEFAULT_CHUNK_OVERLAP, chunk_size // 4)``.
    """
    size = check_int_range(chunk_size, 1, MAX_CHUNK_SIZE, name="chunk_size")
    if chunk_overlap is None:
        chunk_overlap = min(DEFAULT_CHUNK_OVERLAP, size // 4)
    if isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int) or not 0 <= chunk_overlap < size:
        raise InvalidInputError(
            f"chunk_overlap must be an integer in [0, chunk_size) = [0, {size}); got {chunk_overlap!r}"
        )
    return size, int(chunk_overlap)


def _last_break(text: str, lo: int, hard: int) -> int:
    """End (exclusive) of the best break in ``text[lo:hard + 1]``, or ``hard`` (a hard cut).

    The character at ``hard`` (just past the window) is looked at so that a window ending exactly
    on a boundary keeps it; a break never ends after ``hard``.
    """
    window = text[lo : hard + 1]
    for pattern, at_start in _ENDS:
        last = None
        for last in pattern.finditer(window):  # noqa: B007 (keeps the last match)
            pass
        if last is not None:  # trailing whitespace is stripped by the caller
            return lo + (last.start() if at_start else last.end() - 1)
    return hard


def _first_start(text: str, lo: int, hi: int) -> int:
    """Start of the next chunk: the best boundary in ``text[lo:hi]`` (see the module rules), else ``hi``."""
    for pattern in _STARTS:
        m = pattern.search(text, lo, hi)
        if m is not None and m.end() < hi:
            return m.end()
    return hi


def token_offsets(tokenizer, text: str) -> np.ndarray:
    """(t, 2) int64 character ``[start, end)`` of every token of ``text`` (no special tokens), from a
    Hugging Face fast tokenizer."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    return offsets[offsets[:, 1] > offsets[:, 0]]


def chunk_spans(
    text: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    *,
    token_offsets: np.ndarray | None = None,
    max_tokens: int | None = None,
) -> list[Span]:
    """Cut ``text`` into chunks following the module rules.

    Parameters
    ----------
    text : str
        The document.
    chunk_size : int
        Most characters in one chunk (>= 1).
    chunk_overlap : int
        Most characters shared by two consecutive chunks (0 <= chunk_overlap < chunk_size).
    token_offsets : ndarray of shape (t, 2), int64, optional
        Character ``[start, end)`` of each token of ``text`` (see :func:`token_offsets`).
    max_tokens : int, optional
        With ``token_offsets``: most tokens in one chunk (the model's window without its special tokens).

    Returns
    -------
    list of Span
        In document order, with strictly increasing ``start``; empty for a whitespace-only text.
    """
    chunk_size, chunk_overlap = check_chunking(chunk_size, chunk_overlap)
    n = len(text)
    start = 0
    while start < n and text[start].isspace():
        start += 1
    stop = n
    while stop > start and text[stop - 1].isspace():
        stop -= 1
    budget = None
    if token_offsets is not None and max_tokens is not None:
        max_tokens = check_int_range(max_tokens, 1, 1 << 20, name="max_tokens")
        budget = np.asarray(token_offsets, dtype=np.int64).reshape(-1, 2)
    spans: list[Span] = []
    while start < stop:
        hard = min(start + chunk_size, stop)
        if budget is not None:
            first = int(np.searchsorted(budget[:, 1], start, side="right"))  # first token ending after start
            last = first + max_tokens - 1
            if last < budget.shape[0]:
                hard = max(start + 1, min(hard, int(budget[last, 1])))
        if hard == stop:
            end = stop
        else:
            end = _last_break(text, start + max(1, (hard - start) // 2), hard)
        while end > start and text[end - 1].isspace():
            end -= 1
        spans.append(Span(start, end))
        if end >= stop:
            break
        lo = max(end - chunk_overlap, start + 1)
        # a boundary right at `lo` counts too: look from the character before it
        nxt = _first_start(text, lo - 1, end) if lo < end else end
        if nxt <= start:
            nxt = end
        while nxt < stop and text[nxt].isspace():
            nxt += 1
        start = nxt
    return spans


def chunk_text(
    text: str, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
) -> list[str]:
    """The chunk strings of :func:`chunk_spans`."""
    return [text[s.start : s.end] for s in chunk_spans(text, chunk_size, chunk_overlap)]
