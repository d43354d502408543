"""Search knobs and search results: small frozen value objects.

Search-time knobs are per-call arguments; the index keeps *defaults* for them, persisted in its
manifest, and no search ever changes index state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from ..errors import InvalidInputError

DEFAULT_OVERSAMPLE = 4.0


@dataclass(frozen=True, kw_only=True)
class SearchParams:
    """Per-call search knobs. ``None`` means "use the index's persisted default".

    Parameters
    ----------
    nprobe : int or None
        IVF only: how many coarse lists to scan per query (more = slower, higher recall). Ignored by a
        flat index. With a filter, more lists are scanned when the first ``nprobe`` hold fewer than
        ``k`` matching vectors, so a filtered search still returns ``k`` results when ``k`` exist.
    rerank : bool, float or None
        Re-score the best ``k * oversample`` candidates exactly from the stored vectors (needs
        ``store_vectors``). ``True`` uses ``oversample``; a number > 0 turns re-ranking on *and* sets
        the oversampling factor; ``False`` or ``0`` turns it off.
    oversample : float or None
        Oversampling factor of the re-rank (>= 1).
    ef : int or None
        Graph indexes only: the search beam (how many best nodes the walk keeps; more = slower, higher
        recall; at least ``k`` is used). Ignored by flat and IVF indexes. Default 64.
    """

    nprobe: int | None = None
    rerank: bool | float | None = None
    oversample: float | None = None
    ef: int | None = None

    def __post_init__(self):
        if self.nprobe is not None:
            if (
                isinstance(self.nprobe, bool)
                or not isinstance(self.nprobe, (int, np.integer))
                or self.nprobe < 1
            ):
                raise InvalidInputError(f"nprobe must be a positive integer or None; got {self.nprobe!r}")
            object.__setattr__(self, "nprobe", int(self.nprobe))
        if self.ef is not None:
            if (
                isinstance(self.ef, bool)
                or not isinstance(self.ef, (int, np.integer))
                or not 1 <= self.ef <= 1 << 16
            ):
                raise InvalidInputError(f"ef must be an integer in [1, 65536] or None; got {self.ef!r}")
            object.__setattr__(self, "ef", int(self.ef))
        r = self.rerank
        if r is not None and not isinstance(r, (bool, np.bool_)):
            if not isinstance(r, (int, float, np.integer, np.floating)) or not np.isfinite(r) or r < 0:
                raise InvalidInputError(f"rerank must be a bool, a factor >= 1, 0 or None; got {r!r}")
            if 0 < r < 1:
                raise InvalidInputError(f"rerank as an oversampling factor must be >= 1; got {r!r}")
        if self.oversample is not None:
            o = self.oversample
            if (
                isinstance(o, bool)
                or not isinstance(o, (int, float, np.integer, np.floating))
                or not np.isfinite(o)
                or o < 1
            ):
                raise InvalidInputError(f"oversample must be a number >= 1; got {o!r}")
            object.__setattr__(self, "oversample", float(o))

    def merged_over(self, defaults: SearchParams) -> SearchParams:
        """These params with every ``None`` taken from ``defaults``."""
        return replace(
            defaults,
            **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None},
        )

    def rerank_factor(self) -> float:
        """0.0 when re-ranking is off, else the oversampling factor (>= 1)."""
        r = self.rerank
        if r is None or r is False or (not isinstance(r, (bool, np.bool_)) and r == 0):
            return 0.0
        if isinstance(r, (bool, np.bool_)):
            return float(self.oversample or DEFAULT_OVERSAMPLE)
        return float(r)

    def to_json(self) -> dict:
        rerank = self.rerank if self.rerank is None or isinstance(self.rerank, bool) else float(self.rerank)
        return {"nprobe": self.nprobe, "rerank": rerank, "oversample": self.oversample, "ef": self.ef}

    @classmethod
    def from_json(cls, obj: dict | None) -> SearchParams:
        obj = obj or {}
        return cls(
            nprobe=obj.get("nprobe"),
            rerank=obj.get("rerank"),
            oversample=obj.get("oversample"),
            ef=obj.get("ef"),
        )


@dataclass(frozen=True)
class SearchResult:
    """Top-k results of a batch of queries; always 2-D, whatever the number of queries.

    Attributes
    ----------
    ids : ndarray of shape (m, k), int64 (object of str for a string-id index)
        Ids best first; ``-1`` (``None`` for string ids) where fewer than ``k`` vectors qualified.
    scores : ndarray of shape (m, k), float32
        Higher is better for every metric: ``ip`` the inner product, ``cos`` the cosine similarity,
        ``l2sq`` the *negated* squared Euclidean distance ``-||q - x||^2``. ``-inf`` where ``ids`` is -1.
    metric : str
        The metric of the index that produced the result.
    metadata : list of m lists of k dicts, or None
        Each hit's metadata (None where padded), when the search was asked ``include_metadata=True``.
    """

    ids: np.ndarray
    scores: np.ndarray
    metric: str = field(default="ip")
    metadata: list | None = field(default=None, compare=False)

    def __iter__(self):  # ``ids, scores = index.search(...)``
        yield self.ids
        yield self.scores

    def __len__(self) -> int:
        return int(self.ids.shape[0])
