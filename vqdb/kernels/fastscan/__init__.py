"""Fast-scan kernels (numba), split by concern the way FAISS's ``impl/fast_scan`` is:

=================  ==========================================================================
``isa``            host ISA and the LLVM intrinsics (shuffle-accumulate window, popcount, prefetch)
``lut``            float LUTs of a query part and their uint8 quantization
``accumulate``     exact integer LUT sums over runs of 32-vector blocks
``scan``           bounds, exact re-score of what can still enter the top k (LUT and popcount scans);
                   the named tuples the kernels take (``Codes``, ``Queries``, ``Bias``, ``Work``, ``Top``)
``rescore``        the exact float score of one position (what every path ranks by)
``select``         (score, position) heaps and the per-query merge
``plan``           IVF work items (which queries scan which block ranges, in which order)
``blas``           decode tiles + merge tiles of SGEMM scores (large batches)
``popcount``       the AND + popcount oracle twin
=================  ==========================================================================

Layout, LUT quantization and the oracles are in :mod:`vqdb.kernels.reference_fastscan`; the glue that
lays out a quantizer's codes and plans a call is :mod:`vqdb.kernels.scanner`. Kernels that run in
parallel are compiled twice from one body (:func:`._config.twin`): ``name`` (parallel) and
``name_serial``, so small calls run on the calling thread without touching numba's thread count.
"""

from __future__ import annotations

import numpy as np

from .accumulate import QMAX, SUB, _item_sums, accumulate, block_sums
from .blas import decode_tile, tile_topk
from .isa import ISA, _host_isa, _prefetch, _win1, _win2
from .lut import build_luts, build_luts_serial, quantize_group, quantize_group_serial
from .plan import ivf_items, ivf_items_by_block, ivf_items_by_query
from .popcount import popcount_dot
from .rescore import _rescore_bits_one, _rescore_four, _rescore_one
from .scan import (
    Bias,
    Bits,
    Codes,
    Queries,
    Top,
    Work,
    finish_lut,
    finish_lut_serial,
    flush_pair,
    ordered_sums,
    pending_slots,
    scan_bits,
    scan_bits_serial,
    scan_lut,
    scan_lut_serial,
)
from .select import heap_offer, merge_pairs, merge_pairs_serial, take_topk

__all__ = [
    "ISA",
    "QMAX",
    "SUB",
    "Bias",
    "Bits",
    "Codes",
    "Queries",
    "Top",
    "Work",
    "accumulate",
    "block_sums",
    "build_luts",
    "build_luts_serial",
    "decode_tile",
    "finish_lut",
    "finish_lut_serial",
    "flush_pair",
    "pending_slots",
    "heap_offer",
    "ivf_items",
    "ivf_items_by_block",
    "ivf_items_by_query",
    "merge_pairs",
    "new_top",
    "merge_pairs_serial",
    "ordered_sums",
    "popcount_dot",
    "quantize_group",
    "quantize_group_serial",
    "scan_bits",
    "scan_bits_serial",
    "scan_lut",
    "scan_lut_serial",
    "take_topk",
    "tile_topk",
    "warmup",
    "_host_isa",
    "_item_sums",
    "_prefetch",
    "_win1",
    "_win2",
    "_rescore_bits_one",
    "_rescore_four",
    "_rescore_one",
]


def new_top(npairs: int, k: int, m: int, slots: int | None = None) -> Top:
    """Fresh per-call outputs for ``npairs`` pairs of ``m`` queries (:class:`.scan.Top`), ``slots`` pending
    candidates per pair (default :func:`.scan.pending_slots`; at least 64)."""
    c = pending_slots(k) if slots is None else max(64, int(slots))
    return Top(
        np.full((npairs, k), -np.inf, dtype=np.float32),
        np.full((npairs, k), -1, dtype=np.int64),
        np.empty((npairs, c), dtype=np.int64),
        np.empty((npairs, c), dtype=np.float32),
        np.zeros(npairs, dtype=np.int64),
        np.full(m, -np.inf, dtype=np.float32),
        np.zeros(npairs, dtype=np.int64),
        np.full((npairs, k), -np.inf, dtype=np.float32),
    )


_top = new_top


def warmup() -> None:
    """Compile (or load from the on-disk cache) every kernel of the query path on tiny inputs (the oracle
    twins ``accumulate`` and ``popcount_dot`` compile on first use); called at Index open."""
    from .. import reference_fastscan as rf

    rng = np.random.default_rng(0)
    nb, S, m, k = 2, 4, 5, 3
    f32, f64, i64 = np.float32, np.float64, np.int64
    blocks = rng.integers(0, 256, size=(nb, S, 32), dtype=np.uint8).reshape(-1)
    rows = rng.integers(0, 256, size=(nb * 32, S), dtype=np.uint8)
    luts = rng.integers(0, 256, size=(m, S, 32), dtype=np.uint8).reshape(-1)
    factors1 = np.ones((1, nb * 32), f32)
    factors2 = np.ones((2, nb * 32), f32)
    block_list = np.full(nb, -1, np.int32)
    zeros = np.zeros(nb * 32, f32)
    zeros_nb = np.zeros(nb, f32)
    bias = Bias(zeros, zeros, zeros_nb, zeros_nb, np.array([0.0, 1.0, 0.0, 0.0], f32))
    work = Work(
        np.array([0], i64),
        np.array([nb], i64),
        np.array([[0, 1, 2, 3]], i64),
        np.array([[0, 1, 2, 3]], i64),
        np.array([0, 1], i64),
    )
    fl = rng.standard_normal((m, 2 * S, 16)).astype(f32)
    for P, factors, part_steps in (
        (1, factors1, np.array([0, S], i64)),
        (2, factors2, np.array([0, 2, S], i64)),
    ):
        codes = Codes(
            blocks, rows, S, part_steps, factors, np.zeros((P, nb), f32), np.ones((P, nb), f32), block_list
        )
        qy = Queries(
            luts,
            np.ones((m, P), f32),
            np.zeros((m, P), f32),
            np.zeros((m, P), f32),
            fl,
            f32(1.0),
            np.zeros(m, f32),
            np.zeros((m, 1), f32),
        )
        for fn, fin in ((scan_lut, finish_lut), (scan_lut_serial, finish_lut_serial)):
            top = _top(4, k, m)
            fn(codes, qy, bias, work, top)
            fin(
                codes,
                qy,
                bias,
                top,
                np.arange(5, dtype=i64),
                0,
                k,
                np.full((4, k), -np.inf, f32),
                np.full((4, k), -1, i64),
            )
    for fn in (merge_pairs, merge_pairs_serial):
        fn(
            top.scores,
            top.pos,
            np.arange(5, dtype=i64),
            k,
            np.full((4, k), -np.inf, f32),
            np.full((4, k), -1, i64),
        )
    out = np.empty((64, 2 * S * 2), f32)
    decode_tile(
        blocks,
        S,
        np.array([0, 2, S], i64),
        np.array([2, 2], i64),
        np.ones((2, 16), f32),
        factors2,
        0,
        nb,
        out,
    )
    hs = np.full((m, k), -np.inf, f32)
    hp = np.full((m, k), -1, i64)
    tile_topk(
        rng.standard_normal((m, 64)).astype(f32), f32(1.0), qy.qconst, qy.cterm, block_list, zeros, 0, hs, hp
    )
    words = rng.integers(0, 2**63, size=(nb * 32, 2), dtype=i64).view(np.uint64)
    qw, lo, de, elo, ehi = rf.bitplane_query(rng.standard_normal((m, 100)).astype(f32), 4)
    qf = rng.standard_normal((m, 100))
    bits = Bits(words, qw, lo, de, ordered_sums(qf), elo, ehi, qf, f64(-1.0), f64(2.0))
    for fn in (scan_bits, scan_bits_serial):
        top = _top(4, k, m)
        fn(bits, codes._replace(factors=factors1), qy, bias, work, top)
    ivf_items(
        np.array([0, 2], i64),
        np.array([-1, 3], i64),
        0,
        1,
        np.array([-1, 3], i64),
        np.array([0, 1], i64),
        np.array([1, 2], i64),
        2,
        64,
        2,
    )
    ivf_items_by_query(
        np.array([0, 2], i64),
        np.array([-1, 3], i64),
        0,
        1,
        np.array([0, -1, -1, -1, 1], i64),
        np.array([0, 1], i64),
        np.array([1, 2], i64),
        64,
        64,
    )
    ivf_items_by_block(
        np.array([0, 2, 4], i64),
        np.array([-1, 3, -1, 3], i64),
        0,
        2,
        np.array([0, -1, -1, -1, 1], i64),
        np.array([0, 1], i64),
        np.array([1, 2], i64),
        64,
        2,
        2,
    )
    inv, off, err = np.ones((m, 2), f32), np.zeros((m, 2), f32), np.zeros((m, 2), f32)
    for qg in (quantize_group, quantize_group_serial):
        qg(np.ones((m, 8, 16), f32), 2, 6, -1.0, np.empty((m, 8, 16), np.uint8), inv, off, err, 0)
    for b, bl in ((1, build_luts), (2, build_luts), (3, build_luts), (4, build_luts)) + tuple(
        (b, build_luts_serial) for b in (1, 2, 3, 4)
    ):
        bl(
            rng.standard_normal((m, 7)).astype(f32),
            b,
            np.linspace(-1, 1, 1 << b),
            8,
            0,
            -1.0,
            np.empty((m, 8, 16), np.uint8),
            np.empty((m, 8, 16), f32),
            inv,
            off,
            err,
            0,
        )
