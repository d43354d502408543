"""Helpers shared by the index tests."""

from __future__ import annotations

import numpy as np

import vqdb

PRESET = "turbo-4"


def make_quantizer(dim: int):
    """The quantizer the index tests run on: the real ``turbo-4`` preset."""
    return vqdb.make_quantizer(PRESET, dim)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "ip", allowed=None):
    """(m, k) ids and float64 scores of exact search (ties broken by lower id), over ``allowed`` rows."""
    rows = np.arange(base.shape[0]) if allowed is None else np.flatnonzero(allowed)
    b = base[rows].astype(np.float64)
    q = queries.astype(np.float64)
    s = q @ b.T
    if metric == "l2sq":
        s = 2 * s - (b * b).sum(1)[None, :] - (q * q).sum(1)[:, None]
    order = np.lexsort((np.broadcast_to(rows, s.shape), -s), axis=1)[:, :k]
    return rows[order], np.take_along_axis(s, order, axis=1)
