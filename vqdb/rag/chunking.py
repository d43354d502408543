"""Split documents into passages: character windows that end on natural boundaries.

A chunk is always an exact slice ``text[start:end]`` of the document (no rewriting), so a hit can
be traced back to its place in the source. The rules, in order:

1. Leading and trailing whitespace is never part of a chunk; a whitespace-only text has no chunk.
2. A document of at most ``chunk_size`` characters (after rule 1) is one chunk.
3. Otherwise each chunk holds at most ``chunk_size`` characters. Its end is the last paragraph
   break (blank line) in the second half of the window, else the last sentence end (``.``, ``!``,
   ``?`` followed by whitespace), else the last whitespace, else a hard cut at ``chunk_size``.
4. The next chunk starts at the first word start at or after ``end - chunk_overlap`` (so two
   neighbours share at most ``chunk_overlap`` characters and never half a word), and always after
   the previous start. Consecutive chunks either overlap or are separated by whitespace only:
   every non-whitespace character of the document is in at least one chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._validation import check_int_range
from ..errors import InvalidInputError

DEFAULT_CHUNK_SIZE = 800          # characters; ~190 MiniLM word pieces of English, under its 256 limit
DEFAULT_CHUNK_OVERLAP = 100       # characters shared by neighbouring chunks
MAX_CHUNK_SIZE = 1_000_000

_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE = re.compile(r"[.!?][\"')\]]*\s")
_SPACE = re.compile(r"\s")


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


def _last_break(text: str, lo: int, hi: int) -> int:
    """End position (exclusive) of the best break in ``text[lo:hi]``, or ``hi`` for a hard cut."""
    window = text[lo:hi]
    for pattern in (_PARAGRAPH, _SENTENCE):
        last = None
        for last in pattern.finditer(window):
            pass
        if last is not None:
            # end the chunk after the punctuation / before the blank line; rstrip happens later
            return lo + (last.start() if pattern is _PARAGRAPH else last.end() - 1)
    last_space = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
    if last_space > 0:
        return lo + last_space
    return hi


def chunk_spans(text: str, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP) -> list[Span]:
    """Cut ``text`` into chunks following the module rules.

    Parameters
    ----------
    text : str
        The document.
    chunk_size : int
        Most characters in one chunk (>= 1).
    chunk_overlap : int
        Most characters shared by two consecutive chunks (0 <= chunk_overlap < chunk_size).

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
    spans: list[Span] = []
    while start < stop:
        hard = min(start + chunk_size, stop)
        if hard == stop:
            end = stop
        elif text[hard].isspace():              # the window ends exactly on a boundary
            end = hard
        else:
            end = _last_break(text, start + max(1, chunk_size // 2), hard)
        while end > start and text[end - 1].isspace():
            end -= 1
        spans.append(Span(start, end))
        if end >= stop:
            break
        nxt = max(end - chunk_overlap, start + 1)
        # move forward to a word start: a non-space character preceded by a space (or already past `end`)
        while nxt < end and not (not text[nxt].isspace() and text[nxt - 1].isspace()):
            nxt += 1
        while nxt < stop and text[nxt].isspace():
            nxt += 1
        start = nxt
    return spans


def chunk_text(text: str, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_overlap: int = DEFAULT_CHUNK_OVERLAP) -> list[str]:
    """The chunk strings of :func:`chunk_spans`."""
    return [text[s.start : s.end] for s in chunk_spans(text, chunk_size, chunk_overlap)]
