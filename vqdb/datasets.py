"""Real data sets: the small WordNet sample shipped in the package, and the full sets in ``../shared/data``.

All loaders return float32 vectors. Ground truth, when computed here, is exact (float64 brute force).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field

import numpy as np

from . import envs

PACKAGE_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@dataclass
class Dataset:
    """A base set, queries, and exact ground truth (ids best first)."""

    name: str
    metric: str  # "ip" or "l2sq"
    base: np.ndarray  # (n, d) float32
    queries: np.ndarray  # (m, d) float32
    gt_ids: np.ndarray  # (m, >=10) int64, exact neighbours best first
    texts: list[str] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


def exact_neighbours(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
    """(m, k) int64 exact top-k ids, ties broken by lower id; float64 scoring."""
    b = base.astype(np.float64)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for s in range(0, queries.shape[0], 256):
        q = queries[s : s + 256].astype(np.float64)
        scores = q @ b.T
        if metric == "l2sq":
            scores = 2 * scores - (b * b).sum(1)[None, :]
        order = np.lexsort((np.broadcast_to(np.arange(b.shape[0]), scores.shape), -scores), axis=1)
        out[s : s + 256] = order[:, :k]
    return out


def wordnet_sample() -> Dataset:
    """5,000 real WordNet passages with all-MiniLM-L6-v2 vectors (384-d, unit norm) and 400 word queries.

    Shipped in the package (``vqdb/data``; WordNet 3.0 licence alongside). ``extra["relevant"]`` lists,
    per query, the passages that define the query word.
    """
    z = np.load(os.path.join(PACKAGE_DATA, "wordnet_minilm_sample.npz"))
    base = z["base"].astype(np.float32)
    queries = z["queries"].astype(np.float32)
    with gzip.open(
        os.path.join(PACKAGE_DATA, "wordnet_passages_sample.jsonl.gz"), "rt", encoding="utf-8"
    ) as f:
        texts = [json.loads(line)["text"] for line in f]
    with open(os.path.join(PACKAGE_DATA, "wordnet_queries_sample.jsonl"), encoding="utf-8") as f:
        qinfo = [json.loads(line) for line in f]
    gt = exact_neighbours(base, queries, 100)
    return Dataset(
        "wordnet-sample",
        "ip",
        base,
        queries,
        gt,
        texts,
        {"query_texts": [q["text"] for q in qinfo], "relevant": [q["relevant"] for q in qinfo]},
    )


def shared_path(*parts: str) -> str | None:
    root = envs.shared_data_dir()
    if root is None:
        return None
    p = os.path.join(root, *parts)
    return p if os.path.exists(p) else None


def _wordnet(folder: str, queries: str) -> Dataset | None:
    root = shared_path(folder)
    if root is None:
        return None
    base = np.load(os.path.join(root, "base.f16.npy")).astype(np.float32)
    q = np.load(os.path.join(root, f"queries_dev_{queries}.f32.npy"))
    gt = np.load(os.path.join(root, f"gt_dev_{queries}.ids.npy")).astype(np.int64)
    return Dataset(f"{folder}-{queries}", "ip", base, q, gt)


def wordnet_minilm(queries: str = "words") -> Dataset | None:
    """The full 115,659 x 384 WordNet/MiniLM set with dev queries, or None when ../shared/data is absent."""
    return _wordnet("wordnet-minilm384", queries)


def wordnet_mpnet(queries: str = "words") -> Dataset | None:
    """5,000 x 768 all-mpnet-base-v2 WordNet subset, or None when absent."""
    return _wordnet("wordnet-mpnet768", queries)


def fashion_mnist(metric: str = "l2sq") -> Dataset | None:
    """Fashion-MNIST 60,000 x 784. ``metric="l2sq"`` as shipped; ``"cos"``: rows normalised, exact cosine ground truth."""
    root = shared_path("fashion-mnist-784")
    if root is None:
        return None
    base = np.load(os.path.join(root, "base.u8.npz"))["base"].astype(np.float32)
    q = np.load(os.path.join(root, "queries_dev.u8.npy")).astype(np.float32)
    if metric == "l2sq":
        gt = np.load(os.path.join(root, "gt_dev.ids.npy")).astype(np.int64)
        return Dataset("fashion-mnist-784-l2sq", "l2sq", base, q, gt)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Dataset("fashion-mnist-784-cos", "ip", base, q, exact_neighbours(base, q, 100))
