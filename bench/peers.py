"""The peers of the quantizer benchmark: FAISS flat-code indexes and rabitqlib, as uniform ``Method`` records.

Bytes per vector count everything each method stores per vector for scoring (codes, norms, correction
factors), but not ids: a flat FAISS index has implicit ids, and the 4-byte id that rabitqlib's IVF layout
keeps next to every code is left out (it is index bookkeeping, not part of the code). rabitqlib's
per-vector bytes are measured from its own saved files, not assumed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Built:
    """A built method: an opaque handle plus its timings."""

    handle: Any
    train_s: float
    add_s: float
    setup_s: float = 0.0  # one-time, size-independent setup (vqdb: rotation + codebooks)
    bytes_per_vector: float | None = None  # when only known once built (vqdb's code_size)


@dataclass
class Method:
    """One configuration of one library, at a fixed number of bytes per vector."""

    name: str  # e.g. "faiss-PQ48x8"
    family: str  # e.g. "faiss-PQ" (one curve per family in the plot)
    library: str  # "vqdb", "faiss", "rabitqlib"
    bytes_per_vector: float  # nan when only known after build (Built.bytes_per_vector)
    build: Callable[[np.ndarray, str], Built]  # (base, metric) -> Built
    search: Callable[[Any, np.ndarray, int, str], np.ndarray]  # (handle, queries, k, metric) -> (m, k) ids
    encode_timing: str = "train+add"  # what encode vectors/s is measured over
    params: dict = field(default_factory=dict)


def divisors(n: int) -> list[int]:
    return [i for i in range(1, n + 1) if n % i == 0]


def byte_targets(d: int, bits=(1, 2, 3, 4), slack: int = 8) -> list[int]:
    """Byte budgets matching vqdb's b-bit codes (b*d/8 plus up to ``slack`` bytes of side data)."""
    return [int(b * d / 8) + slack for b in bits]


# ---- FAISS ---------------------------------------------------------------------------------------
def _faiss_metric(metric: str):
    import faiss

    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def _faiss_build(make_index: Callable[[int, Any], Any], *, needs_train: bool = True):
    def build(base: np.ndarray, metric: str) -> Built:
        from .common import Stopwatch

        index = make_index(base.shape[1], _faiss_metric(metric))
        with Stopwatch() as t_train:
            if needs_train:
                index.train(base)
        with Stopwatch() as t_add:
            index.add(base)
        return Built(index, t_train.s, t_add.s)

    return build


def _faiss_search(params_factory: Callable[[], Any] | None = None):
    def search(index, queries: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
        if params_factory is None:
            _, ids = index.search(queries, k)
        else:
            _, ids = index.search(queries, k, params=params_factory())
        return ids.astype(np.int64)

    return search


PQ_TRAIN_SAMPLE = 16384


def _pq_params(index):
    """PQ training sample: at most 16,384 base vectors (FAISS's default cap is 256 per centroid, 65,536 for
    8-bit PQ, which takes minutes per configuration on 2 shared cores; on WordNet PQ48x8 the full default
    sample gained +0.0035 recall@10 over 16,384). Also silences the "provide at least 39*k points"
    warning on the 5,000-vector base."""
    ks = 1 << index.pq.nbits
    index.pq.cp.max_points_per_centroid = min(256, PQ_TRAIN_SAMPLE // ks)
    index.pq.cp.min_points_per_centroid = 1
    return index


def _rotated(index, d: int):
    """``IndexPreTransform(RandomRotationMatrix(d, d), index)`` (FAISS's wrapper keeps both referenced)."""
    import faiss

    return faiss.IndexPreTransform(faiss.RandomRotationMatrix(d, d), index)


def faiss_methods(d: int, quick: bool = False) -> list[Method]:
    """FAISS SQ4/SQ8, PQ (8-bit) and PQFastScan (4-bit) at vqdb's byte budgets, RaBitQ 1-4 bits, LSH."""
    import faiss

    out: list[Method] = []
    sq = [("SQ4", faiss.ScalarQuantizer.QT_4bit), ("SQ8", faiss.ScalarQuantizer.QT_8bit)]
    for name, qt in sq:
        probe = faiss.IndexScalarQuantizer(d, qt)
        out.append(
            Method(
                f"faiss-{name}",
                "faiss-SQ",
                "faiss",
                probe.code_size,
                _faiss_build(lambda dd, m, qt=qt: faiss.IndexScalarQuantizer(dd, qt, m)),
                _faiss_search(),
                "add",
                {"qtype": name},
            )
        )

    # PQ training dominates the run time (minutes per M at 115k); quick mode keeps only PQFastScan
    bits = (1, 2) if quick else (1, 2, 4)
    pq_ms = [] if quick else sorted({max(x for x in divisors(d) if x <= t) for t in byte_targets(d, bits)})
    for m in pq_ms:
        out.append(
            Method(
                f"faiss-PQ{m}x8",
                "faiss-PQ",
                "faiss",
                m,
                _faiss_build(lambda dd, mt, m=m: _pq_params(faiss.IndexPQ(dd, m, 8, mt))),
                _faiss_search(),
                "train+add",
                {"M": m, "nbits": 8},
            )
        )
    fs_ms = sorted({max(x for x in divisors(d) if (x + 1) // 2 <= t) for t in byte_targets(d, bits)})
    for m in fs_ms:
        probe = faiss.IndexPQFastScan(d, m, 4)
        out.append(
            Method(
                f"faiss-PQFastScan{m}x4",
                "faiss-PQFastScan",
                "faiss",
                probe.code_size,
                _faiss_build(lambda dd, mt, m=m: _pq_params(faiss.IndexPQFastScan(dd, m, 4, mt))),
                _faiss_search(),
                "train+add",
                {"M": m, "nbits": 4},
            )
        )

    # FAISS's RaBitQ indexes do not rotate by themselves; RaBitQ's guarantees assume a random rotation,
    # and without one Fashion-MNIST 1-bit recall@10 drops from 0.78 to 0.51. So: "RR,RaBitQ".
    rb_bits = (1, 2, 4) if quick else (1, 2, 3, 4)
    for b in rb_bits:
        probe = faiss.IndexRaBitQ(d, faiss.METRIC_L2, b)

        def make(dd, mt, b=b):
            ix = faiss.IndexRaBitQ(dd, mt, b)
            ix.qb = 8  # 8-bit query quantization: the most accurate setting (default 4)
            return _rotated(ix, dd)

        out.append(
            Method(
                f"faiss-RR+RaBitQ{b}",
                "faiss-RaBitQ",
                "faiss",
                probe.code_size,
                _faiss_build(make),
                _faiss_search(),
                "train+add",
                {"nb_bits": b, "qb": 8, "rotation": "RR"},
            )
        )
    for b in (1,):  # same codes as RaBitQ (recall alike); its speed is bench/search_speed.py's subject
        probe = faiss.IndexRaBitQFastScan(d, faiss.METRIC_L2, 32, b)
        out.append(
            Method(
                f"faiss-RR+RaBitQFastScan{b}",
                "faiss-RaBitQFastScan",
                "faiss",
                probe.code_size,
                _faiss_build(lambda dd, mt, b=b: _rotated(faiss.IndexRaBitQFastScan(dd, mt, 32, b), dd)),
                _faiss_search(),
                "train+add",
                {"nb_bits": b, "qb": 8, "rotation": "RR"},
            )
        )
    for mult in (1,):
        nbits = mult * d
        out.append(
            Method(
                f"faiss-LSH{nbits}",
                "faiss-LSH",
                "faiss",
                (nbits + 7) // 8,
                _faiss_build(lambda dd, mt, nbits=nbits: faiss.IndexLSH(dd, nbits, True, True)),
                _faiss_search(),
                "train+add",
                {"nbits": nbits, "rotate": True, "train_thresholds": True},
            )
        )
    return out


# ---- rabitqlib -----------------------------------------------------------------------------------
_RABITQ_BYTES: dict[tuple[int, int], float] = {}


def rabitqlib_bytes(d: int, nbits: int) -> float:
    """Bytes per vector of a rabitqlib IVF index at ``nbits`` (codes + all factors, id excluded).

    Measured as the slope of the saved file size between 64 and 128 vectors (multiples of its
    32-vector FastScan batches), minus the 4-byte id.
    """
    key = (d, nbits)
    if key not in _RABITQ_BYTES:
        import rabitqlib

        rng = np.random.default_rng(0)
        sizes = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in (64, 128):
                x = rng.standard_normal((n, d)).astype(np.float32)
                ix = rabitqlib.IvfIndex(d, n, 1, nbits, "l2")
                ix.build(x, x.mean(0, keepdims=True), np.zeros(n, np.uint32))
                path = os.path.join(tmp, f"{n}.idx")
                ix.save(path)
                sizes.append(os.path.getsize(path))
        _RABITQ_BYTES[key] = (sizes[1] - sizes[0]) / 64 - 4
    return _RABITQ_BYTES[key]


def rabitqlib_methods(d: int, threads: int, quick: bool = False) -> list[Method]:
    """rabitqlib IVF-RaBitQ with one cluster (centroid = the base mean) = a flat RaBitQ scan; 1-6 total bits
    (0-5 extra bits; the library takes up to 9)."""
    try:
        import rabitqlib  # noqa: F401
    except ImportError:
        return []
    out = []
    for nbits in (1, 3, 5) if quick else range(1, 7):  # 7-9 bits lie past every budget of issue 2

        def build(base: np.ndarray, metric: str, nbits=nbits) -> Built:
            import rabitqlib

            from .common import Stopwatch

            n, dd = base.shape
            with Stopwatch() as t_train:
                centre = base.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
            with Stopwatch() as t_add:
                ix = rabitqlib.IvfIndex(dd, n, 1, nbits, "ip" if metric == "ip" else "l2")
                ix.build(base, centre, np.zeros(n, np.uint32), num_threads=threads)
            return Built(ix, t_train.s, t_add.s)

        def search(ix, queries: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
            ids, _ = ix.search(queries, k, 1, num_threads=threads)
            ids = np.asarray(ids).astype(np.int64)
            ids[ids >= 2**32 - 1] = -1
            return ids

        out.append(
            Method(
                f"rabitqlib-{nbits}bit",
                "rabitqlib",
                "rabitqlib",
                rabitqlib_bytes(d, nbits),
                build,
                search,
                "train+add",
                {"nbits": nbits, "ex_bits": nbits - 1, "clusters": 1, "nprobe": 1},
            )
        )
    return out
