"""Multi-table fast scan: codes with 5–8-bit coordinates (the fitted ``turbo-pca-N`` slices) beside nibble parts.

A code's 1–4-bit parts are scanned by the nibble kernels (:func:`.accumulate._item_sums`, 16-entry tables);
each 5–8-bit coordinate has its own table of up to 256 uint8 entries (layout and oracle:
:mod:`vqdb.kernels.reference_multitable`), looked up for 32 vectors at once by

``vbmi``     AVX-512 VBMI byte permutes: ``vpermb`` (64 entries, 5–6 bits), ``vpermt2b`` (128 entries,
             7 bits), two of them and a blend on the index's top bit (256 entries, 8 bits);
``avx2``     one 16-entry ``vpshufb`` per sub-table, the lanes of other sub-tables zeroed by a saturating add
             that sets their index's top bit (2, 4, 8, 16 shuffles for 5, 6, 7, 8 bits);
``generic``  a plain loop (also the pure-Python twin under ``NUMBA_DISABLE_JIT=1``).

The integer sums do not depend on the variant (tests check each against the oracle). The scan itself is
the nibble scan's contract (:mod:`.scan`): per block an upper bound from the largest integer sums of every
group, per vector an upper bound ``estimate + rounding bound``, and an exact float re-score (nibble parts,
then wide groups, float64, the oracle's order) of every vector that can still enter a pair's heap.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import config as _nb_config
from numba import njit, prange, types

from ._config import CACHE as _CACHE
from ._config import twin
from .accumulate import QMAX, SUB, _item_sums
from .isa import _prefetch, host_cpu
from .rescore import score_of, slots_sum, slots_sum_four
from .scan import _NEG_INF, _block_top, _keep_reaching, _low_offer
from .select import heap_offer, merge_one

WINDOW = 256  # wide coordinates summed in uint16 lanes before widening (256 * 255 < 65536)
L1_TABLE_BYTES = 16 << 10  # a pair's wide tables up to this size: sums block by block (_wide_item_sums)


def _host_wide_isa() -> str:
    """'vbmi' (AVX-512 VBMI + BW), 'avx2' or 'generic' for the CPU numba compiles for (:func:`.isa.host_cpu`)."""
    host = host_cpu()
    if host is None or not host[1].startswith(("x86_64", "i686", "i386")):
        return "generic"
    if {"+avx512vbmi", "+avx512bw", "+avx512f"} <= host[0]:
        return "vbmi"
    return "avx2" if "+avx2" in host[0] else "generic"


WIDE_ISA = _host_wide_isa()


# ------------------------------------------------------------------------------------------------
# the inner loop: exact uint8 table sums of wide coordinates for 32-vector blocks
# ------------------------------------------------------------------------------------------------
def _make_wide_window(nq: int, bits: int, isa: str):
    """Intrinsic ``window(blocks, cbase, bstride, nblk, luts, lbases, wmul, ncoord, sums, sbase, qstride,
    first, mx, mbase, mqstride)``: the wide twin of :func:`.isa._make_window`.

    For ``nblk`` blocks (block b's ``ncoord`` 32-byte coordinate steps at ``cbase + b * bstride`` of the
    uint8 1-D ``blocks``) and ``nq`` queries (query j's tables at ``lbases[j]`` of the uint8 1-D ``luts``,
    one table of ``table_width(bits)`` bytes per coordinate, consecutive), add the exact sums over the
    ``ncoord`` (<= 256) coordinates, times the integer weight ``wmul[j]``, to the int32 ``sums`` at
    ``sbase + j * qstride + 32 * b + v`` (store
    when ``first`` != 0) and write each block's largest updated sum to ``mx[mbase + j * mqstride + b]``.
    """
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    from ..reference_multitable import table_width

    tw = table_width(bits)
    i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
    v16, v32, v64 = ir.VectorType(i8, 16), ir.VectorType(i8, 32), ir.VectorType(i8, 64)
    w32 = ir.VectorType(i16, 32)
    d32 = ir.VectorType(i32, 32)

    def lookup(builder, tptr, idx):
        """<32 x i8> table entries of the 32 indices ``idx`` (table of ``tw`` bytes at ``tptr``)."""
        mod = builder.module

        def load(off, vt):
            return builder.load(
                builder.bitcast(builder.gep(tptr, [ir.Constant(i64, off)]), vt.as_pointer()), align=1
            )

        if isa == "vbmi":
            wide = builder.shuffle_vector(idx, idx, ir.Constant(ir.VectorType(i32, 64), list(range(64))))
            if tw == 64:
                fn = cgutils.get_or_insert_function(
                    mod, ir.FunctionType(v64, [v64, v64]), "llvm.x86.avx512.permvar.qi.512"
                )
                r = builder.call(fn, [load(0, v64), wide])
            else:
                fn = cgutils.get_or_insert_function(
                    mod, ir.FunctionType(v64, [v64, v64, v64]), "llvm.x86.avx512.vpermi2var.qi.512"
                )
                r = builder.call(fn, [load(0, v64), wide, load(64, v64)])
                if tw == 256:
                    r1 = builder.call(fn, [load(128, v64), wide, load(192, v64)])
                    neg = builder.icmp_signed("<", wide, ir.Constant(v64, [0] * 64))
                    r = builder.select(neg, r1, r)
            return builder.shuffle_vector(r, r, ir.Constant(ir.VectorType(i32, 32), list(range(32))))
        if isa == "avx2":
            shuf = cgutils.get_or_insert_function(
                mod, ir.FunctionType(v32, [v32, v32]), "llvm.x86.avx2.pshuf.b"
            )
            sat = cgutils.get_or_insert_function(mod, ir.FunctionType(v32, [v32, v32]), "llvm.uadd.sat.v32i8")
            dup = ir.Constant(ir.VectorType(i32, 32), list(range(16)) * 2)
            bias = ir.Constant(v32, [0x70] * 32)
            out = ir.Constant(v32, [0] * 32)
            for h in range(1 << (bits - 4)):  # sub-table h serves the indices whose high nibble is h
                t = load(16 * h, v16)
                t2 = builder.shuffle_vector(t, t, dup)
                sel = builder.call(sat, [builder.xor(idx, ir.Constant(v32, [h << 4] * 32)), bias])
                out = builder.or_(out, builder.call(shuf, [t2, sel]))
            return out
        raise ValueError(f"no intrinsic window for ISA {isa!r}")

    def hmax(builder, v, width):
        while width > 1:
            width //= 2
            lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, width), list(range(width))))
            hi = builder.shuffle_vector(
                v, v, ir.Constant(ir.VectorType(i32, width), list(range(width, 2 * width)))
            )
            v = builder.select(builder.icmp_signed(">", lo, hi), lo, hi)
        return builder.extract_element(v, ir.Constant(i32, 0))

    @intrinsic
    def window(
        typingctx,
        blocks,
        cbase,
        bstride,
        nblk,
        luts,
        lbases,
        wmul,
        ncoord,
        sums,
        sbase,
        qstride,
        first,
        mx,
        mbase,
        mqstride,
    ):
        sig = types.void(
            blocks, types.intp, types.intp, types.intp, luts, lbases, wmul, types.intp, sums, types.intp,
            types.intp, types.intp, mx, types.intp, types.intp,
        )  # fmt: skip

        def codegen(context, builder, signature, args):
            (blocks_v, cbase_v, bstride_v, nblk_v, luts_v, lbases_v, wmul_v, ncoord_v, sums_v, sbase_v,
             qstride_v, first_v, mx_v, mbase_v, mqstride_v) = args  # fmt: skip
            bdata = context.make_array(signature.args[0])(context, builder, blocks_v).data
            ldata = context.make_array(signature.args[4])(context, builder, luts_v).data
            lbdata = context.make_array(signature.args[5])(context, builder, lbases_v).data
            wdata = context.make_array(signature.args[6])(context, builder, wmul_v).data
            sdata = context.make_array(signature.args[8])(context, builder, sums_v).data
            mdata = context.make_array(signature.args[12])(context, builder, mx_v).data
            is_first = builder.icmp_signed("!=", first_v, ir.Constant(i64, 0))
            lptrs = [
                builder.gep(ldata, [builder.load(builder.gep(lbdata, [ir.Constant(i64, j)]))])
                for j in range(nq)
            ]
            accs = [cgutils.alloca_once(builder, w32) for _ in range(nq)]
            undef32 = ir.Constant(d32, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, 32), [0] * 32)
            wvecs = []
            for j in range(nq):
                wj = builder.trunc(builder.load(builder.gep(wdata, [ir.Constant(i64, j)])), i32)
                wvecs.append(
                    builder.shuffle_vector(
                        builder.insert_element(undef32, wj, ir.Constant(i32, 0)), undef32, splat
                    )
                )
            with cgutils.for_range(builder, nblk_v) as bl:
                cptr = builder.gep(bdata, [builder.add(cbase_v, builder.mul(bl.index, bstride_v))])
                for a in accs:
                    builder.store(ir.Constant(w32, None), a)
                with cgutils.for_range(builder, ncoord_v) as loop:
                    off = builder.mul(loop.index, ir.Constant(i64, 32))
                    idx = builder.load(builder.bitcast(builder.gep(cptr, [off]), v32.as_pointer()), align=1)
                    toff = builder.mul(loop.index, ir.Constant(i64, tw))
                    for j in range(nq):
                        r = lookup(builder, builder.gep(lptrs[j], [toff]), idx)
                        builder.store(builder.add(builder.load(accs[j]), builder.zext(r, w32)), accs[j])
                for j in range(nq):
                    base = builder.add(
                        builder.add(sbase_v, builder.mul(qstride_v, ir.Constant(i64, j))),
                        builder.mul(bl.index, ir.Constant(i64, 32)),
                    )
                    p = builder.bitcast(builder.gep(sdata, [base]), d32.as_pointer())
                    v = builder.mul(builder.zext(builder.load(accs[j]), d32), wvecs[j])
                    v = builder.select(is_first, v, builder.add(builder.load(p, align=4), v))
                    builder.store(v, p, align=4)
                    mpos = builder.add(
                        builder.add(mbase_v, builder.mul(mqstride_v, ir.Constant(i64, j))), bl.index
                    )
                    builder.store(hmax(builder, v, 32), builder.gep(mdata, [mpos]))
            return context.get_dummy_value()

        return sig, codegen

    return window


def _make_loop_window(nq: int, bits: int):
    """The portable twin of :func:`_make_wide_window` (a plain numba loop; pure Python without the JIT)."""
    tw = 64 if bits <= 6 else 1 << bits

    @njit(cache=_CACHE, nogil=True)
    def window(
        blocks,
        cbase,
        bstride,
        nblk,
        luts,
        lbases,
        wmul,
        ncoord,
        sums,
        sbase,
        qstride,
        first,
        mx,
        mbase,
        mqstride,
    ):
        for b in range(nblk):
            c0 = cbase + b * bstride
            for j in range(nq):
                o = sbase + j * qstride + 32 * b
                best = np.int32(-2147483648)
                for v in range(32):
                    acc = 0
                    for t in range(ncoord):
                        acc += luts[lbases[j] + t * tw + blocks[c0 + 32 * t + v]]
                    acc *= wmul[j]
                    s = np.int32(acc) if first else np.int32(sums[o + v] + acc)
                    sums[o + v] = s
                    best = max(best, s)
                mx[mbase + j * mqstride + b] = best

    return window


def make_windows(isa: str):
    """{(nq, bits): window} for nq in (1, 2), bits in 5..8 (``isa`` as :data:`WIDE_ISA`; tests build each)."""
    if isa == "generic" or _nb_config.DISABLE_JIT:
        return {(nq, b): _make_loop_window(nq, b) for nq in (1, 2) for b in (5, 6, 7, 8)}
    return {(nq, b): _make_wide_window(nq, b, isa) for nq in (1, 2) for b in (5, 6, 7, 8)}


_W = make_windows(WIDE_ISA)
_w5a, _w6a, _w7a, _w8a = (_W[(1, b)] for b in (5, 6, 7, 8))
_w5b, _w6b, _w7b, _w8b = (_W[(2, b)] for b in (5, 6, 7, 8))


# ------------------------------------------------------------------------------------------------
# named arrays
# ------------------------------------------------------------------------------------------------
class WideCodes(NamedTuple):
    """The wide coordinates of a segment in scan layout (positions = padded rows, 32 per block)."""

    blocks: np.ndarray  # (nb * K * 32,) uint8: block b, coordinate c, vector v at (b*K + c)*32 + v
    rows: np.ndarray  # (N, K) uint8 the same codes in row order (re-scoring)
    ncoords: int  # K
    part_coords: np.ndarray  # (R + 1,) int64 coordinate bounds of the runs of one bit width (the slices)
    part_bits: np.ndarray  # (R,) int64 bits of each run


class WideQueries(NamedTuple):
    """Wide tables of m queries (row of ``stride`` entries per query, coordinate c's table at ``coff[c]``)
    and the combined integer estimate: the float sum of a vector is ``T * inv + off`` within ``err``, with
    ``T = A_nibble + Σ_r weight_r · A_r`` (the nibble group's and each wide run's exact table sums)."""

    luts: np.ndarray  # (m * stride,) uint8
    fluts: np.ndarray  # (m * stride,) float32 the float tables (the exact score)
    stride: int
    coff: np.ndarray  # (K,) int64
    weight: np.ndarray  # (m, R) int64 integer weight of each wide run's sums
    inv: np.ndarray  # (m,) float32
    off: np.ndarray  # (m,) float32
    err: np.ndarray  # (m,) float32


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def _wide_float_tables(q, values, c0, coff, stride, fl_out, tops, col):
    """Float tables of one wide group (q (m, k) float32 rotated queries of one slice, values (2**bits,)
    float64) for coordinates [c0, c0 + k) of the rows ``fl_out`` (m * stride,) float32, and the group's
    largest table range into ``tops[:, col]`` (float64) (``reference_multitable.float_tables`` / ``row_tops``)."""
    m, k = q.shape
    ne = values.shape[0]
    for i in prange(m):
        top = 0.0
        for c in range(k):
            o = i * stride + coff[c0 + c]
            qc = np.float64(q[i, c])
            lo = np.inf
            hi = -np.inf
            for e in range(ne):
                x = np.float32(qc * values[e])
                fl_out[o + e] = x
                lo = min(lo, np.float64(x))
                hi = max(hi, np.float64(x))
            top = max(top, hi - lo)
        tops[i, col] = top


wide_float_tables_serial, wide_float_tables = twin(_wide_float_tables)


@njit(cache=_CACHE, nogil=True)
def _quantize_row(fl, o, ne, a, u8_out, acc, i):
    """One table row fl[o : o + ne] with scale a -> u8_out[o : o + ne]; adds its terms to acc[i]."""
    lo = np.float64(fl[o])
    for e in range(1, ne):
        lo = min(lo, np.float64(fl[o + e]))
    worst = 0.0
    sq = 0.0
    big = 0.0
    for e in range(ne):
        x = np.float64(fl[o + e])
        d = x - lo
        u = min(max(np.rint(d * a), 0.0), 255.0)
        u8_out[o + e] = np.uint8(u)
        r = d - u / a
        worst = max(worst, abs(r))
        sq += r * r
        big = max(big, abs(x))
    acc[i, 0] += lo
    acc[i, 1] += worst
    acc[i, 2] += sq / ne
    acc[i, 3] += big


def _quantize_nibble(fl, s0, s1, a, u8_out, acc):
    """Slots [s0, s1) of the nibble float LUTs fl (m, 2S, 16) float32 with scales a (m,) float64 into
    u8_out (m, 2S, 16) uint8; adds to acc (m, 4) float64 (``reference_multitable.quantize_rows``)."""
    m = fl.shape[0]
    flat = fl.reshape(-1)
    out = u8_out.reshape(-1)
    width = fl.shape[1] * 16
    for i in prange(m):
        for s in range(s0, s1):
            _quantize_row(flat, i * width + 16 * s, 16, a[i], out, acc, i)


quantize_nibble_serial, quantize_nibble = twin(_quantize_nibble)


def _quantize_wide(fl, c0, c1, ne, coff, stride, a, u8_out, acc):
    """Coordinates [c0, c1) (tables of ``ne`` entries) of the wide float tables fl (m * stride,) float32
    with scales a (m,) float64 into u8_out (m * stride,) uint8; adds to acc (m, 4) float64."""
    m = acc.shape[0]
    for i in prange(m):
        for c in range(c0, c1):
            _quantize_row(fl, i * stride + coff[c], ne, a[i], u8_out, acc, i)


quantize_wide_serial, quantize_wide = twin(_quantize_wide)


def _wide_tables(qw, values, run_coords, run_bits, coff, stride, inv_n, rows_n, limit, sigmas, fl_out, u8_out,
                 inv, weight, requant, woff, werr):  # fmt: skip
    """All wide tables of m queries in one call: float tables, each run's largest range, the unit and run
    weights (``reference_multitable.wide_weights``), the uint8 tables and the wide offset / bound
    (``quantize_rows`` + ``row_bounds``), with the oracles' float64 operations.

    qw (m, K) float32 wide query coordinates (runs in order); values (R, 256) float64 each run's levels;
    run_coords (R + 1,), run_bits (R,) int64; inv_n (m,) float32 the nibble step (the unit), or all <= 0
    without nibble parts; rows_n nibble tables per query; limit the largest T (``MAX_COMBINED``). Writes
    fl_out / u8_out (m * stride,), inv (m,) float32, weight (m, R) int64, requant (m,) bool (the unit grew:
    the nibble tables need quantizing again), woff / werr (m,) float64.
    """
    m = qw.shape[0]
    R = run_bits.shape[0]
    for i in prange(m):
        tops = np.zeros(R)
        for r in range(R):
            ne = 1 << run_bits[r]
            top = 0.0
            for c in range(run_coords[r], run_coords[r + 1]):
                o = i * stride + coff[c]
                qc = np.float64(qw[i, c])
                lo = np.inf
                hi = -np.inf
                for e in range(ne):
                    x = np.float32(qc * values[r, e])
                    fl_out[o + e] = x
                    lo = min(lo, np.float64(x))
                    hi = max(hi, np.float64(x))
                top = max(top, hi - lo)
            tops[r] = top
        if inv_n[i] > 0:
            u = np.float32(inv_n[i])
        else:
            first = 0.0
            for r in range(R):
                first = max(first, tops[r] / 255.0)
            u = np.float32(first if first > 0 else 1.0)
        grew = False
        while True:
            big = rows_n
            for r in range(R):
                w = max(1.0, np.ceil((tops[r] / 255.0) / np.float64(u)))
                weight[i, r] = np.int64(w)
                big += weight[i, r] * (run_coords[r + 1] - run_coords[r])
            if 255 * big <= limit:
                break
            u = np.float32(u * np.float32(2.0))
            grew = True
        inv[i] = u
        requant[i] = grew and rows_n > 0
        acc = np.zeros((1, 4))
        for r in range(R):
            a = 1.0 / (weight[i, r] * np.float64(u))
            for c in range(run_coords[r], run_coords[r + 1]):
                _quantize_row(fl_out, i * stride + coff[c], 1 << run_bits[r], a, u8_out, acc, 0)
        bound = acc[0, 1] + 1e-5 * (acc[0, 3] + 1e-30)
        if sigmas > 0:
            bound = min(bound, sigmas * np.sqrt(acc[0, 2]))
        woff[i] = acc[0, 0]
        werr[i] = bound


wide_tables_serial, wide_tables = twin(_wide_tables)


# ------------------------------------------------------------------------------------------------
# accumulation
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, inline="always")
def _wide_window(bits, two, blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs):
    """The window of ``bits`` for one query or two (``two``), inlined into its caller: as a call, passing its
    six arrays cost about as much as a one-block window's lookups."""
    if bits == 5:
        if two:
            _w5b(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
        else:
            _w5a(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
    elif bits == 6:
        if two:
            _w6b(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
        else:
            _w6a(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
    elif bits == 7:
        if two:
            _w7b(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
        else:
            _w7a(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
    else:
        if two:
            _w8b(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)
        else:
            _w8a(blocks, cb, bs, nblk, luts, lbases, wm, w, sums, sb, qstr, first, mx, mb, mqs)


@njit(cache=_CACHE, nogil=True)
def _wide_item_sums(wide, luts, stride, coff, weight, qs, nq, b0, nblk, lbases, wmul, first, sums, mx):
    """Add ``weight[qs[j], r]`` x the exact wide-table sum over run r's coordinates, for every run in turn,
    of query qs[j], vector v of block b0 + b, to sums[j*cap + 32*b + v] (cap = len(sums) //
    QMAX; ``first``: store instead), and write the largest updated sum of each block to mx[j*SUB + b].

    Where a pair's tables fit in L1 (:data:`L1_TABLE_BYTES`), each pair of queries in turn goes block by
    block, each block's runs in turn, so the block's codes are read in one sequential pass; else run by run
    over the ``nblk`` blocks (each run's tables stay in L1 while its codes stride across the blocks).
    WordNet, 115,659 vectors, per query, nibble + wide sums: turbo-pca-3 (88 wide coordinates, 11 KB of
    tables a pair) 2 queries 1.14 -> 0.77 ms, 4 queries 0.79 -> 0.62 ms; turbo-pca-4 (184, 26 KB) stays run
    by run for pairs (block by block 1.07-1.12x slower) and goes block by block for one query (wide sums
    1.80 -> 0.85 ms)."""
    K = wide.ncoords
    cap = sums.shape[0] // QMAX
    n_runs = wide.part_coords.shape[0] - 1
    if n_runs > 1 and min(nq, 2) * stride <= L1_TABLE_BYTES:
        for j0 in range(0, nq, 2):
            two = nq - j0 >= 2
            for b in range(nblk):
                fb = first
                cb = (b0 + b) * K * 32
                for g in range(n_runs):
                    c0 = wide.part_coords[g]
                    c1 = wide.part_coords[g + 1]
                    for j in range(j0, min(nq, j0 + 2)):
                        wmul[j - j0] = weight[qs[j], g]
                    while c0 < c1:
                        w = min(WINDOW, c1 - c0)
                        for j in range(j0, min(nq, j0 + 2)):
                            lbases[j - j0] = qs[j] * stride + coff[c0]
                        _wide_window(
                            wide.part_bits[g], two, wide.blocks, cb + 32 * c0, K * 32, 1, luts, lbases, wmul, w,
                            sums, j0 * cap + 32 * b, cap, fb, mx, j0 * SUB + b, SUB,
                        )  # fmt: skip
                        c0 += w
                        fb = 0
        return
    for g in range(n_runs):
        c0 = wide.part_coords[g]
        c1 = wide.part_coords[g + 1]
        bits = wide.part_bits[g]
        while c0 < c1:
            w = min(WINDOW, c1 - c0)
            cb = (b0 * K + c0) * 32
            for j0 in range(0, nq, 2):
                for j in range(j0, min(nq, j0 + 2)):
                    lbases[j - j0] = qs[j] * stride + coff[c0]
                    wmul[j - j0] = weight[qs[j], g]
                _wide_window(
                    bits, nq - j0 >= 2, wide.blocks, cb, K * 32, nblk, luts, lbases, wmul, w, sums,
                    j0 * cap, cap, first, mx, j0 * SUB, SUB,
                )  # fmt: skip
            c0 += w
            first = 0


def _accumulate_wide(wide, wq, m):
    """Exact integer wide sums of every query and position (weights 1): (m, N) uint32 (the oracle's twin)."""
    K = wide.ncoords
    nb = wide.blocks.shape[0] // (32 * K) if K > 0 else 0
    out = np.zeros((m, nb * 32), dtype=np.uint32)
    nchunks = (nb + SUB - 1) // SUB
    ngroups = (m + QMAX - 1) // QMAX
    ones = np.ones((m, wide.part_coords.shape[0] - 1), dtype=np.int64)
    for task in prange(nchunks * ngroups):
        c = task // ngroups
        qg = task - c * ngroups
        b0 = c * SUB
        nblk = min(SUB, nb - b0)
        nq = min(QMAX, m - qg * QMAX)
        qs = np.arange(qg * QMAX, qg * QMAX + nq).astype(np.int64)
        lbases = np.empty(QMAX, dtype=np.int64)
        wmul = np.empty(QMAX, dtype=np.int64)
        sums = np.empty(QMAX * 32 * SUB, dtype=np.int32)
        mx = np.empty(QMAX * SUB, dtype=np.int32)
        _wide_item_sums(wide, wq.luts, wq.stride, wq.coff, ones, qs, nq, b0, nblk, lbases, wmul, 1, sums, mx)
        for j in range(nq):
            for v in range(32 * nblk):
                out[qs[j], 32 * b0 + v] = np.uint32(sums[j * 32 * SUB + v])
    return out


accumulate_wide_serial, accumulate_wide = twin(_accumulate_wide)


# ------------------------------------------------------------------------------------------------
# exact re-score, bounds, candidates
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def rescore_mixed(codes, wide, qy, wq, beta, i, r):
    """Exact float score of position r for query i: ``factor · (Σ nibble slots + Σ wide coordinates)``
    (float64, in order), then the affine map (``reference_multitable.exact_scores_ref``)."""
    acc = slots_sum(codes.rows, qy.fluts, i, r, 0, codes.nsteps, 0.0)
    base = i * wq.stride
    for c in range(wide.ncoords):
        acc += wq.fluts[base + wq.coff[c] + wide.rows[r, c]]
    return score_of(codes.factors[0, r] * acc, qy.alpha, qy.qconst, qy.cterm, codes.block_list, beta, i, r)


@njit(cache=_CACHE, nogil=True)
def rescore_mixed_four(codes, wide, qy, wq, beta, i, pos, out):
    """:func:`rescore_mixed` of the four positions ``pos`` into ``out`` (four interleaved chains, the same
    operations in the same order, so the same results)."""
    r0, r1, r2, r3 = pos[0], pos[1], pos[2], pos[3]
    a0, a1, a2, a3 = slots_sum_four(
        codes.rows, qy.fluts, i, r0, r1, r2, r3, 0, codes.nsteps, 0.0, 0.0, 0.0, 0.0
    )
    base = i * wq.stride
    wr = wide.rows
    for c in range(wide.ncoords):
        o = base + wq.coff[c]
        a0 += wq.fluts[o + wr[r0, c]]
        a1 += wq.fluts[o + wr[r1, c]]
        a2 += wq.fluts[o + wr[r2, c]]
        a3 += wq.fluts[o + wr[r3, c]]
    f = codes.factors
    bl = codes.block_list
    out[0] = score_of(f[0, r0] * a0, qy.alpha, qy.qconst, qy.cterm, bl, beta, i, r0)
    out[1] = score_of(f[0, r1] * a1, qy.alpha, qy.qconst, qy.cterm, bl, beta, i, r1)
    out[2] = score_of(f[0, r2] * a2, qy.alpha, qy.qconst, qy.cterm, bl, beta, i, r2)
    out[3] = score_of(f[0, r3] * a3, qy.alpha, qy.qconst, qy.cterm, bl, beta, i, r3)


@njit(cache=_CACHE, nogil=True)
def _rescore_pass(pp, ub, n, cut, q, hs, hp, low, top, codes, wide, qy, wq, beta, quad, psc):
    """Re-score (four chains at a time) and offer the entries of pp/ub[:n] whose bound reaches the threshold
    and ``cut``, marking them done (ub = -inf). Returns how many were re-scored."""
    thr = max(hs[0], low[0], top.floor[q])
    done = 0
    c = 0
    while c < n:
        g = 0
        while c < n and g < 4:
            u = ub[c]
            if u >= thr and u > _NEG_INF and u >= cut:
                quad[g] = pp[c]
                g += 1
                ub[c] = _NEG_INF
            c += 1
        if g == 4:
            rescore_mixed_four(codes, wide, qy, wq, beta, q, quad, psc)
        else:
            for t in range(g):
                psc[t] = rescore_mixed(codes, wide, qy, wq, beta, q, quad[t])
        for t in range(g):
            heap_offer(hs, hp, psc[t], quad[t])
        done += g
        thr = max(hs[0], low[0], top.floor[q])
    return done


@njit(cache=_CACHE, nogil=True)
def _flush(pair, q, top, codes, wide, qy, wq, beta):
    """Re-score the pending candidates of ``pair`` whose bound still reaches the threshold (the k best bounds
    first, whose exact scores raise the threshold for the rest); empties the buffer; returns the count."""
    hs = top.scores[pair]
    hp = top.pos[pair]
    low = top.lows[pair]
    cnt = top.npend[pair]
    top.npend[pair] = 0
    if cnt == 0:
        return 0
    ub = top.pend_ub[pair]
    pp = top.pend_pos[pair]
    thr = max(hs[0], low[0], top.floor[q])
    n = _keep_reaching(pp, ub, cnt, thr)
    k = hs.shape[0]
    quad = np.empty(4, dtype=np.int64)
    psc = np.empty(4, dtype=np.float32)
    done = 0
    if n > 2 * k:
        cut = -np.partition(-ub[:n], k - 1)[k - 1]
        done += _rescore_pass(pp, ub, n, cut, q, hs, hp, low, top, codes, wide, qy, wq, beta, quad, psc)
    done += _rescore_pass(pp, ub, n, _NEG_INF, q, hs, hp, low, top, codes, wide, qy, wq, beta, quad, psc)
    return done


@njit(cache=_CACHE, nogil=True)
def _scan_blocks(q, pair, c0, nblk, tsum, tmax, codes, wide, qy, wq, bias, top, tops, est, bnd):
    """Blocks [c0, c0 + nblk) of one query (its weighted sums T at ``tsum``, block maxima at ``tmax``, both
    views of the item's buffers), as the nibble scan's single-part path (:func:`.scan._scan_lut`): flat
    scans first check the sub-chunk's largest T against the segment's loosest bound, then every block's
    bound at once (branch-free), then, in each block that passes, every vector's bounds at once; the vectors
    whose upper bound reaches the threshold become pending candidates (flushed when full), and each one's
    lower bound ``s - e`` raises the threshold at once (:func:`.scan._low_offer`). ``tops`` (SUB,), ``est``
    and ``bnd`` (32,) float32 are scratch. Returns the number re-scored."""
    alpha = qy.alpha
    beta = bias.beta
    bmag = bias.bmag
    fac = codes.factors[0]
    hs = top.scores[pair]
    low = top.lows[pair]
    floor = top.floor
    pend = top.pend_pos[pair]
    pub = top.pend_ub[pair]
    cap = pend.shape[0]
    iv = wq.inv[q]
    of = wq.off[q]
    er = wq.err[q]
    rescored = 0
    thr = max(hs[0], low[0], floor[q])
    if qy.cterm.shape[1] == 1:  # one additive term for every block (no IVF lists)
        hi = tmax[0]
        for bb in range(1, nblk):
            hi = max(hi, tmax[bb])
        w = bias.whole
        b_all = alpha * qy.cterm[q, 0] + qy.qconst[q]
        if _block_top(hi, iv, of, er, w[0], w[1], b_all, w[2], w[3], alpha) < thr:
            return 0
    for bb in range(nblk):  # every block's bound at once (branch-free: vectorizes)
        blk = c0 + bb
        base = alpha * qy.cterm[q, codes.block_list[blk] + 1] + qy.qconst[q]
        tops[bb] = _block_top(
            tmax[bb], iv, of, er, codes.fmin[0, blk], codes.fmax[0, blk], base, bias.bmax[blk],
            bias.bmagmax[blk], alpha,
        )  # fmt: skip
    npend = top.npend[pair]
    for bb in range(nblk):
        thr = max(hs[0], low[0], floor[q])
        if tops[bb] < thr:
            continue
        blk = c0 + bb
        base = alpha * qy.cterm[q, codes.block_list[blk] + 1] + qy.qconst[q]
        abase = abs(base)
        p0 = 32 * blk
        if npend + 32 > cap:
            top.npend[pair] = npend
            rescored += _flush(pair, q, top, codes, wide, qy, wq, beta)
            npend = 0
            thr = max(hs[0], low[0], floor[q])
        o = 32 * bb
        for v in range(32):  # every vector's bounds at once (branch-free), then one compare each
            f = fac[p0 + v]
            a_est = alpha * (f * (np.float32(tsum[o + v]) * iv + of))
            sc = a_est + base + beta[p0 + v]
            e = alpha * (abs(f) * er) + np.float32(4e-7) * (abs(a_est) + abase + bmag[p0 + v])
            est[v] = sc + e
            bnd[v] = sc - e
        for v in range(32):
            u = est[v]
            if u >= thr and u > _NEG_INF:
                pend[npend] = p0 + v
                pub[npend] = u
                npend += 1
                _low_offer(low, bnd[v])  # s - e <= the exact score: the threshold rises now
                thr = max(thr, low[0])
    top.npend[pair] = npend
    return rescored


def _scan_mixed(codes, wide, qy, wq, bias, work, top):
    """Work items (the nibble scan's :class:`.scan.Work`): per sub-chunk the nibble and wide sums of the
    item's queries, then bounds, candidates and exact re-scores into the pairs' heaps.

    ``codes`` is a :class:`.scan.Codes` with at most one nibble group, whose ``factors`` / ``fmin`` /
    ``fmax`` hold the one factor of every part (shape (1, N), (1, nb)); ``qy`` a :class:`.scan.Queries`
    (its ``fluts``, ``alpha``, ``qconst``, ``cterm`` and the nibble ``luts`` are read)."""
    gn = codes.part_steps.shape[0] - 1
    n_tasks = work.task_ptr.shape[0] - 1
    nsteps = codes.nsteps
    wrow = wide.ncoords * 32
    for task in prange(n_tasks):
        lbases = np.empty(QMAX, dtype=np.int64)
        wmul = np.empty(QMAX, dtype=np.int64)
        sums = np.empty(QMAX * 32 * SUB, dtype=np.int32)
        mx = np.empty(QMAX * SUB, dtype=np.int32)
        qs = np.empty(QMAX, dtype=np.int64)
        tops = np.empty(SUB, dtype=np.float32)
        est = np.empty(32, dtype=np.float32)
        bnd = np.empty(32, dtype=np.float32)
        i1 = work.task_ptr[task + 1]
        for it in range(work.task_ptr[task], i1):
            b0 = work.item_b0[it]
            b1 = work.item_b1[it]
            if (
                it + 1 < i1
                and work.item_b0[it + 1] != b0
                and work.item_b1[it + 1] - work.item_b0[it + 1] <= SUB
            ):
                n0 = work.item_b0[it + 1]
                n1 = work.item_b1[it + 1]
                for x in range(n0 * nsteps * 32, n1 * nsteps * 32, 64):
                    _prefetch(codes.blocks, x)
                for x in range(n0 * wrow, n1 * wrow, 64):
                    _prefetch(wide.blocks, x)
            nq = 0
            for j in range(QMAX):
                if work.item_q[it, j] >= 0:
                    qs[nq] = work.item_q[it, j]
                    nq += 1
            for c0 in range(b0, b1, SUB):
                nblk = min(SUB, b1 - c0)
                if gn > 0:  # T = the nibble sums (one group) ...
                    _item_sums(
                        codes.blocks, nsteps, codes.part_steps, qy.luts, qs, nq, c0, nblk, lbases, sums, mx
                    )
                # ... + weight x the wide sums, and the blocks' largest T
                _wide_item_sums(
                    wide, wq.luts, wq.stride, wq.coff, wq.weight, qs, nq, c0, nblk, lbases, wmul,
                    1 if gn == 0 else 0, sums, mx,
                )  # fmt: skip
                for j in range(nq):
                    q = qs[j]
                    pair = work.item_pair[it, j]
                    top.rescored[pair] += _scan_blocks(
                        q, pair, c0, nblk, sums[j * 32 * SUB : (j + 1) * 32 * SUB], mx[j * SUB : (j + 1) * SUB],
                        codes, wide, qy, wq, bias, top, tops, est, bnd,
                    )  # fmt: skip
                    root = max(top.scores[pair, 0], top.lows[pair, 0])
                    if root > top.floor[q]:
                        top.floor[q] = root


scan_mixed_serial, scan_mixed = twin(_scan_mixed)


def _finish_mixed(codes, wide, qy, wq, bias, top, q_ptr, q0, k, out_s, out_p):
    """Per query q0 + i: flush its pairs' pending candidates, then the best k of its heaps into out_s[i] /
    out_p[i] (pre-filled -inf / -1)."""
    m = q_ptr.shape[0] - 1
    for i in prange(m):
        for h in range(q_ptr[i], q_ptr[i + 1]):
            top.rescored[h] += _flush(h, q0 + i, top, codes, wide, qy, wq, bias.beta)
        merge_one(top.scores, top.pos, q_ptr[i], q_ptr[i + 1], k, out_s, out_p, i)


finish_mixed_serial, finish_mixed = twin(_finish_mixed)
