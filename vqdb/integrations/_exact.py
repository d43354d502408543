"""How much to re-rank so that small collections are ranked exactly.

The stores of this package keep float32 vectors next to the codes. A search takes the best
``k * factor`` candidates by their (approximate) code scores and re-scores those from the stored
vectors. When ``k * factor`` covers the whole collection every vector is re-scored, so the ranking
is exact whatever the codes: this is what makes tiny collections and tiny embeddings (LangChain's
6-dimensional test embeddings, where 4-bit codes put near ties in the wrong order) rank exactly.

Why 1,000: re-scoring is cheap, but the candidate heap is not; on the WordNet sample (5,000 x 384,
one query, this 2-core machine under load) a search re-scoring 80 / 1,000 / 2,000 / 5,000
candidates took 3.7 / 8.4 / 38 / 66 ms. So collections up to ``EXACT_ROWS`` vectors are re-scored
in full (exact), and larger ones re-score at least ``MIN_CANDIDATES`` (and at least 8 x k):
recall@10 was 1.0 there for 384-d text vectors and for random 6-d and 16-d vectors (n = 5,000).
"""

from __future__ import annotations

import math

EXACT_ROWS = 1_000  # collections up to this size are ranked exactly
MIN_CANDIDATES = 1_000  # above it, at least this many candidates are re-scored
OVERSAMPLE = 8.0  # and at least k times this


def rerank_factor(n: int, k: int, *, max_factor: float | None = None) -> float:
    """Re-rank factor for a top-``k`` search over ``n`` vectors (>= 1)."""
    k = max(int(k), 1)
    if n <= EXACT_ROWS:
        factor = max(1.0, float(math.ceil(n / k)))
    else:
        factor = max(OVERSAMPLE, float(math.ceil(MIN_CANDIDATES / k)))
    return min(factor, max_factor) if max_factor is not None else factor
