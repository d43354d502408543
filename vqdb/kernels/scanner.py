"""Fast top-k scans over a quantizer's codes: per-segment layout, per-call path choice, exactness.

A :class:`FastScanner` wraps a quantizer that exposes ``scan_parts()`` (TurboQuant at 1–4 bits,
``prod`` included, and QJL). For a run of codes (a segment: ``codes`` (n, code_size) uint8 and its
IVF list numbers ``lists`` (n,) int32, ascending) it builds a :class:`Layout` once — 4-bit slots
re-laid out in blocks of 32 vectors per list (FAISS FastScan style), per-vector factors, squared norms
— cached on the codes array (a new codes array, e.g. after compaction, gets a new layout).

:meth:`FastScanner.topk` returns the best ``k`` rows of each query by one of three paths:

``fastscan``
    uint8 LUTs, in-register shuffles, uint16 accumulators (:mod:`vqdb.kernels.fastscan`); every
    vector whose upper bound reaches the k-th best lower bound is re-scored with the float LUT path,
    so the ranking is the float path's (exact up to float rounding, see ``margin``).
``blas``
    decode tiles of codes to float32 once and multiply by all queries (large batches, where SGEMM is
    faster than the shuffles; on AVX2 machines without AVX-512 it rarely is).
``popcount``
    1-bit codes only: queries quantized to bit-planes, AND + popcount, then the same exact re-score.

``path="auto"`` picks by persisted thresholds (batch size ``m``, bits; IVF or flat) measured by
``bench/kernels_micro.py --calibrate`` and stored in ``fastscan_costs.json`` next to this module.
Scores are "higher is better": ``ip`` = estimated inner product, ``l2sq`` = ``2<q,x> - ||x||² - ||q||²``
with the exact ``||x||²`` of the code (the index's conventions), plus a per-list exact centre term.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np

from .. import envs
from ..errors import InvalidInputError
from . import get_ops, numpy_path_active
from . import reference_fastscan as rf
from .scorer import ScoreMap

MIN_ROWS = 2048  # smaller segments are scored by the quantizer directly (no layout)
QMAX = 4  # columns of the item arrays (the kernels' maximum)
QGROUP = 2  # queries sharing one pass over a block (4 spills registers on AVX2)
TILE_BLOCKS = 64  # blas path: blocks decoded per tile
L2_CHUNK_BYTES = 96 << 10  # batches: code bytes per work item (stays in L2 across query groups)
HEAP_BUDGET = 1 << 22  # heap entries (pairs x k) per kernel call (queries are split to stay below)
TASKS = 64  # parallel tasks per kernel call
MAX_PAIRS = 1 << 16  # flat scans: queries per kernel call bounded by this many pairs
MAX_ITEMS = 1 << 18  # flat scans: work items per kernel call (queries are split to stay below)
FLAT_QTASK = 64  # flat scans: queries per task (their LUTs stay in L2 while each chunk passes them)
BITPLANES = 8  # popcount path: bits of the quantized query
PATHS = ("auto", "fastscan", "blas", "popcount")
COSTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastscan_costs.json")

# Path thresholds: the smallest batch (queries per call) at which the BLAS path beats the fast-scan
# path, per bit width (None: never, on the machine measured), and the same for the popcount path of
# 1-bit codes. ``bench/kernels_micro.py --calibrate`` measures them and writes COSTS_FILE.
DEFAULT_COSTS = {
    "blas_min_queries": {"1": None, "2": None, "3": None, "4": None},
    "popcount_min_queries": None,
}


@dataclass(frozen=True)
class ScanConfig:
    """How a :class:`FastScanner` cuts its work (the knobs tests and benchmarks vary; defaults measured on the
    2-core AVX2/AVX-512 dev machine). Pass one to ``FastScanner(quantizer, config=...)``."""

    chunk_blocks: int = 64  # blocks per work item of one query (64 * 32 = 2048 vectors); batches: L2-sized
    ivf_order: str = "block"  # IVF work order: "block" (blocks of queries, list-major inside), "query"
    # (FAISS-style: each query walks its lists) or "list" (all queries grouped by list, a heap per pair)
    ivf_qblock: int = (
        64  # "block": queries per block (their LUTs stay in L2; each probed chunk is loaded once)
    )
    ivf_qgroup: int = (
        4  # "block": queries per work item (one item's pairs share the chunk in L1; 2 -> 4: +6%)
    )
    ivf_min_blocks: int = 8  # "block": at least this many blocks per call when there are enough queries
    # pending candidates per heap before a re-score makes room (None: ``fastscan.pending_slots(k)``; >= 64)
    pending_slots: int | None = None

    def __post_init__(self):
        if self.ivf_order not in IVF_ORDERS:
            raise InvalidInputError(f"ivf_order must be one of {IVF_ORDERS}; got {self.ivf_order!r}")
        for name in ("chunk_blocks", "ivf_qblock", "ivf_min_blocks"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be >= 1")
        if not 1 <= self.ivf_qgroup <= QMAX:
            raise InvalidInputError(f"ivf_qgroup must be in 1..{QMAX}")
        if self.pending_slots is not None and int(self.pending_slots) < 64:
            raise InvalidInputError("pending_slots must be >= 64 (or None)")

    def slots_for(self, k: int) -> int:
        """Pending candidates per heap of a top-``k`` scan."""
        from .fastscan.scan import pending_slots

        return int(self.pending_slots) if self.pending_slots is not None else pending_slots(k)


IVF_ORDERS = ("block", "query", "list")
DEFAULT_CONFIG = ScanConfig()


PAR_MIN_NS = 4e6  # kernel calls estimated below this run on one thread (a parallel region's
STEP_NS = 3.0  # fork/join costs 0.01-0.2 ms, and ms when the other cores are busy)
LUT_NS = 100.0  # per query and slot


_SERIAL = threading.local()  # .on: this thread already runs its kernels single-threaded


@contextlib.contextmanager
def _threads_for(work_ns: float):
    """Run small kernel calls on the calling thread only (numba's thread count is per calling thread)."""
    if work_ns >= PAR_MIN_NS or getattr(_SERIAL, "on", False):
        yield
        return
    import numba

    old = numba.get_num_threads()
    if old == 1:
        yield
        return
    numba.set_num_threads(1)
    _SERIAL.on = True
    try:
        yield
    finally:
        _SERIAL.on = False
        numba.set_num_threads(old)


_FASTSCAN: list = []  # the kernels' module once imported (an import statement per call costs ~1 µs)


def _kernels():
    if not _FASTSCAN:
        from . import fastscan

        _FASTSCAN.append(fastscan)
    return _FASTSCAN[0]


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def _task_split(n_items: int) -> np.ndarray:
    """(T + 1,) int64 task_ptr: ``n_items`` work items cut into up to :data:`TASKS` equal runs."""
    t = max(1, min(n_items, TASKS))
    return (np.arange(t + 1, dtype=np.int64) * n_items) // t


def _serial(work_ns: float) -> bool:
    """Run a kernel call of about ``work_ns`` on the calling thread (its serial build): one thread, or too
    little work to pay for waking the others (a parallel region costs 0.01-0.2 ms, ms when cores are busy)."""
    return work_ns < PAR_MIN_NS or _threads() == 1


# ------------------------------------------------------------------------------------------------
# cost model
# ------------------------------------------------------------------------------------------------
_COSTS: dict | None = None


def costs() -> dict:
    """Path thresholds: the calibrated file when present, else :data:`DEFAULT_COSTS`."""
    global _COSTS
    if _COSTS is None:
        c = json.loads(json.dumps(DEFAULT_COSTS))
        try:
            with open(COSTS_FILE) as f:
                saved = json.load(f)
            c["blas_min_queries"].update(saved.get("blas_min_queries", {}))
            c["popcount_min_queries"] = saved.get("popcount_min_queries")
        except (OSError, ValueError, AttributeError):
            pass
        _COSTS = c
    return _COSTS


# ------------------------------------------------------------------------------------------------
# layout
# ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Layout:
    """Codes of one segment re-laid out for the kernels (positions = padded rows, 32 per block)."""

    blocks: np.ndarray  # (nb * S * 32,) uint8
    rows: np.ndarray  # (N, S) uint8 the same slots in row order (re-scoring reads one row per candidate)
    nsteps: int  # S: 32-byte steps per block
    factors: np.ndarray  # (P, N) float32: side factor * multiplier (0 on padding)
    sq: np.ndarray  # (N,) float32 exact ||x||^2
    pad_beta: np.ndarray  # (N,) float32: 0, -inf on padding
    row_of: np.ndarray  # (N,) int64 segment row, -1 on padding
    pos_of: np.ndarray  # (n,) int64 position of each segment row
    block_list: np.ndarray  # (nb,) int32 list number of each block (-1: outside IVF lists)
    list_ids: np.ndarray  # (L,) int64 list numbers present, ascending
    list_b0: np.ndarray  # (L,) int64 first block of each list
    list_b1: np.ndarray  # (L,) int64 end block
    fmin: np.ndarray | None = None  # (P, nb) float32 smallest factor of each block
    fmax: np.ndarray | None = None  # (P, nb) float32 largest factor of each block
    sqmin: np.ndarray | None = None  # (nb,) float32 smallest ||x||^2 of each block
    sqmax: np.ndarray | None = None  # (nb,) float32 largest ||x||^2 of each block
    add: np.ndarray | None = (
        None  # (N,) float32 per-vector additive term of the estimate (None: none; 0 on padding)
    )
    words: np.ndarray | None = None  # (N, W) uint64 sign words (single-part 1-bit codes)
    zeros: np.ndarray | None = None  # (N,) float32 zeros
    zeros_nb: np.ndarray | None = None  # (nb,) float32 zeros
    items: dict = field(default_factory=dict, repr=False)  # cached flat work items
    _list_pos: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def n_blocks(self) -> int:
        return int(self.block_list.shape[0])

    @property
    def list_pos(self) -> np.ndarray:
        """(max list + 2,) int64: index of list ``l`` in ``list_ids`` at ``[l + 1]``, -1 when absent."""
        if self._list_pos is None:
            size = int(self.list_ids.max()) + 2 if len(self.list_ids) else 1
            pos = np.full(max(size, 1), -1, dtype=np.int64)
            pos[self.list_ids + 1] = np.arange(len(self.list_ids), dtype=np.int64)
            self._list_pos = pos
        return self._list_pos

    @property
    def n_positions(self) -> int:
        return 32 * self.n_blocks

    @property
    def nbytes(self) -> int:
        arrs = (
            self.blocks,
            self.rows,
            self.factors,
            self.sq,
            self.pad_beta,
            self.row_of,
            self.pos_of,
            self.block_list,
        )
        return int(sum(a.nbytes for a in arrs) + (0 if self.words is None else self.words.nbytes))


@dataclass(eq=False)
class Prepared:
    """Per-call query data: LUTs, bounds, the affine map of the metric."""

    m: int
    luts: np.ndarray  # (m * S * 32,) uint8
    inv: np.ndarray  # (m, P) float32
    off: np.ndarray  # (m, P) float32
    err: np.ndarray  # (m, P) float32 (margin used)
    fluts: np.ndarray  # (m, 2S, 16) float32
    qcat: np.ndarray | None  # (m, K) float32 (blas), built lazily
    parts_q: list  # per part (m, k) float32 rotated queries
    alpha: np.float32
    qconst: np.ndarray  # (m,) float32
    cterm: np.ndarray  # (m, L+1) float32
    l2: bool
    smap: ScoreMap  # the metric's score formula (vqdb.kernels.scorer)
    pq: object = None  # the quantizer's PreparedQueries (float path for small segments)


class FastScanner:
    """Fast scans for one quantizer (see the module docstring).

    Parameters
    ----------
    quantizer : Quantizer with ``scan_parts()``
    config : ScanConfig, optional
        How the work is cut (:class:`ScanConfig`; default :data:`DEFAULT_CONFIG`).
    margin : {"exact", float}
        ``"exact"`` (default): candidates are selected with the rigorous bound of the LUT rounding, so
        the result is the float LUT path's top-k (up to float32 rounding of the scores). A float ``z``
        uses ``z`` standard deviations of the rounding error instead (fewer re-scored candidates, a
        tiny probability of a different k-th neighbour).
    """

    def __init__(self, quantizer, *, margin="exact", config: ScanConfig | None = None):
        spec = quantizer.scan_parts()
        self.quantizer = quantizer
        self.config = DEFAULT_CONFIG if config is None else config
        self.parts = spec["parts"]
        self.side_offset = int(spec["side_offset"])
        self.n_side = int(spec["n_side"])
        # the quantizer's per-vector additive term (a side float; e.g. TurboQuant's centred-query β), or None
        self.additive = spec.get("additive")
        self.margin = margin
        self.slots = [rf.slots_per_part(p["k"], p["bits"]) for p in self.parts]
        self.slice_steps = np.concatenate([[0], np.cumsum([s // 2 for s in self.slots])]).astype(np.int64)
        self.nsteps = int(self.slice_steps[-1])
        # kernel parts ("groups"): runs of consecutive parts sharing one per-vector factor (e.g. the bit-width
        # slices of a PCA block) are scanned as one part: one LUT scale, one accumulator pass, one bound
        self.group_of = self._plan_groups()
        self.n_groups = int(self.group_of[-1]) + 1 if len(self.parts) else 0
        first = np.searchsorted(self.group_of, np.arange(self.n_groups + 1))
        self.part_steps = self.slice_steps[first].astype(np.int64)  # (G+1,) step bounds of the kernel parts
        self.group_first = first[:-1].astype(np.int64)  # first part of each group
        self.part_bits = np.array([p["bits"] for p in self.parts], dtype=np.int64)
        self._widest_bits = str(int(self.part_bits.max())) if self.part_bits.size else "0"  # choose()'s key
        vals = np.zeros((len(self.parts), 16), dtype=np.float32)
        for i, p in enumerate(self.parts):
            v = np.asarray(p["values"], dtype=np.float32)
            vals[i, : v.size] = v
        self.values = vals
        self.values64 = [np.asarray(p["values"], dtype=np.float32).astype(np.float64) for p in self.parts]
        self.coords = int(sum(s * rf.coords_per_slot(p["bits"]) for s, p in zip(self.slots, self.parts)))
        self.one_bit = len(self.parts) == 1 and self.parts[0]["bits"] == 1
        self._layouts: dict[int, tuple] = {}  # id(codes) -> (weakref to codes, Layout)
        self._lock = threading.Lock()
        self.last = {}  # diagnostics of the last call: path, candidates per query

    def _plan_groups(self) -> np.ndarray:
        """(P,) kernel part of each quantizer part.

        Only consecutive parts with the same factor can merge. A merged group shares one LUT scale, set by
        its widest slot, so its rounding bound grows with (slots x widest range); each extra group costs an
        accumulator flush and a bound term per block. Measured on WordNet (turbo-pca-1: 4/3/2/1-bit
        slices), two groups -- the widest slice alone, the rest together -- beat one group (1.5x: half the
        candidates) and one group per slice (1.5x: fewer flushes). Rule: split a run of mergeable parts once,
        where the estimated bound Σ_g slots_g · range_g drops most, when it at least halves it.
        """
        P = len(self.parts)
        out = np.zeros(P, dtype=np.int64)
        if P == 0:
            return out
        rng = []
        for p in self.parts:  # typical slot range: |q_j| ~ rms(values) in the coded basis
            v = np.asarray(p["values"], dtype=np.float64)
            rng.append(rf.coords_per_slot(p["bits"]) * np.sqrt(np.mean(v * v)) * (v.max() - v.min()))
        rng = np.asarray(rng)
        slots = np.asarray(self.slots, dtype=np.float64)

        def cost(a, b):
            return slots[a:b].sum() * rng[a:b].max()

        g, i = 0, 0
        while i < P:
            j = i + 1
            while j < P and (self.parts[j]["side"], self.parts[j]["mult"]) == (
                self.parts[i]["side"],
                self.parts[i]["mult"],
            ):
                j += 1
            whole = cost(i, j)
            best, cut = whole, None
            for c in range(i + 1, j):
                if cost(i, c) + cost(c, j) < best:
                    best, cut = cost(i, c) + cost(c, j), c
            out[i:j] = g
            if cut is not None and best <= 0.5 * whole:
                out[cut:j] = g + 1
                g += 1
            g += 1
            i = j
        return out

    @staticmethod
    def supports(quantizer) -> bool:
        fn = getattr(quantizer, "scan_parts", None)
        if fn is None:
            return False
        try:
            parts = fn()["parts"]
        except Exception:  # noqa: BLE001 - a quantizer that cannot describe itself is not supported
            return False
        return bool(parts) and all(p["bits"] in rf.FAST_BITS for p in parts)

    # ---- layout --------------------------------------------------------------------------------
    def layout(self, codes: np.ndarray, lists: np.ndarray | None = None) -> Layout:
        """The (cached) layout of ``codes`` (n, code_size) uint8 with list numbers ``lists`` (ascending)."""
        key = id(codes)
        hit = self._layouts.get(key)
        if hit is not None and hit[0]() is codes:
            return hit[1]
        lay = self._build(codes, lists)
        with self._lock:
            self._layouts[key] = (weakref.ref(codes), lay)
            weakref.finalize(codes, self._layouts.pop, key, None)
        return lay

    def _build(self, codes: np.ndarray, lists: np.ndarray | None) -> Layout:
        n = codes.shape[0]
        if lists is None or n == 0:
            lists = np.full(n, -1, dtype=np.int64)
        lists = np.asarray(lists, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, lists[1:] != lists[:-1]]) if n else np.zeros(0, np.int64)
        counts = np.diff(np.r_[starts, n]).astype(np.int64)
        ids = lists[starts] if n else np.zeros(0, np.int64)
        nblk = (counts + 31) // 32
        b1 = np.cumsum(nblk)
        b0 = b1 - nblk
        nb = int(b1[-1]) if n else 0
        N = 32 * nb
        pos_of = np.repeat(32 * b0 - starts, counts) + np.arange(n, dtype=np.int64)
        row_of = np.full(N, -1, dtype=np.int64)
        row_of[pos_of] = np.arange(n, dtype=np.int64)
        slots = np.zeros((N, 2 * self.nsteps), dtype=np.uint8)
        side = np.ascontiguousarray(codes[:, self.side_offset : self.side_offset + 4 * self.n_side]).view(
            "<f4"
        )
        side = side.reshape(n, self.n_side)
        G = self.n_groups
        factors = np.zeros((G, N), dtype=np.float32)
        col = 0
        for i, p in enumerate(self.parts):
            slots[pos_of, col : col + self.slots[i]] = rf.nibble_slots(codes, p["offset"], p["bits"], p["k"])
            col += self.slots[i]
            if self.group_first[self.group_of[i]] == i:
                factors[self.group_of[i], pos_of] = side[:, p["side"]] * np.float32(p["mult"])
        sq = np.zeros(N, dtype=np.float32)
        sq[pos_of] = side[:, self.n_side - 1]
        add = None
        if self.additive is not None:
            add = np.zeros(N, dtype=np.float32)
            add[pos_of] = side[:, int(self.additive)]
        pad_beta = np.full(N, -np.inf, dtype=np.float32)
        pad_beta[pos_of] = 0.0
        words = None
        if self.one_bit:
            p = self.parts[0]
            w = rf.sign_words(codes, p["offset"], p["k"])
            words = np.zeros((N, w.shape[1]), dtype=np.uint64)
            words[pos_of] = w
        nbk = max(nb, 0)
        fb = factors.reshape(G, nbk, 32)
        valid = (pad_beta == 0).reshape(nbk, 32)
        fmin = (
            np.where(valid[None], fb, np.inf).min(axis=2).astype(np.float32)
            if nbk
            else np.zeros((G, 0), np.float32)
        )
        fmax = (
            np.where(valid[None], fb, -np.inf).max(axis=2).astype(np.float32)
            if nbk
            else np.zeros((G, 0), np.float32)
        )
        sqb = sq.reshape(nbk, 32)
        sqmin = (
            np.where(valid, sqb, np.inf).min(axis=1).astype(np.float32) if nbk else np.zeros(0, np.float32)
        )
        sqmax = (
            np.where(valid, sqb, -np.inf).max(axis=1).astype(np.float32) if nbk else np.zeros(0, np.float32)
        )
        return Layout(
            blocks=rf.interleave(slots).reshape(-1) if N else np.zeros(0, np.uint8),
            rows=np.ascontiguousarray(slots[:, 0::2] | (slots[:, 1::2] << 4)),
            nsteps=self.nsteps,
            factors=factors,
            sq=sq,
            pad_beta=pad_beta,
            row_of=row_of,
            pos_of=pos_of,
            block_list=np.repeat(ids, nblk).astype(np.int32),
            list_ids=ids,
            list_b0=b0.astype(np.int64),
            list_b1=b1.astype(np.int64),
            fmin=fmin,
            fmax=fmax,
            sqmin=sqmin,
            sqmax=sqmax,
            add=add,
            words=words,
            zeros=np.zeros(N, dtype=np.float32),
            zeros_nb=np.zeros(nbk, dtype=np.float32),
        )

    # ---- queries -------------------------------------------------------------------------------
    def prepare(
        self,
        q: np.ndarray,
        *,
        metric: str = "ip",
        cterm: np.ndarray | None = None,
        prepared=None,
        margin=None,
    ) -> Prepared:
        """LUTs and bounds of (m, d) float32 queries; ``cterm`` (m, L+1) exact centre terms (col 0 = list -1);
        ``margin`` overrides the scanner's (see :class:`FastScanner`) for these queries."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        m = q.shape[0]
        pq = prepared if prepared is not None else self.quantizer.prepare(q)
        fs = _kernels()
        P = len(self.parts)
        G = self.n_groups
        u8 = np.empty((m, 2 * self.nsteps, 16), dtype=np.uint8)
        fl = np.empty((m, 2 * self.nsteps, 16), dtype=np.float32)
        inv = np.empty((m, max(P, G)), dtype=np.float32)
        off = np.empty((m, max(P, G)), dtype=np.float32)
        err = np.empty((m, max(P, G)), dtype=np.float32)
        margin = self.margin if margin is None else margin
        sigmas = -1.0 if margin == "exact" else float(margin)
        parts_q = []
        slot0 = 0
        for i, p in enumerate(self.parts):
            key, idx, start, stop = p["query"]
            qp = (pq.data[key] if idx is None else pq.data[key][idx])[:, start:stop]
            qp = np.ascontiguousarray(qp, dtype=np.float32)
            parts_q.append(qp)
            if m:
                (fs.build_luts_serial if _serial(LUT_NS * m * self.slots[i]) else fs.build_luts)(
                    qp,
                    int(p["bits"]),
                    self.values64[i],
                    self.slots[i],
                    slot0,
                    sigmas,
                    u8,
                    fl,
                    inv,
                    off,
                    err,
                    i,
                )
            slot0 += self.slots[i]
        if G < P:
            if m:
                for g in range(G):  # one scale per group, from the float tables of its parts
                    work = LUT_NS * m * 2 * (self.part_steps[g + 1] - self.part_steps[g])
                    (fs.quantize_group_serial if _serial(work) else fs.quantize_group)(
                        fl,
                        2 * int(self.part_steps[g]),
                        2 * int(self.part_steps[g + 1]),
                        sigmas,
                        u8,
                        inv,
                        off,
                        err,
                        g,
                    )
            inv, off, err = (np.ascontiguousarray(a[:, :G]) for a in (inv, off, err))
        smap = ScoreMap("l2sq" if metric == "l2sq" else "ip")
        if cterm is None:
            cterm = np.zeros((m, 1), dtype=np.float32)
        return Prepared(
            m=m,
            luts=u8.reshape(-1),
            inv=inv,
            off=off,
            err=err,
            fluts=fl,
            qcat=None,
            parts_q=parts_q,
            alpha=smap.alpha,
            qconst=smap.qconst(q),
            cterm=np.ascontiguousarray(cterm, dtype=np.float32),
            l2=smap.l2,
            smap=smap,
            pq=pq,
        )

    @staticmethod
    def _vector_terms(lay: Layout, prep: Prepared) -> tuple:
        """(beta (N,), bmag (N,), bmax (nb,), bmagmax (nb,)) float32 of the metric, no filter: the per-vector
        constant of the score (:meth:`vqdb.kernels.scorer.ScoreMap.beta`; -inf on padding), its magnitude
        and their block maxima (the kernels' bounds). Cached on the layout per metric."""
        key = ("terms", prep.smap.metric)
        hit = lay.items.get(key)
        if hit is None:
            valid = lay.pad_beta == 0
            beta = prep.smap.beta(lay.sq, lay.add, valid)
            mag = np.where(valid, np.abs(beta), np.float32(0.0)).astype(np.float32)
            vb, fb = valid.reshape(-1, 32), beta.reshape(-1, 32)
            bmax = np.where(vb, fb, -np.inf).max(axis=1, initial=-np.inf).astype(np.float32)
            bmagmax = mag.reshape(-1, 32).max(axis=1, initial=0.0).astype(np.float32)
            whole = np.array(
                [
                    lay.fmin[0].min(initial=np.inf) if lay.fmin.shape[0] else 0.0,
                    lay.fmax[0].max(initial=-np.inf) if lay.fmax.shape[0] else 0.0,
                    bmax.max(initial=-np.inf),
                    bmagmax.max(initial=0.0),
                ],
                dtype=np.float32,
            )
            hit = (beta, mag, bmax, bmagmax, whole)
            lay.items[key] = hit
        return hit

    def _beta(self, lay: Layout, prep: Prepared, allow: np.ndarray | None) -> np.ndarray:
        """(N,) float32 ``beta`` of this call: the metric's per-vector constant, -inf where ``allow`` is False."""
        beta = self._vector_terms(lay, prep)[0]
        if allow is not None:
            beta = beta.copy()
            beta[lay.pos_of[~np.asarray(allow, dtype=bool)]] = -np.inf
        return beta

    # ---- path choice ---------------------------------------------------------------------------
    def small_work(self, m: int, n_scan: int) -> bool:
        """True when a search of ``m`` queries over about ``n_scan`` vectors each is too small to pay for
        waking other threads (the planner then runs it on the calling thread only)."""
        return STEP_NS * m * n_scan * max(self.nsteps, 1) / 32 + LUT_NS * m * 2 * self.nsteps < PAR_MIN_NS

    def choose(self, m: int, n: int, *, ivf: bool = False) -> str:
        """The path for ``m`` queries over ``n`` vectors: the persisted thresholds (:func:`costs`), keyed on
        the batch size and the widest part's bits; IVF scans (short lists) always take the LUT paths."""
        c = costs()
        pop = c.get("popcount_min_queries")
        if self.one_bit and pop is not None and m >= pop:
            return "popcount"
        if ivf or n < 32 * QGROUP:
            return "fastscan"
        blas = c["blas_min_queries"].get(self._widest_bits)
        return "blas" if blas is not None and m >= blas else "fastscan"

    # ---- top-k ---------------------------------------------------------------------------------
    def topk(
        self,
        lay: Layout,
        prep: Prepared,
        k: int,
        *,
        allow: np.ndarray | None = None,
        probe_ptr: np.ndarray | None = None,
        probe_lists: np.ndarray | None = None,
        path: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rows of the segment for each query.

        Parameters
        ----------
        lay, prep : from :meth:`layout` and :meth:`prepare`
        k : int >= 1
        allow : (n,) bool, optional
            Rows that may be returned (live and matching a filter).
        probe_ptr, probe_lists : CSR (m+1,), (total,) int64, optional
            IVF: the list numbers each query scans (absent lists are skipped). None: every row.
        path : {"auto", "fastscan", "blas", "popcount"}

        Returns
        -------
        scores : (m, k) float32, -inf padded
        rows : (m, k) int64 segment rows, -1 padded
        """
        m = prep.m
        if m == 0 or lay.n_blocks == 0:
            return np.full((m, k), -np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)
        beta = self._beta(lay, prep, allow)
        if path == "auto":
            n_est = (
                lay.n_positions
                if probe_ptr is None
                else max(1, lay.n_positions * len(probe_lists) // max(1, m * len(lay.list_ids)))
            )
            path = self.choose(m, n_est, ivf=probe_ptr is not None)
        if path == "popcount" and not self.one_bit:
            raise ValueError("the popcount path needs single-part 1-bit codes")
        if path == "blas" and probe_ptr is not None:
            path = "fastscan"
        self.last = {"path": path}
        n_scan = (
            lay.n_positions
            if probe_ptr is None
            else 32 * len(probe_lists) * max(1, lay.n_blocks // max(1, len(lay.list_ids)))
        )
        with _threads_for(STEP_NS * m * n_scan * self.nsteps / 32):
            if path == "blas":
                s, pos = self._blas(lay, prep, k, beta)
            else:
                s, pos = self._bounded(
                    lay, prep, k, beta, probe_ptr, probe_lists, popcount=path == "popcount"
                )
        return s, np.where(pos >= 0, lay.row_of[np.maximum(pos, 0)], -1)

    def segment_topk(
        self,
        codes: np.ndarray,
        lists: np.ndarray | None,
        prep: Prepared,
        k: int,
        *,
        allow: np.ndarray | None = None,
        probe: tuple | None = None,
        path: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`topk` over a run of codes (a segment), building/caching its layout; segments of fewer
        than :data:`MIN_ROWS` rows are scored directly by the quantizer (the float path).

        probe : (ptr, lists) CSR of the IVF lists each query scans (list -1 included), or None (all rows).
        """
        n = codes.shape[0]
        if n < MIN_ROWS and prep.pq is not None:
            return self._small_topk(codes, lists, prep, k, allow, probe)
        lay = self.layout(codes, lists)
        ptr, pl = (None, None) if probe is None else probe
        return self.topk(lay, prep, k, allow=allow, probe_ptr=ptr, probe_lists=pl, path=path)

    def _small_topk(self, codes, lists, prep, k, allow, probe):
        """Float path (the quantizer's own scores) for small segments: (m, k) scores and rows."""
        from .reference import topk as ref_topk

        m, n = prep.m, codes.shape[0]
        lists = np.full(n, -1, np.int64) if lists is None else np.asarray(lists, dtype=np.int64)
        est = self.quantizer.score(prep.pq, codes, centre=np.zeros(self.quantizer.dim, np.float32))
        sq = self.quantizer.squared_norms(codes) if prep.l2 else None
        s = prep.smap.apply(est, prep.cterm, lists, sq, prep.qconst)
        if allow is not None:
            s[:, ~np.asarray(allow, dtype=bool)] = -np.inf
        if probe is not None:
            ptr, pl = probe
            for i in range(m):
                s[i, ~np.isin(lists, pl[ptr[i] : ptr[i + 1]])] = -np.inf
        rows, top = ref_topk(np.ascontiguousarray(s, dtype=np.float32), k)
        rows = np.where(np.isfinite(top), rows, -1)
        return top, rows

    # ---- fastscan / popcount: bounds, candidates, exact re-score ---------------------------------
    def _chunk(self, m: int) -> int:
        """Blocks per work item: long runs for one query; for batches, chunks whose codes stay in L2
        while every query group passes over them."""
        chunk = self.config.chunk_blocks
        if m <= QGROUP:
            return chunk
        return int(min(chunk, max(4, L2_CHUNK_BYTES // (32 * max(self.nsteps, 1)))))

    def _flat_items(self, lay: Layout, m: int, chunk: int):
        """Flat work items of ``m`` queries: tasks of up to ``G`` queries x one of ``R`` block ranges, each
        walking its range chunk by chunk (a chunk stays in L2 while the task's query pairs pass over it).
        One pair (heap, threshold) per (query, range): with one thread ``R = 1``, so a query's threshold
        rises over the whole scan, however large ``k``. Returns ``(Work, q_ptr)`` (see :meth:`_items`)."""
        nb = lay.n_blocks
        threads = _threads()
        g = int(max(1, min(FLAT_QTASK, -(-m // (4 * threads)))))
        n_qt = -(-m // g)
        r = 1 if threads == 1 else int(max(1, min(-(-2 * threads // n_qt), -(-nb // chunk))))
        edges = (np.arange(r + 1, dtype=np.int64) * nb) // r
        it_b0, it_b1, it_q, it_pair, t_ptr = [], [], [], [], [0]
        for gt in range(n_qt):
            qs = np.arange(gt * g, min(m, gt * g + g), dtype=np.int64)
            nsub = -(-qs.size // QGROUP)
            qpad = np.full(nsub * QGROUP, -1, dtype=np.int64)
            qpad[: qs.size] = qs
            qsub = qpad.reshape(nsub, QGROUP)
            for ri in range(r):
                c0 = np.arange(edges[ri], edges[ri + 1], chunk, dtype=np.int64)
                it_b0.append(np.repeat(c0, nsub))
                it_b1.append(np.repeat(np.minimum(c0 + chunk, edges[ri + 1]), nsub))
                qq = np.tile(qsub, (c0.size, 1))
                it_q.append(qq)
                it_pair.append(np.where(qq >= 0, qq * r + ri, 0))
                t_ptr.append(t_ptr[-1] + c0.size * nsub)
        item_b0, item_b1 = np.concatenate(it_b0), np.concatenate(it_b1)
        n_items = item_b0.size
        item_q = np.full((n_items, QMAX), -1, dtype=np.int64)
        item_pair = np.zeros((n_items, QMAX), dtype=np.int64)
        item_q[:, :QGROUP] = np.concatenate(it_q)
        item_pair[:, :QGROUP] = np.concatenate(it_pair)
        q_ptr = np.arange(m + 1, dtype=np.int64) * r
        task_ptr = np.asarray(t_ptr, dtype=np.int64)
        return _kernels().Work(item_b0, item_b1, item_q, item_pair, task_ptr), q_ptr

    def _items(
        self, lay: Layout, q0: int, q1: int, probe_ptr, probe_lists, k: int, *, popcount: bool = False
    ):
        """Work items for queries [q0, q1): ``(Work, q_ptr)``, the kernels' items and task split
        (:class:`.fastscan.scan.Work`) and the (q1-q0+1,) int64 CSR of each query's pairs (a pair = one
        heap; pairs = ``q_ptr[-1]``). Flat scans are cached on the layout.

        IVF scans follow ``config.ivf_order`` (:class:`ScanConfig`); the popcount kernel always takes
        list-major items."""
        fs = _kernels()
        cfg = self.config
        if probe_ptr is None:
            key = (q1 - q0, self._chunk(q1 - q0), popcount, _threads())
            hit = lay.items.get(key)
            if hit is None:
                hit = self._make_items(lay, 0, q1 - q0, None, None, key[1], popcount)
                if len(lay.items) > 16:
                    lay.items.clear()
                lay.items[key] = hit
            if q0 == 0:
                return hit
            work, q_ptr = hit
            return work._replace(item_q=np.where(work.item_q >= 0, work.item_q + q0, -1)), q_ptr
        if lay.n_blocks == 0:
            return self._make_items(lay, q0, q1, probe_ptr, probe_lists, cfg.chunk_blocks)
        if cfg.ivf_order == "block" and not popcount:
            qb = max(1, min(cfg.ivf_qblock, -(-(q1 - q0) // cfg.ivf_min_blocks)))
            *items, q_ptr, task_ptr = fs.ivf_items_by_block(
                probe_ptr,
                probe_lists,
                q0,
                q1,
                lay.list_pos,
                lay.list_b0,
                lay.list_b1,
                cfg.chunk_blocks,
                qb,
                cfg.ivf_qgroup,
            )
            return fs.Work(*items, task_ptr), q_ptr
        if cfg.ivf_order == "query" and not popcount:
            *items, q_ptr, task_ptr = fs.ivf_items_by_query(
                probe_ptr,
                probe_lists,
                q0,
                q1,
                lay.list_pos,
                lay.list_b0,
                lay.list_b1,
                cfg.chunk_blocks,
                TASKS,
            )
            return fs.Work(*items, task_ptr), q_ptr
        *items, q_ptr = fs.ivf_items(
            probe_ptr,
            probe_lists,
            q0,
            q1,
            lay.list_ids,
            lay.list_b0,
            lay.list_b1,
            lay.n_blocks,
            cfg.chunk_blocks,
            QGROUP,
        )
        return fs.Work(*items, _task_split(items[0].size)), q_ptr

    def _make_items(
        self,
        lay: Layout,
        q0: int,
        q1: int,
        probe_ptr,
        probe_lists,
        chunk: int,
        popcount: bool = True,
    ):
        """Work items (block range x up to QGROUP queries) for queries [q0, q1): ``(Work, q_ptr)`` as
        :meth:`_items` (global query numbers in ``item_q``, -1 padded)."""
        if probe_ptr is None and not popcount:
            return self._flat_items(lay, q1 - q0, chunk)
        if probe_ptr is None:
            nb = lay.n_blocks
            step = max(1, min(chunk, -(-nb // 8)))
            cb0 = np.arange(0, nb, step, dtype=np.int64)
            cb1 = np.minimum(cb0 + step, nb)
            pair_q = np.repeat(np.arange(q0, q1, dtype=np.int64), cb0.size)
            pair_b0 = np.tile(cb0, q1 - q0)
            pair_b1 = np.tile(cb1, q1 - q0)
        else:
            lo, hi = probe_ptr[q0], probe_ptr[q1]
            lists = probe_lists[lo:hi]
            qof = np.repeat(np.arange(q0, q1, dtype=np.int64), np.diff(probe_ptr[q0 : q1 + 1]))
            if len(lay.list_ids):
                where = np.minimum(np.searchsorted(lay.list_ids, lists), len(lay.list_ids) - 1)
                ok = lay.list_ids[where] == lists
            else:
                where, ok = np.zeros(lists.size, np.int64), np.zeros(lists.size, bool)
            where, qof = where[ok], qof[ok]
            nblk = lay.list_b1[where] - lay.list_b0[where]  # split long lists (e.g. rows outside any list)
            nch = np.maximum(1, -(-nblk // chunk))
            rep = np.repeat(np.arange(where.size), nch)
            within = np.arange(rep.size) - np.repeat(np.cumsum(nch) - nch, nch)
            pair_q = qof[rep]
            pair_b0 = lay.list_b0[where][rep] + within * chunk
            pair_b1 = np.minimum(pair_b0 + chunk, lay.list_b1[where][rep])
        npairs = pair_q.size
        # group pairs over the same block range into items of <= QGROUP queries
        order = np.lexsort((pair_q, pair_b0))
        key = pair_b0[order]
        newgrp = np.r_[True, key[1:] != key[:-1]] if npairs else np.zeros(0, bool)
        grp_start = (
            np.maximum.accumulate(np.where(newgrp, np.arange(npairs), 0)) if npairs else np.zeros(0, np.int64)
        )
        rank = np.arange(npairs) - grp_start
        item_id = np.cumsum(newgrp | (rank % QGROUP == 0)) - 1
        n_items = int(item_id[-1]) + 1 if npairs else 0
        slot = rank % QGROUP
        item_q = np.full((n_items, QMAX), -1, dtype=np.int64)
        item_pair = np.zeros((n_items, QMAX), dtype=np.int64)
        item_q[item_id, slot] = pair_q[order]
        item_pair[item_id, slot] = order
        item_b0 = np.zeros(n_items, dtype=np.int64)
        item_b1 = np.zeros(n_items, dtype=np.int64)
        item_b0[item_id] = pair_b0[order]
        item_b1[item_id] = pair_b1[order]
        q_ptr = np.searchsorted(pair_q, np.arange(q0, q1 + 1)).astype(np.int64)  # pairs are query-major
        work = _kernels().Work(item_b0, item_b1, item_q, item_pair, _task_split(n_items))
        return work, q_ptr

    def _bounded(self, lay, prep, k, beta, probe_ptr, probe_lists, *, popcount: bool):
        """The fast-scan / popcount paths: (m, k) exact scores and positions (see :mod:`.fastscan.scan`)."""
        fs = _kernels()
        m = prep.m
        threads = _threads()
        key = ("bounded", m, k, popcount, threads, prep.smap.metric)
        setup = lay.items.get(key) if probe_ptr is None else None
        if setup is None:
            chunk = self._chunk(m)
            pairs_per_query = (
                max(1, -(-lay.n_blocks // chunk)) if probe_ptr is None and popcount else 2 * threads
            )
            items_per_query = max(1, lay.n_blocks // (chunk * QGROUP)) if probe_ptr is None else 1
            step = max(
                1,
                min(
                    HEAP_BUDGET // ((k + self.config.slots_for(k)) * pairs_per_query),
                    MAX_ITEMS // items_per_query,
                ),
            )
            serial = _serial(STEP_NS * m * max(1, lay.n_positions) * self.nsteps / 32)
            # a flat scan's setup depends on the layout, the call's shape and threads only: kept on the layout
            setup = (step, serial, self._bias(lay, prep, self._vector_terms(lay, prep)[0]))
            if probe_ptr is None:
                lay.items[key] = setup
        step, serial, bias = setup
        if bias.beta is not beta:  # a filtered call: its own beta, the same bounds
            bias = bias._replace(beta=beta)
        out_s = np.full((m, k), -np.inf, dtype=np.float32)
        out_p = np.full((m, k), -1, dtype=np.int64)
        n_cand = 0
        codes = lay.items.get("codes")
        if codes is None:  # the kernels' view of the layout (one per layout: a layout belongs to one scanner)
            codes = lay.items["codes"] = fs.Codes(
                lay.blocks,
                lay.rows,
                lay.nsteps,
                self.part_steps,
                lay.factors,
                lay.fmin,
                lay.fmax,
                lay.block_list,
            )
        qy = fs.Queries(
            prep.luts, prep.inv, prep.off, prep.err, prep.fluts, prep.alpha, prep.qconst, prep.cterm
        )
        bits = self._bitplanes(lay, prep) if popcount else None
        for q0 in range(0, m, step):
            q1 = min(m, q0 + step)
            work, q_ptr = self._items(lay, q0, q1, probe_ptr, probe_lists, k, popcount=popcount)
            top = fs.new_top(int(q_ptr[-1]), k, m, self.config.slots_for(k))
            sl = slice(q0, q1)
            if popcount:
                (fs.scan_bits_serial if serial else fs.scan_bits)(bits, codes, qy, bias, work, top)
                (fs.merge_pairs_serial if serial else fs.merge_pairs)(
                    top.scores, top.pos, q_ptr, k, out_s[sl], out_p[sl]
                )
            else:
                (fs.scan_lut_serial if serial else fs.scan_lut)(codes, qy, bias, work, top)
                (fs.finish_lut_serial if serial else fs.finish_lut)(
                    codes, qy, bias, top, q_ptr, q0, k, out_s[sl], out_p[sl]
                )
            n_cand += int(top.rescored.sum())
        self.last["candidates_per_query"] = n_cand / m if m else 0.0
        return out_s, out_p

    def _bitplanes(self, lay: Layout, prep: Prepared):
        """The popcount scan's query side, with the layout's sign words (:class:`.fastscan.scan.Bits`)."""
        fs = _kernels()
        q = prep.parts_q[0]
        words, lo, de, elo, ehi = rf.bitplane_query(q, BITPLANES)
        v = np.asarray(self.parts[0]["values"], dtype=np.float64)
        qf = np.ascontiguousarray(q, dtype=np.float64)
        return fs.Bits(
            lay.words,
            words,
            lo,
            de,
            fs.ordered_sums(qf),
            elo,
            ehi,
            qf,
            np.float64(v[0]),
            np.float64(v[1] - v[0]),
        )

    def _bias(self, lay: Layout, prep: Prepared, beta: np.ndarray):
        """This call's ``beta`` (N,) (filter applied) and the metric's bounds (:class:`.fastscan.scan.Bias`);
        the bounds ignore the filter (a filtered-out row only lowers its block's true maximum)."""
        _, mag, bmax, bmagmax, whole = self._vector_terms(lay, prep)
        return _kernels().Bias(beta, mag, bmax, bmagmax, whole)

    # ---- blas ------------------------------------------------------------------------------------
    def _qcat(self, prep: Prepared) -> np.ndarray:
        if prep.qcat is None:
            cols = []
            for i, p in enumerate(self.parts):
                width = self.slots[i] * rf.coords_per_slot(p["bits"])
                qp = np.zeros((prep.m, width), dtype=np.float32)
                qp[:, : p["k"]] = prep.parts_q[i]
                cols.append(qp)
            prep.qcat = np.ascontiguousarray(np.concatenate(cols, axis=1))
        return prep.qcat

    def _blas(self, lay, prep, k, beta):
        fs = _kernels()
        qcat = self._qcat(prep)
        m = prep.m
        hs = np.full((m, k), -np.inf, dtype=np.float32)
        hp = np.full((m, k), -1, dtype=np.int64)
        tile = np.empty((TILE_BLOCKS * 32, self.coords), dtype=np.float32)
        part_factors = lay.factors if self.n_groups == len(self.parts) else lay.factors[self.group_of]
        out = np.empty((m, TILE_BLOCKS * 32), dtype=np.float32)
        for b0 in range(0, lay.n_blocks, TILE_BLOCKS):
            b1 = min(lay.n_blocks, b0 + TILE_BLOCKS)
            rows = 32 * (b1 - b0)
            fs.decode_tile(
                lay.blocks,
                lay.nsteps,
                self.slice_steps,
                self.part_bits,
                self.values,
                part_factors,
                b0,
                b1,
                tile[:rows],
            )
            o = out if rows == out.shape[1] else np.empty((m, rows), dtype=np.float32)
            np.matmul(qcat, tile[:rows].T, out=o)
            fs.tile_topk(o, prep.alpha, prep.qconst, prep.cterm, lay.block_list, beta, 32 * b0, hs, hp)
        order = np.lexsort((np.where(hp >= 0, hp, np.iinfo(np.int64).max), -hs.astype(np.float64)), axis=1)
        return np.take_along_axis(hs, order, 1), np.take_along_axis(hp, order, 1)


# ------------------------------------------------------------------------------------------------
# per-quantizer scanners and IVF probing helpers
# ------------------------------------------------------------------------------------------------
_SCANNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SCANNERS_LOCK = threading.Lock()


def for_quantizer(quantizer) -> FastScanner | None:
    """The shared :class:`FastScanner` of ``quantizer`` (None when its codes are not supported)."""
    try:
        sc = _SCANNERS.get(quantizer)
    except TypeError:
        return None
    if sc is None:
        from .scanner_multitable import MultiTableScanner  # codes with 5-8-bit parts (turbo-pca-N)

        cls = FastScanner if FastScanner.supports(quantizer) else MultiTableScanner
        if not cls.supports(quantizer):
            return None
        with _SCANNERS_LOCK:
            sc = _SCANNERS.get(quantizer)
            if sc is None:
                sc = cls(quantizer)
                _SCANNERS[quantizer] = sc
    return sc


_COUNTS: dict[int, tuple] = {}
_COUNTS_LOCK = threading.Lock()


def list_rows(lists: np.ndarray, nlist: int) -> np.ndarray:
    """(nlist + 1,) rows per IVF list of a segment's ``lists`` (entry 0: rows outside any list); cached on
    the array (segments are immutable)."""
    key = id(lists)
    hit = _COUNTS.get(key)
    if hit is not None and hit[0]() is lists and hit[1].size == nlist + 1:
        return hit[1]
    counts = np.bincount(np.asarray(lists, dtype=np.int64) + 1, minlength=nlist + 1)[: nlist + 1]
    with _COUNTS_LOCK:
        _COUNTS[key] = (weakref.ref(lists), counts)
        weakref.finalize(lists, _COUNTS.pop, key, None)
    return counts


def probe_csr(order: np.ndarray, nprobe: int, list_rows: np.ndarray | None = None, need: int | None = None):
    """Lists scanned per query: the first ``nprobe`` of each row of ``order`` (m, nlist), doubled until
    at least ``need`` rows (``list_rows`` (nlist,) allowed rows per list) are covered, plus list -1.

    Returns CSR ``(ptr (m+1,), lists (total,))`` int64.
    """
    m, nlist = order.shape
    counts = np.full(m, min(nprobe, nlist), dtype=np.int64)
    if need is not None and list_rows is not None and m:
        cum = np.cumsum(list_rows[order], axis=1)
        upto = counts.copy()
        while True:
            got = cum[np.arange(m), upto - 1] if nlist else np.zeros(m)
            short = (got < need) & (upto < nlist)
            if not short.any():
                break
            upto[short] = np.minimum(nlist, upto[short] + np.maximum(nprobe, upto[short]))
        counts = upto
    ptr = np.zeros(m + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts + 1)
    lists = np.empty(int(ptr[-1]), dtype=np.int64)
    lists[ptr[:-1]] = -1
    take = np.arange(nlist)[None, :] < counts[:, None]
    dest = (ptr[:-1, None] + 1 + np.arange(nlist)[None, :])[take]
    lists[dest] = order[take]
    return ptr, lists


def enabled() -> bool:
    """Fast scans are part of the numba backend: on when numba is importable, no other backend is
    forced with ``VQDB_BACKEND`` and the calling thread is not on the NumPy path (``kernels.numpy_path``)."""
    forced = envs.backend()
    return (forced is None or forced == "numba") and _numba_installed() and not numpy_path_active()


@functools.cache
def _numba_installed() -> bool:
    from . import _has

    return _has("numba")


_WARM = {"done": False, "seconds": None}
_WARM_LOCK = threading.Lock()


def warmup() -> float:
    """Compile (or load from numba's on-disk cache) every fast-scan kernel, once per process.

    Returns the seconds it took (0.0 when already warm or disabled). Index open calls it so that no
    compilation happens on the query path.
    """
    if _WARM["done"] or not enabled():
        return 0.0
    import time

    with _WARM_LOCK:
        if _WARM["done"]:
            return 0.0
        t0 = time.perf_counter()
        _kernels().warmup()
        get_ops("numba").warmup()  # the generic LUT/sign scorers that small flat calls use
        _WARM["seconds"] = time.perf_counter() - t0
        _WARM["done"] = True
        return _WARM["seconds"]
