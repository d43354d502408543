"""How much to re-rank so that small collections are ranked exactly.

The stores of this package keep float32 vectors next to the codes. A search takes the best
``k * factor`` candidates by their (approximate) code scores and re-scores those from the stored
vectors. When ``k * factor`` covers the whole collection every vector is re-scored, so the ranking
is exact whatever the codes: this is what makes tiny collections and tiny embeddings (LangChain's
6-dimensional test embeddings, where 4-bit codes cannot separate near ties) rank exactly. Up to
``EXACT_ROWS`` vectors the exact pass costs less than a millisecond (``EXACT_ROWS * d`` flops);
above it, a fixed oversampling keeps search time proportional to ``k``, not to the collection.
"""

from __future__ import annotations

import math

EXACT_ROWS = 10_000  # collections up to this size are ranked exactly
OVERSAMPLE = 8.0  # re-rank factor above it


def rerank_factor(n: int, k: int, *, max_factor: float | None = None) -> float:
    """Re-rank factor for a top-``k`` search over ``n`` vectors (>= 1)."""
    if n <= EXACT_ROWS:
        factor = max(1.0, float(math.ceil(n / max(k, 1))))
    else:
        factor = OVERSAMPLE
    return min(factor, max_factor) if max_factor is not None else factor
