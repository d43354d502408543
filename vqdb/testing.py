"""Public test helpers: recall measures used by tests and benchmarks alike."""

from __future__ import annotations

import numpy as np


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |found[:, :k] ∩ truth[:, :k]| / k (the usual ANN "recall@k")."""
    found = np.asarray(found)[:, :k]
    truth = np.asarray(truth)[:, :k]
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / (k * truth.shape[0])


def recall_1_at(found: np.ndarray, truth: np.ndarray, at: int) -> float:
    """Fraction of queries whose true nearest neighbour appears in found[:, :at] ("recall@1@at")."""
    found = np.asarray(found)[:, :at]
    return float(np.mean([t in f for f, t in zip(found, np.asarray(truth)[:, 0])]))
