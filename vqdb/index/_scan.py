"""Scanning codes: flat blocks, IVF lists, filtered subsets; running top-k; exact re-rank.

Inputs are validated by the caller. A candidate is referenced by ``ref = segment << 40 | row``.
Scores are always higher-is-better: ``ip``/``cos`` the (estimated) inner product, ``l2sq`` the
negated squared distance ``2<q,x> - ||x||^2 - ||q||^2`` with the exact ``||x||^2`` stored in each code.

The estimated inner product of a code from list ``j`` is ``<q, c_j> + est<q, x - c_j>``: the quantizer
scores the residual (``centre=0``) and the exact centre term comes from a small (m, nlist + 1) table
(column 0 is the quantizer's own fitted centre, used by rows outside any IVF list).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from ..kernels import numpy_path_active
from ..kernels.scorer import ScoreMap, small_matmul
from ._ivf import Coarse
from ._segment import Segment

SHIFT = 40
ROW_MASK = (1 << SHIFT) - 1
_BLOCK_FLOATS = 1 << 22  # scores tile of at most 4M floats (16 MB)
_RERANK_FLOATS = 1 << 20  # re-rank: candidate vectors gathered per step (8 MB as float64)
SORT_QUERIES = True  # IVF batches: scan queries grouped by their nearest list (cache reuse)


@dataclass
class ScanContext:
    """Everything a scan needs besides the rows; built once per search call."""

    quantizer: object
    metric: str  # "ip" or "l2sq" (cos is scored as ip)
    coarse: Coarse | None
    segments: tuple[Segment, ...]
    allow: list  # per segment: None (all rows allowed) or (n,) bool
    zero: np.ndarray  # (d,) float32 zeros
    probe_metric: str = "blend"  # how lists are ranked: a key of vqdb.index._ivf.PROBE_NORM_WEIGHT
    margin: object = None  # fast-scan candidate margin: None (the scanner's, exact) or sigmas (float)

    @property
    def smap(self) -> ScoreMap:
        return ScoreMap(self.metric)

    def centre_terms(self, q: np.ndarray, centroids_ip: np.ndarray | None = None) -> np.ndarray:
        """(m, 1 + nlist) float32 exact <q, centre> per list (column 0: the quantizer's fitted centre);
        ``centroids_ip`` (m, nlist): ``q @ centroids.T`` when the caller has it already."""
        if centroids_ip is None and self.coarse is not None:
            centroids_ip = small_matmul(q, self.coarse.centroids.T)
        return ScoreMap.centre_terms(q, getattr(self.quantizer, "centre_", None), centroids_ip)


class TopK:
    """Running best ``k`` (score, ref) per query."""

    def __init__(self, m: int, k: int):
        self.k = k
        self.scores = np.full((m, k), -np.inf, dtype=np.float32)
        self.refs = np.full((m, k), -1, dtype=np.int64)
        self._empty = True

    def push(self, scores: np.ndarray, refs: np.ndarray, qrows=slice(None)) -> None:
        """Merge candidates ``scores`` (mq, b) with ``refs`` (b,) or (mq, b) into queries ``qrows``."""
        if scores.shape[1] == 0:
            return
        if self._empty and scores.shape == self.scores[qrows].shape and refs.shape == scores.shape:
            self.scores[qrows] = scores  # the first (m, k) block of every query: nothing to merge
            self.refs[qrows] = np.where(np.isfinite(scores), refs, -1)
            self._empty = False
            return
        self._empty = False
        if refs.ndim == 1:
            refs = np.broadcast_to(refs, scores.shape)
        s = np.concatenate([self.scores[qrows], scores], axis=1)
        r = np.concatenate([self.refs[qrows], refs], axis=1)
        k = self.k
        if s.shape[1] > k:
            idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s = np.take_along_axis(s, idx, axis=1)
            r = np.take_along_axis(r, idx, axis=1)
        self.scores[qrows] = s
        self.refs[qrows] = np.where(np.isfinite(s), r, -1)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lengths)


def _score(
    ctx: ScanContext, prepared, qconst: np.ndarray, cterm: np.ndarray, seg: Segment, sel
) -> np.ndarray:
    """(m, b) scores of the prepared queries against rows ``sel`` (slice or int array) of ``seg``."""
    return _score_codes(ctx, prepared, qconst, cterm, seg.codes[sel], seg.lists[sel])


def _score_codes(
    ctx: ScanContext, prepared, qconst, cterm, codes: np.ndarray, lists: np.ndarray
) -> np.ndarray:
    """(m, b) scores against ``codes`` (b, code_size) whose IVF lists are ``lists`` (b,)."""
    est = ctx.quantizer.score(prepared, codes, centre=ctx.zero)
    sq = ctx.quantizer.squared_norms(codes) if ctx.metric == "l2sq" else None
    return ctx.smap.apply(est, cterm, lists, sq, qconst)


def _gather(ctx: ScanContext, picks: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, lists and refs of rows picked from several segments, concatenated: one scoring call."""
    codes = [ctx.segments[si].codes[rows] for si, rows in picks]
    lists = [ctx.segments[si].lists[rows] for si, rows in picks]
    refs = [(si << SHIFT) + rows for si, rows in picks]
    if len(picks) == 1:
        return codes[0], lists[0], refs[0]
    return np.concatenate(codes), np.concatenate(lists), np.concatenate(refs)


def _block_rows(m: int, n: int) -> int:
    return int(max(256, min(n, _BLOCK_FLOATS // max(m, 1))))


def scan_flat(ctx: ScanContext, q: np.ndarray, top: TopK, plan=None) -> None:
    """Score every allowed row of every segment (on the plan's fast-scan kernel when it has one)."""
    if plan is not None and plan.scanner is not None:
        _fast_flat(ctx, plan, q, top)
        return
    prepared = ctx.quantizer.prepare(q)
    qconst = ctx.smap.qconst(q)
    cterm = ctx.centre_terms(q)
    for si, seg in enumerate(ctx.segments):
        allow = ctx.allow[si]
        step = _block_rows(q.shape[0], seg.n)
        for b0 in range(0, seg.n, step):
            b1 = min(seg.n, b0 + step)
            block_allow = None if allow is None else allow[b0:b1]
            if block_allow is not None and not block_allow.any():
                continue
            s = _score(ctx, prepared, qconst, cterm, seg, slice(b0, b1))
            refs = (si << SHIFT) + np.arange(b0, b1, dtype=np.int64)
            if block_allow is not None:
                s[:, ~block_allow] = -np.inf
            top.push(s, refs)


def scan_subset(ctx: ScanContext, q: np.ndarray, top: TopK) -> None:
    """Score only the allowed rows (selective filters): gather them from all segments, then score."""
    prepared = ctx.quantizer.prepare(q)
    qconst = ctx.smap.qconst(q)
    cterm = ctx.centre_terms(q)
    picks = [
        (si, np.arange(seg.n, dtype=np.int64) if ctx.allow[si] is None else np.flatnonzero(ctx.allow[si]))
        for si, seg in enumerate(ctx.segments)
    ]
    step = _block_rows(q.shape[0], sum(r.size for _, r in picks))
    batch, size = [], 0
    for si, rows in picks:  # blocks of about ``step`` rows, spanning segments
        for b0 in range(0, rows.size, step):
            part = rows[b0 : b0 + step]
            batch.append((si, part))
            size += part.size
            if size >= step:
                top.push(*_scored(ctx, prepared, qconst, cterm, batch))
                batch, size = [], 0
    if batch:
        top.push(*_scored(ctx, prepared, qconst, cterm, batch))


def _scored(ctx, prepared, qconst, cterm, picks):
    codes, lists, refs = _gather(ctx, picks)
    return _score_codes(ctx, prepared, qconst, cterm, codes, lists), refs


def scan_ivf(ctx: ScanContext, q: np.ndarray, top: TopK, nprobe: int, *, need: int | None, plan=None) -> None:
    """Per query: scan the rows outside any list plus the ``nprobe`` most promising lists.

    ``need``: when not None, keep opening further lists until at least ``need`` allowed rows were
    scanned or every list was, so a filtered search returns k results when k exist.
    The probed rows of all segments are gathered and scored in one call per query (and round).
    """
    if plan is not None and plan.scanner is not None:
        _fast_ivf_scan(ctx, plan.scanner, q, top, nprobe, need, plan.kernel)
        return
    coarse = ctx.coarse
    nlist = coarse.nlist
    cterm_all = ctx.centre_terms(q)
    order_all = np.argsort(-coarse.probe_scores(q, ctx.probe_metric), axis=1, kind="stable")
    qconst_all = ctx.smap.qconst(q)
    unassigned = np.array([-1], dtype=np.int64)
    for i in range(q.shape[0]):
        prepared = ctx.quantizer.prepare(q[i : i + 1])
        cterm, qconst = cterm_all[i : i + 1], qconst_all[i : i + 1]
        order = order_all[i]
        done, upto, found = 0, min(nprobe, nlist), 0
        first = True
        while True:
            probe = order[done:upto].astype(np.int64)
            if first:
                probe = np.concatenate([unassigned, probe])
            picks = []
            for si, seg in enumerate(ctx.segments):
                starts, ends = seg.list_bounds(probe)
                rows = _ranges(starts, ends)
                if ctx.allow[si] is not None:
                    rows = rows[ctx.allow[si][rows]]
                if rows.size:
                    picks.append((si, rows))
                    found += rows.size
            if picks:
                top.push(*_scored(ctx, prepared, qconst, cterm, picks), qrows=slice(i, i + 1))
            first = False
            done = upto
            if need is None or found >= need or done >= nlist:
                break
            upto = min(nlist, done + max(nprobe, done))  # double the lists scanned


# ---- fast paths (vqdb.kernels.scanner: fast-scan LUT kernels, batched BLAS, popcount) -------------
def execute(plan, ctx: ScanContext, q: np.ndarray, top: TopK, device_scorer=None) -> None:
    """Fill ``top`` by the scan ``plan`` (:func:`vqdb.index._plan.plan_search`) says, on its threads."""
    with threads(plan.threads):
        if plan.route == "ivf":
            scan_ivf(ctx, q, top, plan.nprobe, need=plan.need, plan=plan)
        elif plan.route == "subset":
            scan_subset(ctx, q, top)
        elif plan.route == "device":
            device_scorer.scan(ctx, q, top)
        elif plan.route == "flat":
            scan_flat(ctx, q, top, plan)


@contextlib.contextmanager
def threads(n: int):
    """Run the calling thread's numba kernels on ``n`` threads inside the block. numba's thread count
    belongs to the calling thread, so other threads of the process are unaffected; no BLAS pin. On the NumPy
    path (``kernels.numpy_path``) no numba kernel runs: numba is not imported for it."""
    try:
        if numpy_path_active():
            raise ImportError
        import numba
    except ImportError:
        yield
        return
    n = int(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    old = numba.get_num_threads()
    if n == old:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _fast_flat(ctx: ScanContext, plan, q: np.ndarray, top: TopK) -> None:
    """Flat scan on the plan's fast kernel; same ranking as the float path (see vqdb.kernels.scanner)."""
    fs = plan.scanner
    prep = fs.prepare(q, metric=ctx.metric, cterm=ctx.centre_terms(q), margin=ctx.margin)
    for si, seg in enumerate(ctx.segments):
        s, rows = fs.segment_topk(seg.codes, seg.lists, prep, top.k, allow=ctx.allow[si], path=plan.kernel)
        top.push(s, rows if si == 0 else np.where(rows >= 0, (si << SHIFT) + rows, -1))


def _allowed_per_list(ctx: ScanContext) -> tuple[np.ndarray, int]:
    """Allowed rows per IVF list (nlist,) summed over segments, and the allowed rows outside any list."""
    from ..kernels import scanner

    counts = np.zeros(ctx.coarse.nlist + 1, dtype=np.int64)
    for si, seg in enumerate(ctx.segments):
        allow = ctx.allow[si]
        if allow is None:
            counts += scanner.list_rows(seg.lists, ctx.coarse.nlist)
        else:
            counts += np.bincount(np.asarray(seg.lists[allow], dtype=np.int64) + 1, minlength=counts.size)
    return counts[1:], int(counts[0])


def probe_order(scores: np.ndarray, nprobe: int) -> np.ndarray:
    """(m, min(nprobe, nlist)) int64: the ``nprobe`` best lists of each query, best first, by a partial
    sort (the order only steers how fast the scan's threshold rises; tied lists may come in any order)."""
    m, nlist = scores.shape
    if nprobe >= nlist:
        return np.argsort(-scores, axis=1, kind="stable")
    part = np.argpartition(-scores, nprobe - 1, axis=1)[:, :nprobe]
    o = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, o, axis=1)


def _fast_ivf_scan(
    ctx: ScanContext, fs, q: np.ndarray, top: TopK, nprobe: int, need: int | None, path: str = "fastscan"
) -> None:
    """IVF scan on the fast kernels: every query's lists in one kernel call per segment, queries that probe
    the same list grouped so the list's codes are read once per group."""
    from ..kernels import scanner

    ip = small_matmul(q, ctx.coarse.centroids.T)  # <q, c_j>: the centre terms, and the probe scores
    scores = ctx.coarse.probe_from_ip(ip, ctx.probe_metric)
    list_rows, outside = (None, 0) if need is None else _allowed_per_list(ctx)
    need_lists = None if need is None else need - outside
    order = probe_order(scores, nprobe)
    if (
        need_lists is not None
        and order.shape[1] < scores.shape[1]
        and bool((list_rows[order].sum(axis=1) < need_lists).any())
    ):
        order = np.argsort(-scores, axis=1, kind="stable")  # some query must open further lists
    qrows = slice(None)
    if SORT_QUERIES and q.shape[0] > 2:
        # queries sharing their nearest list run one after another, so the lists they share are still in
        # cache for the next one (the scan is query-major: each query walks its own lists)
        perm = np.argsort(order[:, 0], kind="stable")
        q, order, ip, qrows = q[perm], order[perm], ip[perm], perm
    probe = scanner.probe_csr(order, nprobe, list_rows, need_lists)
    cterm = ctx.centre_terms(q, ip)
    prep = fs.prepare(q, metric=ctx.metric, cterm=cterm, margin=ctx.margin)
    for si, seg in enumerate(ctx.segments):
        s, rows = fs.segment_topk(
            seg.codes, seg.lists, prep, top.k, allow=ctx.allow[si], probe=probe, path=path
        )
        top.push(s, np.where(rows >= 0, (si << SHIFT) + rows, -1), qrows=qrows)


def refs_to_ids(segments, refs: np.ndarray) -> np.ndarray:
    """Map refs (any shape) to ids; -1 stays -1."""
    valid = refs >= 0
    if len(segments) == 1:
        if not segments[0].n:
            return np.full(refs.shape, -1, dtype=np.int64)
        if valid.all():  # one segment: a ref is its row
            return segments[0].ids[refs]
        return np.where(valid, segments[0].ids[np.where(valid, refs & ROW_MASK, 0)], -1)
    out = np.full(refs.shape, -1, dtype=np.int64)
    seg_of = np.where(valid, refs >> SHIFT, -1)
    rows = refs & ROW_MASK
    for si in np.unique(seg_of[valid]):
        hit = seg_of == si
        out[hit] = segments[int(si)].ids[rows[hit]]
    return out


def _rerank_threads(m: int, step: int) -> int:
    """Threads for the re-rank of ``m`` queries in steps of ``step``: numba's count on the fast paths (the
    search's thread budget), 1 for a single step or without numba."""
    if m <= step or numpy_path_active():
        return 1
    try:
        import numba
    except ImportError:
        return 1

    return int(max(1, min(numba.get_num_threads(), -(-m // step))))


_POOL = {"pool": None, "size": 0}
_POOL_LOCK = threading.Lock()


def _pool(n: int):
    with _POOL_LOCK:
        if _POOL["size"] < n:
            from concurrent.futures import ThreadPoolExecutor

            _POOL["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="vqdb-rerank")
            _POOL["size"] = n
        return _POOL["pool"]


def rerank(ctx: ScanContext, q: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(m, kk) exact scores of candidates ``refs`` from the stored vectors (float64 accumulation).

    Steps of queries are independent (NumPy releases the GIL in the gathers, casts and products), so
    with several numba threads they run on a small thread pool; every score is computed the same way."""
    out = np.full(refs.shape, -np.inf, dtype=np.float64)
    m, kk = refs.shape
    step = max(1, _RERANK_FLOATS // max(1, kk * q.shape[1]))
    starts = range(0, m, step)
    n = _rerank_threads(m, step)
    if n == 1:
        for q0 in starts:
            _rerank_step(ctx, q, refs, out, q0, step)
    else:
        list(_pool(n).map(lambda q0: _rerank_step(ctx, q, refs, out, q0, step), starts))
    return out


def _rerank_step(
    ctx: ScanContext, q: np.ndarray, refs: np.ndarray, out: np.ndarray, q0: int, step: int
) -> None:
    r = refs[q0 : q0 + step]
    valid = r >= 0
    seg_of = np.where(valid, r >> SHIFT, -1)
    rows = r & ROW_MASK
    q64 = q[q0 : q0 + step].astype(np.float64)
    block = out[q0 : q0 + step]
    if valid.all() and (seg_of == seg_of[0, 0]).all():  # one segment, no padding: batched products
        v = ctx.segments[int(seg_of[0, 0])].vectors[rows].astype(np.float64)  # (mb, kk, d)
        dots = np.matmul(v, q64[:, :, None])[..., 0]
        if ctx.metric == "l2sq":
            block[:] = 2.0 * dots - np.einsum("ijk,ijk->ij", v, v) - np.einsum("ij,ij->i", q64, q64)[:, None]
        else:
            block[:] = dots
        return
    for si in np.unique(seg_of[valid]):
        qi, cj = np.nonzero(seg_of == si)
        v = ctx.segments[int(si)].vectors[rows[qi, cj]].astype(np.float64)
        if ctx.metric == "l2sq":
            v -= q64[qi]
            block[qi, cj] = -np.einsum("ij,ij->i", v, v)
        else:
            block[qi, cj] = np.einsum("ij,ij->i", v, q64[qi])


def finish(
    segments, scores: np.ndarray, refs: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ``k`` per row, sorted by score descending then id ascending; -1 / -inf padded.

    Returns ids (m, k) int64, scores (m, k) float32, refs (m, k) int64.
    """
    ids = refs_to_ids(segments, refs)
    valid = ids >= 0
    if scores.shape[1] == k and valid.all() and bool((scores[:, 1:] < scores[:, :-1]).all()):
        return ids, scores.astype(np.float32, copy=False), refs  # no padding, no ties: already in order
    scores = np.where(valid, scores, -np.inf)
    tie_ids = np.where(valid, ids, np.iinfo(np.int64).max)
    order = np.lexsort((tie_ids, -scores), axis=1)[:, :k]
    rows = np.arange(order.shape[0])[:, None]
    ids = ids[rows, order]
    scores = scores[rows, order].astype(np.float32, copy=False)
    refs = refs[rows, order]
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        refs = np.pad(refs, ((0, 0), (0, pad)), constant_values=-1)
    return ids, scores, refs
