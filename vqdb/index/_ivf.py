"""The IVF coarse partition: k-means centroids (faiss when installed), assignment and probing.

Only the partition is trained; the codes inside each list stay data-oblivious (the quantizer codes
the residual ``x - c_j`` from its list centroid). New vectors are assigned to their nearest centroid
(squared L2, which minimises the residual) and never trigger a retrain.
Lists are probed by ``2<q, c_j> - w ||c_j||^2`` (:data:`PROBE_METRIC`): nearest centroid first (w = 1,
the order vectors were assigned by, so a stored vector finds its own list at nprobe 1) for ``cos`` and
``l2sq``; for ``ip`` (maximum inner product, where nearest-centroid order is no better founded) "blend",
w = 0.5, half way to ``<q, c_j>`` (w = 0). Share of the true top-10 inside the probed lists, all dev
queries, unit vectors searched with ``metric="ip"``:
Fashion-MNIST (979 lists) nprobe 8/16: w=0 0.911/0.959, w=0.5 0.957/0.984, w=1 0.959/0.988 (centroid
norms vary; the IP order favours tight clusters the queries were not assigned to); WordNet-MiniLM (1360
lists) nprobe 128/256: w=0 0.907/0.954, w=0.5 0.914/0.958, w=1 0.903/0.952.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_TRAIN = 256  # never train on fewer vectors than this
POINTS_PER_LIST = 32  # need this many training vectors per list
SAMPLE_PER_LIST = 64  # k-means sample size cap per list (faiss default is 256; 64 is plenty)
SMALL_KMEANS = 200_000  # n * nlist below which plain NumPy k-means is used


PROBE_METRIC = {"ip": "blend", "cos": "l2sq", "l2sq": "l2sq"}  # index metric -> list ranking at search time
PROBE_NORM_WEIGHT = {"ip": 0.0, "blend": 0.5, "l2sq": 1.0}


def auto_nlist(n: int) -> int:
    """Number of lists for ``ivf=True``, chosen when the partition is trained on ``n`` vectors."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // POINTS_PER_LIST)))


def train_threshold(nlist: int | None) -> int:
    """Vectors needed before training a partition of ``nlist`` lists (``None``: automatic)."""
    return MIN_TRAIN if nlist is None else max(MIN_TRAIN, POINTS_PER_LIST * nlist)


def default_nprobe(nlist: int) -> int:
    return int(max(1, min(nlist, math.ceil(nlist / 16))))


@dataclass(frozen=True, eq=False)
class Coarse:
    """A trained partition. ``centroids`` (nlist, d) float32."""

    centroids: np.ndarray

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, x: np.ndarray) -> np.ndarray:
        """(n,) int32 nearest centroid (squared L2) of each row of ``x`` (n, d) float32."""
        c = self.centroids
        half_norms = 0.5 * np.einsum("ij,ij->i", c, c)
        out = np.empty(x.shape[0], dtype=np.int32)
        step = max(1, (1 << 22) // max(1, self.nlist))
        for s in range(0, x.shape[0], step):
            out[s : s + step] = np.argmax(x[s : s + step] @ c.T - half_norms, axis=1)
        return out

    def probe_scores(self, q: np.ndarray, metric: str) -> np.ndarray:
        """(m, nlist) float32: how promising each list is for each query (higher first); ``metric`` a key
        of :data:`PROBE_NORM_WEIGHT`."""
        return self.probe_from_ip(q @ self.centroids.T, metric)

    def probe_from_ip(self, ip: np.ndarray, metric: str) -> np.ndarray:
        """:meth:`probe_scores` from ``ip`` (m, nlist) = ``<q, c_j>``: ``2 ip - w ||c_j||^2`` (w = 0: ``ip``)."""
        w = PROBE_NORM_WEIGHT[metric]
        if w == 0.0:
            return ip
        c = self.centroids
        return 2 * ip - np.float32(w) * np.einsum("ij,ij->i", c, c)[None, :]


def kmeans(x: np.ndarray, nlist: int, *, seed: int = 0, niter: int = 15) -> np.ndarray:
    """(nlist, d) float32 centroids of ``x`` (n, d) float32, n >= nlist."""
    rng = np.random.default_rng(seed)
    if x.shape[0] > SAMPLE_PER_LIST * nlist:
        x = x[np.sort(rng.choice(x.shape[0], SAMPLE_PER_LIST * nlist, replace=False))]
    x = np.ascontiguousarray(x, dtype=np.float32)
    try:
        import faiss
    except ImportError:
        faiss = None
    # tiny problems: NumPy Lloyd is faster than faiss' thread start-up (and immune to OpenMP spinning)
    if faiss is not None and x.shape[0] * nlist > SMALL_KMEANS:
        km = faiss.Kmeans(
            x.shape[1],
            nlist,
            niter=niter,
            seed=int(seed) % (2**31),
            verbose=False,
            max_points_per_centroid=SAMPLE_PER_LIST,
            min_points_per_centroid=1,
        )
        km.train(x)
        return np.ascontiguousarray(km.centroids, dtype=np.float32)
    return _kmeans_numpy(x, nlist, rng, niter)


def _kmeans_numpy(x: np.ndarray, nlist: int, rng: np.random.Generator, niter: int) -> np.ndarray:
    """Plain Lloyd iterations (used only when faiss is not installed)."""
    c = x[rng.choice(x.shape[0], nlist, replace=False)].copy()
    for _ in range(niter):
        assign = Coarse(c).assign(x)
        order = np.argsort(assign, kind="stable")
        counts = np.bincount(assign, minlength=nlist)
        present = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
        c[present] = (
            np.add.reduceat(x[order].astype(np.float64), starts, axis=0) / counts[present, None]
        ).astype(np.float32)
        empty = counts == 0
        if empty.any():  # re-seed empty lists on random points
            c[empty] = x[rng.choice(x.shape[0], int(empty.sum()), replace=False)]
    return c
