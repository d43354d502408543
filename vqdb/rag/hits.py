"""What a text query returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One retrieved passage.

    Attributes
    ----------
    id : int or str
        Passage id (what :meth:`TextCollection.add` returned).
    text : str
        The passage: ``document[start:end]`` of the document it was cut from.
    score : float
        Higher is better. ``dense``: cosine similarity as estimated from the codes; ``bm25``: the
        BM25 score; ``hybrid``: the reciprocal-rank-fusion score.
    metadata : dict
        The metadata given with the passage's document.
    doc_id : int or str
        Id of the document (one per text given to ``add``: the id given in a string-id collection); all
        its chunks share it.
    chunk : int
        Position of the passage in its document (0 for the first chunk).
    start, end : int
        Character offsets of the passage in its document.
    """

    id: int | str
    text: str
    score: float
    metadata: dict = field(default_factory=dict)
    doc_id: int | str = -1
    chunk: int = 0
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict:
        """JSON-ready form (used by the REST routes and the CLI)."""
        return {
            "id": self.id,
            "score": self.score,
            "text": self.text,
            "metadata": self.metadata,
            "doc_id": self.doc_id,
            "chunk": self.chunk,
            "start": self.start,
            "end": self.end,
        }
