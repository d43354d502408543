"""Fast scans of codes with 5–8-bit parts (the fitted ``turbo-pca-N`` presets): :class:`MultiTableScanner`.

The nibble parts (1–4 bits) are laid out, tabled and grouped exactly as :class:`~.scanner.FastScanner`
does; each 5–8-bit part (a *wide group*) gets one byte per coordinate in 32-vector blocks and a table of up
to 256 uint8 entries per coordinate (:mod:`.reference_multitable`, kernels in
:mod:`.fastscan.multitable`). The planner reaches it through :func:`.scanner.for_quantizer`, like every
fast scanner; results are the exact float scores of :func:`.reference_multitable.exact_scores_ref`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import reference_fastscan as rf
from . import reference_multitable as rm
from .scanner import (
    HEAP_BUDGET,
    L2_CHUNK_BYTES,
    LUT_NS,
    MAX_ITEMS,
    PAR_MIN_NS,
    QGROUP,
    STEP_NS,
    FastScanner,
    Layout,
    Prepared,
    _serial,
    _threads_for,
)

WIDE_STEP_COST = 0.6  # a wide coordinate's 32-byte step vs a nibble step (one permute vs two shuffles)


@dataclass(eq=False)
class MultiLayout(Layout):
    """A :class:`~.scanner.Layout` plus the wide coordinates (:class:`.fastscan.multitable.WideCodes`); its
    ``factors`` / ``fmin`` / ``fmax`` are (1, N) / (1, nb): the one per-vector factor of every part."""

    wide: object = None

    @property
    def nbytes(self) -> int:
        w = self.wide
        return super().nbytes + int(w.blocks.nbytes + w.rows.nbytes)


@dataclass(eq=False)
class MultiPrepared(Prepared):
    """A :class:`~.scanner.Prepared` plus the wide tables (:class:`.fastscan.multitable.WideQueries`)."""

    wide: object = None


def _extend(base, cls, **extra):
    """``base`` (a dataclass instance) as an instance of its subclass ``cls``, ``extra`` fields set or replaced."""
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return cls(**{**values, **extra})


class _NibblePartsOf:
    """A quantizer as the nibble scanner sees it: its ``scan_parts()`` without the wide parts."""

    def __init__(self, quantizer, spec: dict):
        self._quantizer = quantizer
        self._spec = spec

    def scan_parts(self) -> dict:
        return self._spec

    def __getattr__(self, name):
        return getattr(self._quantizer, name)


def _kernels():
    from .fastscan import multitable

    return multitable


class MultiTableScanner(FastScanner):
    """Fast scans for a quantizer whose ``scan_parts()`` has 5–8-bit parts (see the module docstring).

    Parameters
    ----------
    quantizer : Quantizer with ``scan_parts()``, parts of 1–8 bits, at least one of 5–8
    margin : {"exact", float}
        As :class:`~.scanner.FastScanner` (``"exact"``: the rigorous bound of the table rounding).
    config : ScanConfig, optional
        As :class:`~.scanner.FastScanner`.
    """

    def __init__(self, quantizer, *, margin="exact", config=None):
        spec = quantizer.scan_parts()
        narrow = [p for p in spec["parts"] if p["bits"] in rf.FAST_BITS]
        wide = [p for p in spec["parts"] if p["bits"] in rm.WIDE_BITS]
        super().__init__(_NibblePartsOf(quantizer, {**spec, "parts": narrow}), margin=margin, config=config)
        self.quantizer = quantizer
        self.one_bit = False  # no popcount path: the wide parts need the tables
        self.wide_parts = wide
        # runs of at most WIDE_RUN coordinates of one part (one weight each): (part, first coordinate, k)
        self.wide_runs = [
            (g, c, min(rm.WIDE_RUN, p["k"] - c))
            for g, p in enumerate(wide)
            for c in range(0, p["k"], rm.WIDE_RUN)
        ]
        self.wide_coords = np.concatenate([[0], np.cumsum([k for _, _, k in self.wide_runs])]).astype(
            np.int64
        )
        self.wide_bits = np.array([wide[g]["bits"] for g, _, _ in self.wide_runs], dtype=np.int64)
        self.wide_coff, self.wide_stride = rm.table_offsets(self.wide_coords, self.wide_bits)
        self.wide_values64 = [np.asarray(p["values"], dtype=np.float32).astype(np.float64) for p in wide]
        self.run_values = np.zeros((len(self.wide_runs), 256), dtype=np.float64)  # each run's levels
        for r, (g, _, _) in enumerate(self.wide_runs):
            self.run_values[r, : self.wide_values64[g].size] = self.wide_values64[g]
        ends = np.cumsum([p["k"] for p in wide])
        self.wide_part_coords = [(int(e - p["k"]), int(e)) for p, e in zip(wide, ends)]
        self.scan_steps = self.nsteps + WIDE_STEP_COST * int(self.wide_coords[-1])

    def _plan_groups(self) -> np.ndarray:
        """All nibble parts in one group: each group costs a pass of sums per block (measured on WordNet
        turbo-pca-2, one query: 4 nibble groups 0.91 ms vs one group 0.32 ms of accumulation), far more
        than the re-scores a finer scale saves (74 vs 121 candidates at k = 10, about 0.1 µs each)."""
        return np.zeros(len(self.parts), dtype=np.int64)

    @staticmethod
    def supports(quantizer) -> bool:
        fn = getattr(quantizer, "scan_parts", None)
        if fn is None:
            return False
        try:
            parts = fn()["parts"]
        except Exception:  # noqa: BLE001 - a quantizer that cannot describe itself is not supported
            return False
        ok = set(rf.FAST_BITS) | set(rm.WIDE_BITS)
        return (
            bool(parts)
            and all(p["bits"] in ok for p in parts)
            and any(p["bits"] in rm.WIDE_BITS for p in parts)
            and len({(p["side"], p["mult"]) for p in parts}) == 1  # one factor per vector (one T threshold)
        )

    # ---- layout --------------------------------------------------------------------------------
    def _build(self, codes: np.ndarray, lists: np.ndarray | None) -> MultiLayout:
        lay = super()._build(codes, lists)
        fs = _kernels()
        N, nb, K = lay.n_positions, lay.n_blocks, int(self.wide_coords[-1])
        n = codes.shape[0]
        rows = np.zeros((N, K), dtype=np.uint8)
        c0 = 0
        for p in self.wide_parts:  # the runs of a part are consecutive coordinates
            rows[lay.pos_of, c0 : c0 + p["k"]] = rm.wide_codes(codes, p["offset"], p["bits"], p["k"])
            c0 += p["k"]
        side = np.ascontiguousarray(codes[:, self.side_offset : self.side_offset + 4 * self.n_side])
        side = side.view("<f4").reshape(n, self.n_side)
        first = self.wide_parts[0]
        factor = np.zeros((1, N), dtype=np.float32)
        factor[0, lay.pos_of] = side[:, first["side"]] * np.float32(first["mult"])
        valid = (lay.pad_beta == 0).reshape(1, nb, 32)
        fb = factor.reshape(1, nb, 32)
        wide = fs.WideCodes(rm.interleave_wide(rows).reshape(-1), rows, K, self.wide_coords, self.wide_bits)
        return _extend(
            lay,
            MultiLayout,
            wide=wide,
            factors=factor,
            fmin=np.where(valid, fb, np.inf).min(axis=2, initial=np.inf).astype(np.float32),
            fmax=np.where(valid, fb, -np.inf).max(axis=2, initial=-np.inf).astype(np.float32),
        )

    # ---- queries -------------------------------------------------------------------------------
    def prepare(self, q, *, metric="ip", cterm=None, prepared=None, margin=None) -> MultiPrepared:
        """:meth:`FastScanner.prepare` (the nibble tables, one group) plus the wide tables of (m, d) float32
        queries, quantized on an integer multiple of the nibble step (:func:`.reference_multitable.wide_weights`)."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        pq = prepared if prepared is not None else self.quantizer.prepare(q)
        base = super().prepare(q, metric=metric, cterm=cterm, prepared=pq, margin=margin)
        fs = _kernels()
        m, stride, gn = base.m, self.wide_stride, self.n_groups
        margin = self.margin if margin is None else margin
        sigmas = -1.0 if margin == "exact" else float(margin)
        serial = _serial(LUT_NS * m * stride / 16)
        qw = np.empty((m, int(self.wide_coords[-1])), dtype=np.float32)
        for p, (c0, c1) in zip(self.wide_parts, self.wide_part_coords):
            key, idx, start, stop = p["query"]
            qw[:, c0:c1] = (pq.data[key] if idx is None else pq.data[key][idx])[:, start:stop]
        R = len(self.wide_runs)
        wfl = np.zeros(m * stride, dtype=np.float32)
        wu8 = np.zeros(m * stride, dtype=np.uint8)
        inv = np.empty(m, dtype=np.float32)
        weight = np.empty((m, R), dtype=np.int64)
        requant = np.zeros(m, dtype=np.bool_)
        woff = np.empty(m)
        werr = np.empty(m)
        inv_n = base.inv[:, 0] if gn else np.zeros(m, np.float32)
        if m:
            (fs.wide_tables_serial if serial else fs.wide_tables)(
                qw, self.run_values, self.wide_coords, self.wide_bits, self.wide_coff, stride,
                np.ascontiguousarray(inv_n, dtype=np.float32), 2 * self.nsteps * gn, rm.MAX_COMBINED, sigmas,
                wfl, wu8, inv, weight, requant, woff, werr,
            )  # fmt: skip
        off = base.off[:, 0].astype(np.float64) if gn else np.zeros(m)
        err = base.err[:, 0].astype(np.float64) if gn else np.zeros(m)
        if requant.any():  # rare: the nibble tables again, on the coarser unit
            rows = np.flatnonzero(requant)
            acc = np.zeros((rows.size, 4))
            fl = np.ascontiguousarray(base.fluts[rows])
            u8 = np.zeros(fl.shape, dtype=np.uint8)
            fs.quantize_nibble_serial(fl, 0, 2 * self.nsteps, 1.0 / inv[rows].astype(np.float64), u8, acc)
            base.luts.reshape(m, -1)[rows] = u8.reshape(rows.size, -1)
            off[rows], err[rows] = rm.row_bounds(acc, sigmas)
        wq = fs.WideQueries(
            wu8, wfl, stride, self.wide_coff, weight, inv, (off + woff).astype(np.float32),
            (err + werr).astype(np.float32),
        )  # fmt: skip
        return _extend(base, MultiPrepared, wide=wq)

    # ---- path choice ---------------------------------------------------------------------------
    def small_work(self, m: int, n_scan: int) -> bool:
        tables = LUT_NS * m * (2 * self.nsteps + self.wide_stride / 16)
        return STEP_NS * m * n_scan * max(self.scan_steps, 1) / 32 + tables < PAR_MIN_NS

    def choose(self, m: int, n: int, *, ivf: bool = False) -> str:
        """Always the table scan (no BLAS tiles or popcount for wide parts)."""
        return "fastscan"

    def _chunk(self, m: int) -> int:
        if m <= QGROUP:
            return super()._chunk(m)
        return int(min(super()._chunk(1), max(4, L2_CHUNK_BYTES // (32 * max(self.scan_steps, 1)))))

    # ---- top-k ---------------------------------------------------------------------------------
    def topk(self, lay, prep, k, *, allow=None, probe_ptr=None, probe_lists=None, path="auto"):
        """Best ``k`` rows of the segment per query (as :meth:`FastScanner.topk`; ``path`` "auto" or
        "fastscan" -- the only path of wide codes)."""
        if path not in ("auto", "fastscan"):
            raise ValueError(f"codes with 5-8-bit parts scan by table only; got path {path!r}")
        m = prep.m
        out_s = np.full((m, k), -np.inf, dtype=np.float32)
        out_r = np.full((m, k), -1, dtype=np.int64)
        if m == 0 or lay.n_blocks == 0:
            return out_s, out_r
        beta = self._beta(lay, prep, allow)
        self.last = {"path": "fastscan"}
        n_scan = (
            lay.n_positions
            if probe_ptr is None
            else 32 * len(probe_lists) * max(1, lay.n_blocks // max(1, len(lay.list_ids)))
        )
        with _threads_for(STEP_NS * m * n_scan * self.scan_steps / 32):
            s, pos = self._bounded(lay, prep, k, beta, probe_ptr, probe_lists, popcount=False)
        out_s[:] = s
        out_r[:] = np.where(pos >= 0, lay.row_of[np.maximum(pos, 0)], -1)
        return out_s, out_r

    def _bounded(self, lay, prep, k, beta, probe_ptr, probe_lists, *, popcount: bool = False):
        """The table scan: (m, k) exact scores and positions (:mod:`.fastscan.multitable`)."""
        from . import fastscan as nib

        fs = _kernels()
        m = prep.m
        pairs_per_query = 2 * self._threads_now()
        items_per_query = max(1, lay.n_blocks // (self._chunk(m) * QGROUP)) if probe_ptr is None else 1
        step = max(
            1,
            min(
                HEAP_BUDGET // ((k + nib.pending_slots(k)) * pairs_per_query),
                MAX_ITEMS // items_per_query,
            ),
        )
        out_s = np.full((m, k), -np.inf, dtype=np.float32)
        out_p = np.full((m, k), -1, dtype=np.int64)
        n_cand = np.zeros(m, dtype=np.int64)
        bias = self._bias(lay, prep, beta)
        codes = nib.Codes(
            lay.blocks,
            lay.rows,
            lay.nsteps,
            self.part_steps,
            lay.factors,
            lay.fmin,
            lay.fmax,
            lay.block_list,
        )
        qy = nib.Queries(
            prep.luts, prep.inv, prep.off, prep.err, prep.fluts, prep.alpha, prep.qconst, prep.cterm
        )
        serial = _serial(STEP_NS * m * max(1, lay.n_positions) * self.scan_steps / 32)
        for q0 in range(0, m, step):
            q1 = min(m, q0 + step)
            work, q_ptr = self._items(lay, q0, q1, probe_ptr, probe_lists, k, popcount=False)
            top = nib.new_top(int(q_ptr[-1]), k, m)
            sl = slice(q0, q1)
            (fs.scan_mixed_serial if serial else fs.scan_mixed)(
                codes, lay.wide, qy, prep.wide, bias, work, top
            )
            (fs.finish_mixed_serial if serial else fs.finish_mixed)(
                codes, lay.wide, qy, prep.wide, bias, top, q_ptr, q0, k, out_s[sl], out_p[sl]
            )
            n_cand[sl] = np.add.reduceat(top.rescored, q_ptr[:-1]) if q_ptr[-1] else 0
        self.last["candidates_per_query"] = float(n_cand.mean()) if m else 0.0
        return out_s, out_p

    @staticmethod
    def _threads_now() -> int:
        import numba

        return int(numba.get_num_threads())
