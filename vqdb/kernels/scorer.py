"""The score formula, in one place: how an estimate of <q, x - c> becomes the score a search ranks by.

Every scan path -- the quantizer's float scores (small segments, filtered subsets, IVF without numba), the
fast-scan / popcount / BLAS kernels and their exact re-score -- ranks by

    score[i, v] = alpha * (est[i, v] + cterm[i, list(v) + 1]) + beta[v] + qconst[i]

=========  ===================================================================================
``est``    the quantizer's estimate of <q_i, x_v - c> from the codes alone (LUT sums times the
           per-vector factors; the kernels' re-score, :mod:`vqdb.kernels.fastscan.rescore`)
``cterm``  (m, 1 + L) exact <q_i, c> of the centre the codes are relative to: column 0 the quantizer's
           fitted centre (rows outside any IVF list), column 1 + j IVF list j's centroid
``beta``   (N,) per-vector constant: ``alpha * add[v]`` (the quantizer's exact per-vector additive
           term, e.g. the centred-query estimator's <c, r_v>; 0 without one), ``- ||x_v||^2`` for
           ``l2sq`` (the exact squared norm kept in each code), and ``-inf`` for a row that must not
           be returned (padding, deleted, filtered out)
``qconst`` (m,) ``-||q_i||^2`` for ``l2sq``, else 0
``alpha``  2 for ``l2sq`` (``-||q - x||^2 = 2<q, x> - ||x||^2 - ||q||^2``), else 1
=========  ===================================================================================

A query shift (an estimator that builds its LUTs from ``q - c``) lives in the quantizer's ``prepare``;
the per-vector additive term is declared by ``scan_parts()["additive"]`` (the side float holding it) and
enters here only, through :meth:`ScoreMap.beta`. Scores are higher-is-better for every metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMALL_BATCH = 8  # queries up to which the query path's products avoid BLAS (see small_matmul)


def small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for the query path's small products (centre terms, IVF probe scores). Up to
    :data:`SMALL_BATCH` rows of ``a`` it is a plain loop (``einsum``) rather than a BLAS call, which could
    wake BLAS's worker threads; searches never pin BLAS process-wide."""
    if a.shape[0] <= SMALL_BATCH:
        return np.einsum("ij,jk->ik", a, b) if b.ndim == 2 else np.einsum("ij,j->i", a, b)
    return a @ b


@dataclass(frozen=True)
class ScoreMap:
    """The affine map of one metric (``"ip"``; ``"cos"`` is scored as ``"ip"``; ``"l2sq"``)."""

    metric: str

    @property
    def l2(self) -> bool:
        return self.metric == "l2sq"

    @property
    def alpha(self) -> np.float32:
        return np.float32(2.0 if self.l2 else 1.0)

    def qconst(self, q: np.ndarray) -> np.ndarray:
        """(m,) float32 per-query constant of (m, d) float32 queries."""
        if self.l2:
            return -np.einsum("ij,ij->i", q, q).astype(np.float32)
        return np.zeros(q.shape[0], np.float32)

    @staticmethod
    def centre_terms(q: np.ndarray, centre: np.ndarray | None, centroids_ip: np.ndarray | None) -> np.ndarray:
        """(m, 1 + L) float32 ``cterm``: column 0 ``<q, centre>`` (0 without a fitted centre), then
        ``centroids_ip`` (m, L) = ``q @ centroids.T`` of an IVF partition (None: no partition)."""
        first = np.zeros((q.shape[0], 1), np.float32) if centre is None else small_matmul(q, centre)[:, None]
        if centroids_ip is None:  # no partition: the one column (no stacking)
            return np.ascontiguousarray(first, dtype=np.float32)
        return np.ascontiguousarray(np.hstack([first, centroids_ip]), dtype=np.float32)

    def beta(self, sq: np.ndarray, add: np.ndarray | None, valid: np.ndarray | None = None) -> np.ndarray:
        """(N,) float32 per-vector constant from the exact squared norms ``sq`` (N,), the quantizer's
        additive term ``add`` (N,) or None, and ``valid`` (N,) bool (False -> -inf) or None."""
        if add is not None:
            beta = self.alpha * add - (sq if self.l2 else np.float32(0.0))
        else:
            beta = -sq if self.l2 else np.zeros(sq.shape[0], np.float32)
        beta = np.asarray(beta, dtype=np.float32)
        if valid is not None:
            beta = np.where(valid, beta, np.float32(-np.inf)).astype(np.float32)
        return np.ascontiguousarray(beta)

    def apply(
        self, est: np.ndarray, cterm: np.ndarray, lists: np.ndarray, sq: np.ndarray, qconst: np.ndarray
    ) -> np.ndarray:
        """Float path: (m, b) scores from the quantizer's float estimates ``est`` (m, b) (its ``score``,
        which already includes its additive term), ``cterm`` (m, 1 + L), the codes' IVF ``lists`` (b,)
        (-1: none), their exact ``sq`` (b,) and ``qconst`` (m,)."""
        s = est
        if lists.size and lists[0] == lists[-1] and np.all(lists == lists[0]):
            s = s + cterm[:, lists[0] + 1][:, None]
        elif lists.size:
            s = s + cterm[:, lists + 1]
        if self.l2:
            s = self.alpha * s - sq[None, :] + qconst[:, None]
        return s
