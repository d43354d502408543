"""Fast-scan kernels (numba): 4-bit LUT shuffles over 32-vector blocks, 1-bit popcount, exact re-scoring.

Layout, LUT quantization and the oracle are in :mod:`vqdb.kernels.reference_fastscan`; the glue that
turns a quantizer's codes into that layout and picks a path is :mod:`vqdb.kernels.scanner`.

The inner loop is one LLVM intrinsic (:func:`_make_window`) emitted through ``numba.extending.intrinsic``:
per step it loads 32 code bytes, splits the nibbles, does two in-register byte shuffles against the
query's 32-byte LUT (AVX2 ``vpshufb``; SSSE3 or NEON ``tbl`` on two 16-byte halves; a portable
extract/insert loop elsewhere) and adds the bytes into four uint16 accumulators (FAISS' even/odd
trick: add the shuffled bytes as uint16 lanes and, separately, their high bytes). Up to 4 queries
share each code load. Integer results do not depend on the ISA (exact sums), so every variant is
checked against the same oracle. Under ``NUMBA_DISABLE_JIT=1`` a pure-Python window is used.

Scan contract (all paths)
-------------------------
Work items are (block range, up to 4 queries). For every scanned vector ``v`` and query ``i`` the
kernel writes an upper bound ``ub = s + e`` of the exact score into the query's slice of ``ub`` and
pushes the lower bound ``s - e`` into a small min-heap of size ``k`` (one heap per (item, query)
pair), where ``s = alpha * (cterm + Σ_p f_p (A_p * inv_p + off_p)) + beta[v] + qconst`` is the
integer estimate and ``e = alpha * Σ_p |f_p| err_p`` its error bound. :func:`collect` then keeps the
vectors whose ``ub`` reaches the k-th largest lower bound, and :func:`rescore` scores them with the
float LUT path, so the final ranking is the float path's.
"""

from __future__ import annotations

import numpy as np
from numba import config as _nb_config
from numba import njit, prange, types

from .. import envs

_CACHE = envs.numba_cache()
QMAX = 4  # queries per work item (passed over each block in pairs)
SUB = 16  # blocks per inner sub-chunk of a work item (their sums stay in L1)
TASKS = 64  # parallel tasks per kernel call (each runs a contiguous range of items)
_NEG_INF = np.float32(-np.inf)


# ------------------------------------------------------------------------------------------------
# the shuffle-accumulate window (LLVM intrinsic)
# ------------------------------------------------------------------------------------------------
def _host_isa() -> str:
    """'avx2', 'ssse3', 'neon' or 'generic' for the CPU numba compiles for."""
    try:
        import llvmlite.binding as ll

        feats = _nb_config.CPU_FEATURES
        if feats is None:
            feats = ll.get_host_cpu_features().flatten()
        triple = ll.get_process_triple()
    except Exception:  # noqa: BLE001 - any failure: portable code
        return "generic"
    flags = set(feats.split(","))
    if triple.startswith(("x86_64", "i686", "i386")):
        if "+avx2" in flags:
            return "avx2"
        if "+ssse3" in flags:
            return "ssse3"
        return "generic"
    if triple.startswith(("aarch64", "arm64")):
        return "neon"
    return "generic"


ISA = _host_isa()


def _make_window(nq: int):
    """Intrinsic ``window(blocks, cbase, bstride, nblk, luts, lbases, nsteps, sums, sbase, qstride, first,
    mx, mbase, mqstride)``.

    For ``nblk`` consecutive blocks (codes of block b at ``cbase + b * bstride`` of the uint8 1-D
    ``blocks``) and ``nq`` queries (query j's LUT steps at ``lbases[j]`` of the uint8 1-D ``luts``), add
    the exact integer LUT sums of ``nsteps`` steps (<= 256) to the int32 1-D ``sums`` at
    ``sbase + j * qstride + 32 * b + v`` (v = vector in the block; ``first`` != 0: store instead of
    add), and write the largest of the block's 32 updated sums to ``mx[mbase + j * mqstride + b]``.
    """
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
    v32 = ir.VectorType(i8, 32)
    v16 = ir.VectorType(i8, 16)
    w16 = ir.VectorType(i16, 16)
    d32 = ir.VectorType(i32, 16)

    def shuffle(builder, table, idx):
        mod = builder.module
        if ISA == "avx2":
            fn = cgutils.get_or_insert_function(
                mod, ir.FunctionType(v32, [v32, v32]), "llvm.x86.avx2.pshuf.b"
            )
            return builder.call(fn, [table, idx])
        if ISA in ("ssse3", "neon"):
            name = "llvm.x86.ssse3.pshuf.b.128" if ISA == "ssse3" else "llvm.aarch64.neon.tbl1.v16i8"
            fn = cgutils.get_or_insert_function(mod, ir.FunctionType(v16, [v16, v16]), name)
            undef = ir.Constant(v32, ir.Undefined)
            halves = []
            for h in range(2):
                sel = ir.Constant(ir.VectorType(i32, 16), list(range(16 * h, 16 * h + 16)))
                halves.append(
                    builder.call(
                        fn,
                        [builder.shuffle_vector(table, undef, sel), builder.shuffle_vector(idx, undef, sel)],
                    )
                )
            return builder.shuffle_vector(
                halves[0], halves[1], ir.Constant(ir.VectorType(i32, 32), list(range(32)))
            )
        out = ir.Constant(v32, [0] * 32)
        for lane in range(32):
            j = builder.zext(builder.extract_element(idx, ir.Constant(i32, lane)), i32)
            pos = builder.add(j, ir.Constant(i32, 16 * (lane // 16)))
            out = builder.insert_element(out, builder.extract_element(table, pos), ir.Constant(i32, lane))
        return out

    def lane_sums(builder, a_all, a_odd):
        """(Σ bytes as uint16 lanes, Σ odd bytes) -> <16 x i32>: per vector, lane-0 byte + lane-1 byte."""
        even = builder.sub(a_all, builder.shl(a_odd, ir.Constant(w16, [8] * 16)))
        inter = ir.Constant(ir.VectorType(i32, 32), [x for e in range(16) for x in (e, 16 + e)])
        bytes32 = builder.zext(builder.shuffle_vector(even, a_odd, inter), ir.VectorType(i32, 32))
        undef = ir.Constant(ir.VectorType(i32, 32), ir.Undefined)
        lo = builder.shuffle_vector(bytes32, undef, ir.Constant(ir.VectorType(i32, 16), list(range(16))))
        hi = builder.shuffle_vector(bytes32, undef, ir.Constant(ir.VectorType(i32, 16), list(range(16, 32))))
        return builder.add(lo, hi)

    def vmax(builder, a, b):
        return builder.select(builder.icmp_signed(">", a, b), a, b)

    def hmax(builder, v):
        """Largest lane of a <16 x i32> (halving shuffles)."""
        width = 16
        while width > 1:
            width //= 2
            undef = ir.Constant(ir.VectorType(i32, 2 * width), ir.Undefined)
            lo = builder.shuffle_vector(
                v, undef if width * 2 == 16 else v, ir.Constant(ir.VectorType(i32, width), list(range(width)))
            )
            hi = builder.shuffle_vector(
                v,
                undef if width * 2 == 16 else v,
                ir.Constant(ir.VectorType(i32, width), list(range(width, 2 * width))),
            )
            v = vmax(builder, lo, hi)
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
        nsteps,
        sums,
        sbase,
        qstride,
        first,
        mx,
        mbase,
        mqstride,
    ):
        sig = types.void(
            blocks,
            types.intp,
            types.intp,
            types.intp,
            luts,
            lbases,
            types.intp,
            sums,
            types.intp,
            types.intp,
            types.intp,
            mx,
            types.intp,
            types.intp,
        )

        def codegen(context, builder, signature, args):
            (
                blocks_v,
                cbase_v,
                bstride_v,
                nblk_v,
                luts_v,
                lbases_v,
                nsteps_v,
                sums_v,
                sbase_v,
                qstride_v,
                first_v,
                mx_v,
                mbase_v,
                mqstride_v,
            ) = args
            mdata = context.make_array(signature.args[11])(context, builder, mx_v).data
            is_first = builder.icmp_signed("!=", first_v, ir.Constant(i64, 0))
            bdata = context.make_array(signature.args[0])(context, builder, blocks_v).data
            ldata = context.make_array(signature.args[4])(context, builder, luts_v).data
            lbdata = context.make_array(signature.args[5])(context, builder, lbases_v).data
            sdata = context.make_array(signature.args[7])(context, builder, sums_v).data
            lptrs = [
                builder.gep(ldata, [builder.load(builder.gep(lbdata, [ir.Constant(i64, j)]))])
                for j in range(nq)
            ]
            accs = [cgutils.alloca_once(builder, w16) for _ in range(4 * nq)]
            mask = ir.Constant(v32, [15] * 32)
            four = ir.Constant(v32, [4] * 32)
            eight = ir.Constant(w16, [8] * 16)
            with cgutils.for_range(builder, nblk_v) as bl:
                cptr = builder.gep(bdata, [builder.add(cbase_v, builder.mul(bl.index, bstride_v))])
                for a in accs:
                    builder.store(ir.Constant(w16, None), a)
                with cgutils.for_range(builder, nsteps_v) as loop:
                    off = builder.mul(loop.index, ir.Constant(i64, 32))
                    c = builder.load(builder.bitcast(builder.gep(cptr, [off]), v32.as_pointer()), align=1)
                    lo = builder.and_(c, mask)
                    hi = builder.and_(builder.lshr(c, four), mask)
                    for j in range(nq):
                        t = builder.load(
                            builder.bitcast(builder.gep(lptrs[j], [off]), v32.as_pointer()), align=1
                        )
                        rlo = builder.bitcast(shuffle(builder, t, lo), w16)
                        rhi = builder.bitcast(shuffle(builder, t, hi), w16)
                        vals = (rlo, builder.lshr(rlo, eight), rhi, builder.lshr(rhi, eight))
                        for a, v in zip(accs[4 * j : 4 * j + 4], vals):
                            builder.store(builder.add(builder.load(a), v), a)
                for j in range(nq):
                    base = builder.add(
                        builder.add(sbase_v, builder.mul(qstride_v, ir.Constant(i64, j))),
                        builder.mul(bl.index, ir.Constant(i64, 32)),
                    )
                    halves = []
                    for h in range(2):  # h = 0: vectors 0..15 (low nibbles), 1: vectors 16..31
                        v = lane_sums(
                            builder, builder.load(accs[4 * j + 2 * h]), builder.load(accs[4 * j + 2 * h + 1])
                        )
                        p = builder.bitcast(
                            builder.gep(sdata, [builder.add(base, ir.Constant(i64, 16 * h))]),
                            d32.as_pointer(),
                        )
                        old = builder.load(p, align=4)
                        v = builder.select(is_first, v, builder.add(old, v))
                        builder.store(v, p, align=4)
                        halves.append(v)
                    mpos = builder.add(
                        builder.add(mbase_v, builder.mul(mqstride_v, ir.Constant(i64, j))), bl.index
                    )
                    builder.store(
                        hmax(builder, vmax(builder, halves[0], halves[1])), builder.gep(mdata, [mpos])
                    )
            return context.get_dummy_value()

        return sig, codegen

    return window


def _py_window(nq: int):
    """Pure-Python twin of the intrinsic (``NUMBA_DISABLE_JIT=1``)."""

    def window(
        blocks, cbase, bstride, nblk, luts, lbases, nsteps, sums, sbase, qstride, first, mx, mbase, mqstride
    ):
        lane = np.arange(32) // 16 * 16
        for b in range(nblk):
            c0 = cbase + b * bstride
            c = blocks[c0 : c0 + 32 * nsteps].reshape(nsteps, 32).astype(np.int64)
            for j in range(nq):
                t = luts[lbases[j] : lbases[j] + 32 * nsteps].reshape(nsteps, 32).astype(np.int64)
                for h, nib in enumerate((c & 15, c >> 4)):
                    r = np.take_along_axis(t, nib + lane, axis=1).sum(axis=0)
                    o = sbase + j * qstride + 32 * b + 16 * h
                    add = (r[:16] + r[16:]).astype(np.int32)
                    sums[o : o + 16] = add if first else sums[o : o + 16] + add
                o = sbase + j * qstride + 32 * b
                mx[mbase + j * mqstride + b] = sums[o : o + 32].max()

    return window


if _nb_config.DISABLE_JIT:
    _win1, _win2 = (_py_window(n) for n in (1, 2))
else:
    _win1, _win2 = (_make_window(n) for n in (1, 2))


# ------------------------------------------------------------------------------------------------
# bit helpers
# ------------------------------------------------------------------------------------------------
def _make_popcount():
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def popcount64(typingctx, x):
        sig = types.int64(types.uint64)

        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(64), [ir.IntType(64)]), "llvm.ctpop.i64"
            )
            return builder.call(fn, [args[0]])

        return sig, codegen

    return popcount64


if _nb_config.DISABLE_JIT:

    def _popcount(x):
        return bin(int(x)).count("1")
else:
    _popcount = _make_popcount()


def _make_prefetch():
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, start):
        """Hint the cache to fetch ``arr[start]``'s line (read, high locality)."""
        sig = types.void(arr, types.intp)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            ptr = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                "llvm.prefetch.p0i8" if hasattr(ir, "PointerType") else "llvm.prefetch",
            )
            builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


if _nb_config.DISABLE_JIT:

    def _prefetch(arr, start):
        return None
else:
    _prefetch = _make_prefetch()


@njit(cache=_CACHE, nogil=True)
def _item_sums(blocks, nsteps, part_steps, luts, qs, nq, b0, nblk, lbases, sums, mx):
    """sums[(j*P + p)*cap + 32*b + v] = exact LUT sum of part p, query qs[j], vector v of block b0 + b
    (cap = len(sums) // (QMAX * P)); mx[(j*P + p)*SUB + b] = the largest of those 32 sums."""
    n_parts = part_steps.shape[0] - 1
    cap = sums.shape[0] // (QMAX * n_parts)
    for p in range(n_parts):
        s0 = part_steps[p]
        s1 = part_steps[p + 1]
        first = 1
        while s0 < s1:
            w = min(256, s1 - s0)
            cb = (b0 * nsteps + s0) * 32
            bs = nsteps * 32
            qstr = n_parts * cap
            for j0 in range(0, nq, 2):  # pairs of queries share each code load (more spill on AVX2)
                for j in range(j0, min(nq, j0 + 2)):
                    lbases[j - j0] = (qs[j] * nsteps + s0) * 32
                sb = p * cap + j0 * qstr
                mb = p * SUB + j0 * n_parts * SUB
                if nq - j0 >= 2:
                    _win2(blocks, cb, bs, nblk, luts, lbases, w, sums, sb, qstr, first, mx, mb, n_parts * SUB)
                else:
                    _win1(blocks, cb, bs, nblk, luts, lbases, w, sums, sb, qstr, first, mx, mb, n_parts * SUB)
            s0 += w
            first = 0


@njit(cache=_CACHE, nogil=True)
def _heap_push(heap, x):
    """Min-heap of fixed size (root heap[0] = smallest kept): keep x if larger than the root."""
    if x <= heap[0]:
        return
    n = heap.shape[0]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[c] >= x:
            break
        heap[i] = heap[c]
        i = c
    heap[i] = x


@njit(cache=_CACHE, nogil=True)
def _heap_push_pair(hs, hp, x, pos):
    """:func:`_heap_push` carrying a position: keep (x, pos) if x beats the root hs[0] (NaN never does)."""
    if not x > hs[0]:
        return
    n = hs.shape[0]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and hs[c + 1] < hs[c]:
            c += 1
        if hs[c] >= x:
            break
        hs[i] = hs[c]
        hp[i] = hp[c]
        i = c
    hs[i] = x
    hp[i] = pos


@njit(cache=_CACHE, nogil=True)
def _emit_block(
    est,
    bnd,
    e0,
    q,
    blk,
    alpha,
    qconst,
    cterm,
    block_list,
    beta,
    bmag,
    heap,
    thr,
    out,
    cand_pos,
    cand_ub,
    ubuf,
    lbuf,
):
    """Bounds of the 32 vectors of block ``blk`` for query q from est/bnd[e0 : e0 + 32]: push lower
    bounds into the heap, append (position, ub) of every vector whose ub reaches max(root, thr) at
    ``cand_*[out:]``. Returns the number appended."""
    p0 = 32 * blk
    base = alpha * cterm[q, block_list[blk] + 1] + qconst[q]
    abase = abs(base)
    for v in range(32):  # a pure map: vectorized
        a_est = alpha * est[e0 + v]
        s = a_est + base + beta[p0 + v]
        e = alpha * bnd[e0 + v] + np.float32(4e-7) * (abs(a_est) + abase + bmag[p0 + v])
        ubuf[v] = s + e
        lbuf[v] = s - e
    root = heap[0]
    thr = max(thr, root)
    hits = 0
    for v in range(32):  # separate integer reductions vectorize as well
        hits += ubuf[v] >= thr
    lhits = 0
    for v in range(32):
        lhits += lbuf[v] > root
    cnt = 0
    if hits == 0 and lhits == 0:
        return cnt
    for v in range(32):
        lo = lbuf[v]
        if lo > root:
            _heap_push(heap, lo)
            root = heap[0]
            thr = max(thr, root)
        u = ubuf[v]
        if u >= thr and u > _NEG_INF:
            cand_pos[out + cnt] = p0 + v
            cand_ub[out + cnt] = u
            cnt += 1
    return cnt


@njit(cache=_CACHE, nogil=True)
def _room(cand_pos, cand_ub, out, cnt, cap, thr):
    """Make room for 32 more candidates in the slice [out, out + cap): drop entries below thr.
    Returns the new count, or -1 when the slice stays too full (the caller marks an overflow)."""
    if cnt + 32 <= cap:
        return cnt
    keep = 0
    for x in range(out, out + cnt):
        if cand_ub[x] >= thr:
            cand_pos[out + keep] = cand_pos[x]
            cand_ub[out + keep] = cand_ub[x]
            keep += 1
    return keep if keep + 32 <= cap else -1


@njit(cache=_CACHE, nogil=True)
def _scan_item(
    it,
    blocks,
    nsteps,
    part_steps,
    luts,
    inv,
    off,
    err,
    factors,
    fmin,
    fmax,
    bmax,
    bmagmax,
    beta,
    bmag,
    alpha,
    qconst,
    cterm,
    block_list,
    item_b0,
    item_b1,
    item_q,
    item_out,
    item_pair,
    pair_cap,
    cand_pos,
    cand_ub,
    counts,
    heaps,
    floor,
    lbases,
    sums,
    mx,
    est,
    bnd,
    ubuf,
    lbuf,
    cnts,
    qs,
):
    """One work item of :func:`scan_items` (buffers passed in, allocated once per task)."""
    n_parts = part_steps.shape[0] - 1
    cap = 32 * SUB
    nq = 0
    for j in range(QMAX):
        if item_q[it, j] >= 0:
            qs[nq] = item_q[it, j]
            nq += 1
        cnts[j] = counts[item_pair[it, j]] if item_q[it, j] >= 0 else 0  # a pair may span several items
    for c0 in range(item_b0[it], item_b1[it], SUB):  # sub-chunks: sums stay in L1
        nblk = min(SUB, item_b1[it] - c0)
        _item_sums(blocks, nsteps, part_steps, luts, qs, nq, c0, nblk, lbases, sums, mx)
        for j in range(nq):
            q = qs[j]
            pair = item_pair[it, j]
            heap = heaps[pair]
            cnt = cnts[j]
            for bb in range(nblk):
                if cnt < 0:
                    break
                blk = c0 + bb
                thr = max(heap[0], floor[q])
                base = alpha * cterm[q, block_list[blk] + 1] + qconst[q]
                bound = np.float32(0.0)
                for p in range(n_parts):
                    val = np.float32(mx[(j * n_parts + p) * SUB + bb]) * inv[q, p] + off[q, p]
                    f0 = fmin[p, blk]
                    f1 = fmax[p, blk]
                    bound += max(f1 * val, f0 * val) + max(abs(f1), abs(f0)) * err[q, p]
                top = alpha * bound + base + bmax[blk]
                top += np.float32(1e-6) * (abs(alpha * bound) + abs(base) + bmagmax[blk])
                if top < thr:
                    continue
                for v in range(32):
                    est[v] = 0.0
                    bnd[v] = 0.0
                for p in range(n_parts):
                    iv = inv[q, p]
                    of = off[q, p]
                    er = err[q, p]
                    o = (j * n_parts + p) * cap + 32 * bb
                    for v in range(32):
                        f = factors[p, 32 * blk + v]
                        est[v] += f * (np.float32(sums[o + v]) * iv + of)
                        bnd[v] += abs(f) * er
                cnt = _room(cand_pos, cand_ub, item_out[it, j], cnt, pair_cap[pair], thr)
                if cnt < 0:
                    break
                cnt += _emit_block(
                    est,
                    bnd,
                    0,
                    q,
                    blk,
                    alpha,
                    qconst,
                    cterm,
                    block_list,
                    beta,
                    bmag,
                    heap,
                    thr,
                    item_out[it, j] + cnt,
                    cand_pos,
                    cand_ub,
                    ubuf,
                    lbuf,
                )
            cnts[j] = cnt
            if heap[0] > floor[q]:
                floor[q] = heap[0]
    for j in range(nq):
        counts[item_pair[it, j]] = cnts[j]


@njit(cache=_CACHE, nogil=True, parallel=True)
def scan_items(
    blocks,
    nsteps,
    part_steps,
    luts,
    inv,
    off,
    err,
    factors,
    fmin,
    fmax,
    bmax,
    bmagmax,
    beta,
    bmag,
    alpha,
    qconst,
    cterm,
    block_list,
    item_b0,
    item_b1,
    item_q,
    item_out,
    item_pair,
    pair_cap,
    task_ptr,
    cand_pos,
    cand_ub,
    counts,
    heaps,
    floor,
):
    """Fast-scan work items in parallel (see the module docstring for the contract).

    blocks (nb*S*32,) uint8; luts (m*S*32,) uint8; inv/off/err (m, P) float32; factors (P, nb*32)
    float32; fmin/fmax (P, nb) float32 factor range of each block; bmax/bmagmax (nb,) float32 max of
    the finite beta and of its magnitude per block; beta (nb*32,) float32 (-inf = never a candidate);
    bmag (nb*32,) float32 magnitude of the finite part of beta (float rounding slack); qconst (m,)
    float32; cterm (m, L+1) float32; block_list (nb,) int32; item_b0/item_b1 (I,) int64;
    item_q/item_out/item_pair (I, 4) int64 (-1 padded queries; candidate slice start; pair = heap row
    and counts entry); pair_cap (pairs,) int64 candidate slice sizes (>= 32); task_ptr (T+1,) int64 the
    items of each parallel task (items of one pair must share a task). Outputs: cand_pos (U,)
    int64, cand_ub (U,) float32, counts (pairs,) int64 (-1: the slice overflowed, candidates lost),
    heaps (pairs, k) float32; floor (m,) float32 (start at -inf) shares thresholds between a query's
    items: any pair's k-th best lower bound is <= the query's final threshold, so a stale read is safe.

    A block is skipped without per-vector work when the bound from its largest integer sum and its
    factor range cannot reach the threshold.
    """
    n_parts = part_steps.shape[0] - 1
    n_tasks = task_ptr.shape[0] - 1
    for task in prange(n_tasks):  # contiguous runs of items; buffers allocated once per run
        lbases = np.empty(QMAX, dtype=np.int64)
        sums = np.empty(QMAX * n_parts * 32 * SUB, dtype=np.int32)
        mx = np.empty(QMAX * n_parts * SUB, dtype=np.int32)
        est = np.empty(32, dtype=np.float32)
        bnd = np.empty(32, dtype=np.float32)
        ubuf = np.empty(32, dtype=np.float32)
        lbuf = np.empty(32, dtype=np.float32)
        cnts = np.zeros(QMAX, dtype=np.int64)
        qs = np.empty(QMAX, dtype=np.int64)
        i1 = task_ptr[task + 1]
        for it in range(task_ptr[task], i1):
            if it + 1 < i1 and item_b0[it + 1] != item_b0[it] and item_b1[it + 1] - item_b0[it + 1] <= SUB:
                # short runs (IVF lists) jump around memory: fetch the next one while this one is scanned
                for x in range(item_b0[it + 1] * nsteps * 32, item_b1[it + 1] * nsteps * 32, 64):
                    _prefetch(blocks, x)
            _scan_item(
                it,
                blocks,
                nsteps,
                part_steps,
                luts,
                inv,
                off,
                err,
                factors,
                fmin,
                fmax,
                bmax,
                bmagmax,
                beta,
                bmag,
                alpha,
                qconst,
                cterm,
                block_list,
                item_b0,
                item_b1,
                item_q,
                item_out,
                item_pair,
                pair_cap,
                cand_pos,
                cand_ub,
                counts,
                heaps,
                floor,
                lbases,
                sums,
                mx,
                est,
                bnd,
                ubuf,
                lbuf,
                cnts,
                qs,
            )


@njit(cache=_CACHE, nogil=True, parallel=True)
def accumulate(blocks, nsteps, part_steps, luts, m):
    """Exact integer sums of every query and block: (m, P, nb*32) uint32 (the oracle's twin).

    blocks (nb*S*32,) uint8, luts (m*S*32,) uint8.
    """
    n_parts = part_steps.shape[0] - 1
    nb = blocks.shape[0] // (32 * nsteps) if nsteps > 0 else 0
    out = np.zeros((m, n_parts, nb * 32), dtype=np.uint32)
    ngroups = (m + QMAX - 1) // QMAX
    chunk = 8
    nchunks = (nb + chunk - 1) // chunk
    for task in prange(nchunks * ngroups):
        c = task // ngroups
        g = task - c * ngroups
        b0 = c * chunk
        nblk = min(chunk, nb - b0)
        nq = min(QMAX, m - g * QMAX)
        qs = np.arange(g * QMAX, g * QMAX + nq).astype(np.int64)
        lbases = np.empty(QMAX, dtype=np.int64)
        sums = np.empty(QMAX * n_parts * chunk * 32, dtype=np.int32)
        mx = np.empty(QMAX * n_parts * SUB, dtype=np.int32)
        _item_sums(blocks, nsteps, part_steps, luts, qs, nq, b0, nblk, lbases, sums, mx)
        for j in range(nq):
            for p in range(n_parts):
                o = (j * n_parts + p) * chunk * 32
                for v in range(32 * nblk):
                    out[qs[j], p, 32 * b0 + v] = np.uint32(sums[o + v])
    return out


# ------------------------------------------------------------------------------------------------
# work items of an IVF scan (pairs of (query, list chunk), grouped by chunk)
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def ivf_items(probe_ptr, probe_lists, q0, q1, list_ids, list_b0, list_b1, n_blocks, chunk, qgroup, cand_cap):
    """Pairs (query, chunk of <= ``chunk`` blocks of a probed list) for queries [q0, q1), query-major,
    grouped into items of <= ``qgroup`` queries over the same chunk (counting sort by block).

    Returns item_b0, item_b1 (I,), item_q, item_out, item_pair (I, 4), q_ptr (q1-q0+1,), pair_out,
    pair_cap (pairs,), total capacity — the layout of :meth:`FastScanner._make_items`.
    """
    nl = list_ids.shape[0]
    npairs = 0
    for t in range(probe_ptr[q0], probe_ptr[q1]):
        w = np.searchsorted(list_ids, probe_lists[t])
        if w < nl and list_ids[w] == probe_lists[t]:
            npairs += (list_b1[w] - list_b0[w] + chunk - 1) // chunk
    pair_q = np.empty(npairs, dtype=np.int64)
    pair_b0 = np.empty(npairs, dtype=np.int64)
    pair_b1 = np.empty(npairs, dtype=np.int64)
    q_ptr = np.zeros(q1 - q0 + 1, dtype=np.int64)
    n = 0
    for q in range(q0, q1):
        for t in range(probe_ptr[q], probe_ptr[q + 1]):
            w = np.searchsorted(list_ids, probe_lists[t])
            if w < nl and list_ids[w] == probe_lists[t]:
                for c in range(list_b0[w], list_b1[w], chunk):
                    pair_q[n] = q
                    pair_b0[n] = c
                    pair_b1[n] = min(c + chunk, list_b1[w])
                    n += 1
        q_ptr[q - q0 + 1] = n
    pair_cap = np.empty(npairs, dtype=np.int64)
    pair_out = np.empty(npairs, dtype=np.int64)
    total = 0
    for x in range(npairs):
        pair_cap[x] = min(32 * (pair_b1[x] - pair_b0[x]), cand_cap)
        pair_out[x] = total
        total += pair_cap[x]
    # stable counting sort of the pairs by first block
    start = np.zeros(n_blocks + 1, dtype=np.int64)
    for x in range(npairs):
        start[pair_b0[x] + 1] += 1
    for b in range(n_blocks):
        start[b + 1] += start[b]
    order = np.empty(npairs, dtype=np.int64)
    fill = start[:n_blocks].copy()
    for x in range(npairs):
        order[fill[pair_b0[x]]] = x
        fill[pair_b0[x]] += 1
    n_items = 0
    for x in range(npairs):
        if (
            x == 0
            or pair_b0[order[x]] != pair_b0[order[x - 1]]
            or (x - start[pair_b0[order[x]]]) % qgroup == 0
        ):
            n_items += 1
    item_b0 = np.empty(n_items, dtype=np.int64)
    item_b1 = np.empty(n_items, dtype=np.int64)
    item_q = np.full((n_items, QMAX), -1, dtype=np.int64)
    item_out = np.zeros((n_items, QMAX), dtype=np.int64)
    item_pair = np.zeros((n_items, QMAX), dtype=np.int64)
    it = -1
    slot = 0
    for x in range(npairs):
        pr = order[x]
        if x == 0 or pair_b0[pr] != pair_b0[order[x - 1]] or (x - start[pair_b0[pr]]) % qgroup == 0:
            it += 1
            slot = 0
            item_b0[it] = pair_b0[pr]
            item_b1[it] = pair_b1[pr]
        item_q[it, slot] = pair_q[pr]
        item_out[it, slot] = pair_out[pr]
        item_pair[it, slot] = pr
        slot += 1
    return item_b0, item_b1, item_q, item_out, item_pair, q_ptr, pair_out, pair_cap, total


@njit(cache=_CACHE, nogil=True)
def ivf_items_by_query(probe_ptr, probe_lists, q0, q1, list_pos, list_b0, list_b1, chunk, cand_cap, n_tasks):
    """Query-major IVF items: every query's probed list chunks in probe order, one pair per query (its heap
    and candidate slice shared by its items), tasks split at query boundaries by item count.

    ``list_pos`` (max list + 2,) int64: the position of list ``l`` in ``list_b0``/``list_b1`` at
    ``list_pos[l + 1]``, -1 when the segment has no rows in it (lists past the end are absent too).
    Returns the layout of :func:`ivf_items` plus task_ptr (T+1,).
    """
    npos = list_pos.shape[0]
    n_items = 0
    for t in range(probe_ptr[q0], probe_ptr[q1]):
        x = probe_lists[t] + 1
        w = list_pos[x] if x < npos else -1
        if w >= 0:
            n_items += (list_b1[w] - list_b0[w] + chunk - 1) // chunk
    nq = q1 - q0
    item_b0 = np.empty(n_items, dtype=np.int64)
    item_b1 = np.empty(n_items, dtype=np.int64)
    item_q = np.full((n_items, QMAX), -1, dtype=np.int64)
    item_out = np.zeros((n_items, QMAX), dtype=np.int64)
    item_pair = np.zeros((n_items, QMAX), dtype=np.int64)
    first_item = np.zeros(nq + 1, dtype=np.int64)
    n = 0
    for q in range(q0, q1):
        first_item[q - q0] = n
        for t in range(probe_ptr[q], probe_ptr[q + 1]):
            x = probe_lists[t] + 1
            w = list_pos[x] if x < npos else -1
            if w >= 0:
                for c in range(list_b0[w], list_b1[w], chunk):
                    item_b0[n] = c
                    item_b1[n] = min(c + chunk, list_b1[w])
                    item_q[n, 0] = q
                    item_out[n, 0] = (q - q0) * cand_cap
                    item_pair[n, 0] = q - q0
                    n += 1
    first_item[nq] = n
    q_ptr = np.arange(nq + 1).astype(np.int64)
    pair_out = np.arange(nq).astype(np.int64) * cand_cap
    pair_cap = np.full(nq, cand_cap, dtype=np.int64)
    tasks = max(1, min(n_tasks, nq))
    task_ptr = np.zeros(tasks + 1, dtype=np.int64)
    qi = 0
    for t in range(1, tasks):
        target = t * n_items // tasks
        while qi < nq and first_item[qi] < target:
            qi += 1
        task_ptr[t] = first_item[qi]
    task_ptr[tasks] = n
    for t in range(1, tasks + 1):
        task_ptr[t] = max(task_ptr[t], task_ptr[t - 1])
    return item_b0, item_b1, item_q, item_out, item_pair, q_ptr, pair_out, pair_cap, nq * cand_cap, task_ptr


@njit(cache=_CACHE, nogil=True)
def _block_lists(probe_ptr, probe_lists, a, b, list_pos, stamp, tag, cnt, order):
    """Lists probed by queries [a, b) in order of first appearance, rank by rank, into ``order``; their
    probe counts into ``cnt`` (entries of lists first seen here are reset: ``stamp`` != ``tag``). Returns
    how many."""
    npos = list_pos.shape[0]
    depth = 0
    for q in range(a, b):
        depth = max(depth, probe_ptr[q + 1] - probe_ptr[q])
    nord = 0
    for r in range(depth):
        for q in range(a, b):
            t = probe_ptr[q] + r
            if t >= probe_ptr[q + 1]:
                continue
            x = probe_lists[t] + 1
            w = list_pos[x] if x < npos else -1
            if w < 0:
                continue
            if stamp[w] != tag:
                stamp[w] = tag
                cnt[w] = 0
                order[nord] = w
                nord += 1
            cnt[w] += 1
    return nord


@njit(cache=_CACHE, nogil=True, parallel=True)
def ivf_items_by_block(
    probe_ptr, probe_lists, q0, q1, list_pos, list_b0, list_b1, chunk, cand_cap, qblock, qgroup
):
    """Block-major IVF items: queries [q0, q1) in blocks of ``qblock``; inside a block every list its queries
    probe once (in order of first appearance, rank by rank, so each query's best lists come early), each
    list chunk shared by up to ``qgroup`` of the block's queries per item (one code load serves them, and
    the chunk stays in cache while the block's other queries pass over it). One pair per query (its heap
    and candidate slice), as in :func:`ivf_items_by_query`; one task per block. Blocks are laid out in
    parallel (a counting pass, then the fill).

    Returns the layout of :func:`ivf_items_by_query` (task_ptr included).
    """
    npos = list_pos.shape[0]
    nl = list_b0.shape[0]
    nq = q1 - q0
    n_blocks_q = (nq + qblock - 1) // qblock
    task_ptr = np.zeros(max(1, n_blocks_q) + 1, dtype=np.int64)
    for bq in prange(n_blocks_q):  # items per block
        stamp = np.full(nl, -1, dtype=np.int64)
        cnt = np.zeros(nl, dtype=np.int64)
        order = np.empty(nl, dtype=np.int64)
        a = q0 + bq * qblock
        nord = _block_lists(probe_ptr, probe_lists, a, min(q1, a + qblock), list_pos, stamp, 0, cnt, order)
        n = 0
        for i in range(nord):
            w = order[i]
            n += ((list_b1[w] - list_b0[w] + chunk - 1) // chunk) * ((cnt[w] + qgroup - 1) // qgroup)
        task_ptr[bq + 1] = n
    for bq in range(n_blocks_q):
        task_ptr[bq + 1] += task_ptr[bq]
    n_items = task_ptr[n_blocks_q]
    item_b0 = np.empty(n_items, dtype=np.int64)
    item_b1 = np.empty(n_items, dtype=np.int64)
    item_q = np.empty((n_items, QMAX), dtype=np.int64)
    item_out = np.empty((n_items, QMAX), dtype=np.int64)
    item_pair = np.empty((n_items, QMAX), dtype=np.int64)
    for bq in prange(n_blocks_q):  # fill
        stamp = np.full(nl, -1, dtype=np.int64)
        cnt = np.zeros(nl, dtype=np.int64)
        start = np.zeros(nl, dtype=np.int64)
        order = np.empty(nl, dtype=np.int64)
        a = q0 + bq * qblock
        b = min(q1, a + qblock)
        nord = _block_lists(probe_ptr, probe_lists, a, b, list_pos, stamp, 0, cnt, order)
        tot = 0
        for i in range(nord):
            w = order[i]
            start[w] = tot
            tot += cnt[w]
            cnt[w] = 0
        members = np.empty(max(1, tot), dtype=np.int64)
        for q in range(a, b):  # members of each list, in query order
            for t in range(probe_ptr[q], probe_ptr[q + 1]):
                x = probe_lists[t] + 1
                w = list_pos[x] if x < npos else -1
                if w >= 0:
                    members[start[w] + cnt[w]] = q
                    cnt[w] += 1
        n = task_ptr[bq]
        for i in range(nord):
            w = order[i]
            for c in range(list_b0[w], list_b1[w], chunk):
                c1 = min(c + chunk, list_b1[w])
                for g in range(0, cnt[w], qgroup):
                    item_b0[n] = c
                    item_b1[n] = c1
                    for j in range(QMAX):
                        item_q[n, j] = -1
                        item_out[n, j] = 0
                        item_pair[n, j] = 0
                    for j in range(min(qgroup, cnt[w] - g)):
                        q = members[start[w] + g + j]
                        item_q[n, j] = q
                        item_out[n, j] = (q - q0) * cand_cap
                        item_pair[n, j] = q - q0
                    n += 1
    q_ptr = np.arange(nq + 1).astype(np.int64)
    pair_out = np.arange(nq).astype(np.int64) * cand_cap
    pair_cap = np.full(nq, cand_cap, dtype=np.int64)
    return item_b0, item_b1, item_q, item_out, item_pair, q_ptr, pair_out, pair_cap, nq * cand_cap, task_ptr


# ------------------------------------------------------------------------------------------------
# lookup tables (twin of reference_fastscan.float_luts + quantize_luts)
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, parallel=True)
def build_luts(q, bits, values, n_slots, slot0, sigmas, u8_out, fl_out, inv, off, err, col):
    """Float and uint8 LUTs of one part for every query, written at slots [slot0, slot0 + n_slots).

    q (m, k) float32; values (2**bits,) float64; u8_out (m, S2, 16) uint8; fl_out (m, S2, 16)
    float32; inv/off/err (m, P) float32 written at column ``col``. ``sigmas`` > 0 uses that many
    standard deviations of the rounding error instead of the rigorous bound. Same float64 operations
    as the reference, so ``u8_out`` matches it bit for bit.
    """
    m, k = q.shape
    cps = 1 if bits == 3 else 4 // bits
    mask = (1 << bits) - 1
    vtab = np.empty((cps, 16), dtype=np.float64)  # vtab[t, c] = values[(c >> t*bits) & mask]
    for t in range(cps):
        for c in range(16):
            vtab[t, c] = values[(c >> (t * bits)) & mask]
    for i in prange(m):
        lut = np.empty((n_slots, 16), dtype=np.float64)
        mn = np.empty(n_slots, dtype=np.float64)
        top = 0.0
        row = np.empty(16, dtype=np.float64)
        for s in range(n_slots):
            for c in range(16):
                row[c] = 0.0
            for t in range(cps):
                j = s * cps + t
                qj = np.float64(q[i, j]) if j < k else 0.0
                for c in range(16):  # same float64 sums, in the same order
                    row[c] += qj * vtab[t, c]
            for c in range(16):
                lut[s, c] = np.float64(np.float32(row[c]))  # the float32 table is the float path
            if bits == 3:
                lo8 = lut[s, 0]
                for c in range(1, 8):
                    lo8 = min(lo8, lut[s, c])
                for c in range(8, 16):
                    lut[s, c] = lo8
            lo = lut[s, 0]
            hi = lut[s, 0]
            for c in range(1, 16):
                lo = min(lo, lut[s, c])
                hi = max(hi, lut[s, c])
            mn[s] = lo
            top = max(top, hi - lo)
        a = 255.0 / top if top > 0 else 1.0
        ia = 1.0 / a
        emax = 0.0
        e2 = 0.0
        amax = 0.0
        offs = 0.0
        for s in range(n_slots):
            worst = 0.0
            sq = 0.0
            big = 0.0
            for c in range(16):
                d = lut[s, c] - mn[s]
                u = min(max(np.rint(d * a), 0.0), 255.0)
                u8_out[i, slot0 + s, c] = np.uint8(u)
                fl_out[i, slot0 + s, c] = lut[s, c]
                r = d - u * ia  # (the bound's 1e-5 relative slack covers the rounding)
                worst = max(worst, abs(r))
                sq += r * r
                big = max(big, abs(lut[s, c]))
            emax += worst
            e2 += sq / 16.0
            amax += big
            offs += mn[s]
        bound = emax + 1e-5 * (amax + 1e-30)
        if sigmas > 0:
            bound = min(bound, sigmas * np.sqrt(e2))
        inv[i, col] = np.float32(1.0 / a)
        off[i, col] = np.float32(offs)
        err[i, col] = np.float32(bound)


@njit(cache=_CACHE, nogil=True, parallel=True)
def quantize_group(fl, s0, s1, sigmas, u8_out, inv, off, err, col):
    """Re-quantize slots [s0, s1) of the float LUTs ``fl`` (m, S2, 16) float32 with one scale per query
    (a group of parts sharing a factor): writes ``u8_out`` there and inv/off/err at column ``col``.

    The quantization of :func:`build_luts` (twin: ``reference_fastscan.quantize_luts`` of ``fl[:, s0:s1]``).
    """
    m = fl.shape[0]
    for i in prange(m):
        top = 0.0
        for s in range(s0, s1):
            lo = np.float64(fl[i, s, 0])
            hi = lo
            for c in range(1, 16):
                x = np.float64(fl[i, s, c])
                lo = min(lo, x)
                hi = max(hi, x)
            top = max(top, hi - lo)
        a = 255.0 / top if top > 0 else 1.0
        emax = 0.0
        e2 = 0.0
        amax = 0.0
        offs = 0.0
        for s in range(s0, s1):
            lo = np.float64(fl[i, s, 0])
            for c in range(1, 16):
                lo = min(lo, np.float64(fl[i, s, c]))
            worst = 0.0
            sq = 0.0
            big = 0.0
            for c in range(16):
                x = np.float64(fl[i, s, c])
                d = x - lo
                u = min(max(np.rint(d * a), 0.0), 255.0)
                u8_out[i, s, c] = np.uint8(u)
                r = d - u / a
                worst = max(worst, abs(r))
                sq += r * r
                big = max(big, abs(x))
            emax += worst
            e2 += sq / 16.0
            amax += big
            offs += lo
        bound = emax + 1e-5 * (amax + 1e-30)
        if sigmas > 0:
            bound = min(bound, sigmas * np.sqrt(e2))
        inv[i, col] = np.float32(1.0 / a)
        off[i, col] = np.float32(offs)
        err[i, col] = np.float32(bound)


# ------------------------------------------------------------------------------------------------
# 1-bit path: bit-plane queries, AND + popcount
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, parallel=True)
def popcount_dot(words, qwords):
    """(n, W) uint64 codes, (m, B, W) uint64 query planes -> (acc (m, n) int64, ones (n,) int64)
    with ``acc = Σ_b 2^b popcount(plane_b & x)`` and ``ones = popcount(x)``."""
    n, W = words.shape
    m, B, _ = qwords.shape
    acc = np.zeros((m, n), dtype=np.int64)
    ones = np.zeros(n, dtype=np.int64)
    for r in prange(n):
        c = 0
        for w in range(W):
            c += _popcount(words[r, w])
        ones[r] = c
        for i in range(m):
            a = 0
            for b in range(B):
                t = 0
                for w in range(W):
                    t += _popcount(words[r, w] & qwords[i, b, w])
                a += np.int64(t) << b
            acc[i, r] = a
    return acc, ones


@njit(cache=_CACHE, nogil=True, parallel=True)
def scan_items_popcount(
    words,
    qwords,
    qlo,
    qdelta,
    qsum,
    elo,
    ehi,
    v0,
    dv,
    factors,
    beta,
    bmag,
    alpha,
    qconst,
    cterm,
    block_list,
    item_b0,
    item_b1,
    item_q,
    item_out,
    item_pair,
    pair_cap,
    cand_pos,
    cand_ub,
    counts,
    heaps,
    floor,
):
    """Popcount twin of :func:`scan_items` for single-part 1-bit codes (same items and outputs).

    words (nb*32, W) uint64 in layout order; qwords (m, B, W) uint64; qlo, qdelta, qsum, elo, ehi (m,)
    float64 (``q ≈ qlo + qdelta*u``, ``Σq``, bounds of ``Σ_j e_j x_j``); the part's float sum is
    ``v0 Σq + dv (qlo·ones + qdelta·acc)`` for ``values = [v0, v0 + dv]``.
    """
    n_items = item_b0.shape[0]
    W = words.shape[1]
    B = qwords.shape[1]
    cap = 0
    for it in range(n_items):
        cap = max(cap, 32 * (item_b1[it] - item_b0[it]))
    for it in prange(n_items):
        est = np.empty(cap, dtype=np.float32)
        bnd = np.empty(cap, dtype=np.float32)
        ubuf = np.empty(32, dtype=np.float32)
        lbuf = np.empty(32, dtype=np.float32)
        b0 = item_b0[it]
        nv = 32 * (item_b1[it] - b0)
        for j in range(QMAX):
            q = item_q[it, j]
            if q < 0:
                continue
            e_abs = max(abs(dv * elo[q]), abs(dv * ehi[q])) * 1.000001
            for v in range(nv):
                r = 32 * b0 + v
                c = 0
                a = 0
                for w in range(W):
                    c += _popcount(words[r, w])
                for b in range(B):
                    t = 0
                    for w in range(W):
                        t += _popcount(words[r, w] & qwords[q, b, w])
                    a += t << b
                part = v0 * qsum[q] + dv * (qlo[q] * c + qdelta[q] * a)
                f = factors[0, r]
                est[v] = np.float32(f * part)
                bnd[v] = np.float32(abs(f) * e_abs + 1e-6 * abs(f * part))
            pair = item_pair[it, j]
            heap = heaps[pair]
            cnt = 0
            out = item_out[it, j]
            for bb in range(nv // 32):
                cnt = _room(cand_pos, cand_ub, out, cnt, pair_cap[pair], max(heap[0], floor[q]))
                if cnt < 0:
                    break
                cnt += _emit_block(
                    est,
                    bnd,
                    32 * bb,
                    q,
                    b0 + bb,
                    alpha,
                    qconst,
                    cterm,
                    block_list,
                    beta,
                    bmag,
                    heap,
                    floor[q],
                    out + cnt,
                    cand_pos,
                    cand_ub,
                    ubuf,
                    lbuf,
                )
            counts[pair] = cnt
            if heap[0] > floor[q]:
                floor[q] = heap[0]


# ------------------------------------------------------------------------------------------------
# selection and exact re-scoring
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True)
def _threshold(heaps, h0, h1, k, floor):
    """k-th largest value over heap rows [h0, h1) (-inf when they hold fewer than k finite values).

    ``floor`` is one of those rows' k-th value, so only values >= floor can matter."""
    top = np.full(k, _NEG_INF, dtype=np.float32)
    for h in range(h0, h1):
        for t in range(k):
            x = heaps[h, t]
            if x >= floor:
                _heap_push(top, x)
    return top[0]


@njit(cache=_CACHE, nogil=True)
def _take_topk(scores, pos, n, k, out_s, out_p, i):
    """Best k of scores[:n] (score desc, position asc) into out_s[i], out_p[i] (insertion; n is small)."""
    kept = 0
    for c in range(n):
        s = scores[c]
        p = pos[c]
        if kept == k and (s < out_s[i, k - 1] or (s == out_s[i, k - 1] and p > out_p[i, k - 1])):
            continue
        j = min(kept, k - 1)
        while j > 0 and (out_s[i, j - 1] < s or (out_s[i, j - 1] == s and out_p[i, j - 1] > p)):
            out_s[i, j] = out_s[i, j - 1]
            out_p[i, j] = out_p[i, j - 1]
            j -= 1
        out_s[i, j] = s
        out_p[i, j] = p
        kept = min(kept + 1, k)


@njit(cache=_CACHE, nogil=True)
def _gather(cand_pos, cand_ub, counts, pair_out, h0, h1, thr):
    """Positions of the candidates of pairs [h0, h1) whose ub reaches thr."""
    n = 0
    for h in range(h0, h1):
        for x in range(pair_out[h], pair_out[h] + max(counts[h], 0)):
            if cand_ub[x] >= thr:
                n += 1
    pos = np.empty(n, dtype=np.int64)
    n = 0
    for h in range(h0, h1):
        for x in range(pair_out[h], pair_out[h] + max(counts[h], 0)):
            if cand_ub[x] >= thr:
                pos[n] = cand_pos[x]
                n += 1
    return pos


@njit(cache=_CACHE, nogil=True, parallel=True)
def finish(
    cand_pos,
    cand_ub,
    counts,
    pair_out,
    heaps,
    q_ptr,
    k,
    floor,
    blocks,
    nsteps,
    part_steps,
    fluts,
    factors,
    beta,
    alpha,
    qconst,
    cterm,
    block_list,
    out_s,
    out_p,
    n_cand,
):
    """Per query (local index i, pairs q_ptr[i]..q_ptr[i+1], ``floor`` (m,) from the scan): threshold =
    k-th best lower bound, keep
    the candidates whose ub reaches it, score them with the float LUT path (:func:`_rescore_one`),
    write the best k into out_s/out_p (m, k) (pre-filled with -inf / -1) and the count into n_cand."""
    m = q_ptr.shape[0] - 1
    for i in prange(m):
        thr = _threshold(heaps, q_ptr[i], q_ptr[i + 1], k, floor[i])
        pos = _gather(cand_pos, cand_ub, counts, pair_out, q_ptr[i], q_ptr[i + 1], thr)
        n = pos.shape[0]
        n_cand[i] = n
        sc = np.empty(n, dtype=np.float32)
        n4 = n - n % 4
        for c in range(0, n4, 4):
            _rescore_four(
                blocks,
                nsteps,
                part_steps,
                fluts,
                factors,
                beta,
                alpha,
                qconst,
                cterm,
                block_list,
                i,
                pos,
                c,
                sc,
            )
        for c in range(n4, n):
            sc[c] = _rescore_one(
                blocks, nsteps, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, pos[c]
            )
        _take_topk(sc, pos, n, k, out_s, out_p, i)


@njit(cache=_CACHE, nogil=True, parallel=True)
def finish_bits(
    cand_pos,
    cand_ub,
    counts,
    pair_out,
    heaps,
    q_ptr,
    k,
    floor,
    words,
    qf,
    v0,
    dv,
    factors,
    beta,
    alpha,
    qconst,
    cterm,
    block_list,
    out_s,
    out_p,
    n_cand,
):
    """:func:`finish` for 1-bit codes scored from sign words (``qf`` (m, k) float64 queries)."""
    m = q_ptr.shape[0] - 1
    for i in prange(m):
        thr = _threshold(heaps, q_ptr[i], q_ptr[i + 1], k, floor[i])
        pos = _gather(cand_pos, cand_ub, counts, pair_out, q_ptr[i], q_ptr[i + 1], thr)
        n = pos.shape[0]
        n_cand[i] = n
        qs = 0.0
        for j in range(qf.shape[1]):
            qs += qf[i, j]
        sc = np.empty(n, dtype=np.float32)
        for c in range(n):
            sc[c] = _rescore_bits_one(
                words, qf, qs, v0, dv, factors, beta, alpha, qconst, cterm, block_list, i, pos[c]
            )
        _take_topk(sc, pos, n, k, out_s, out_p, i)


@njit(cache=_CACHE, nogil=True)
def _slot_of(blocks, nsteps, pos, s):
    blk = pos >> 5
    v = pos & 31
    byte = blocks[(blk * nsteps + (s >> 1)) * 32 + (s & 1) * 16 + (v & 15)]
    return (byte >> ((v >> 4) * 4)) & 15


@njit(cache=_CACHE, nogil=True)
def _rescore_one(blocks, nsteps, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, r):
    """Float LUT score of position r for query i (float64 sums, the scan's affine map)."""
    n_parts = part_steps.shape[0] - 1
    blk = r >> 5
    base = blk * nsteps * 32 + (r & 15)
    sh = (r >> 4) & 1
    sh = sh * 4
    est = 0.0
    for p in range(n_parts):
        acc = 0.0
        for t in range(part_steps[p], part_steps[p + 1]):
            acc += fluts[i, 2 * t, (blocks[base + 32 * t] >> sh) & 15]
            acc += fluts[i, 2 * t + 1, (blocks[base + 32 * t + 16] >> sh) & 15]
        est += factors[p, r] * acc
    return np.float32(alpha * (cterm[i, block_list[blk] + 1] + est) + beta[r] + qconst[i])


@njit(cache=_CACHE, nogil=True)
def _rescore_four(
    blocks, nsteps, part_steps, fluts, factors, beta, alpha, qconst, cterm, block_list, i, pos, c, out
):
    """:func:`_rescore_one` of positions pos[c : c + 4] into out[c : c + 4]: four independent float64 chains,
    each with the same operations in the same order as :func:`_rescore_one` (so the same results),
    interleaved so that the additions' latency overlaps (one chain is latency-bound)."""
    n_parts = part_steps.shape[0] - 1
    r0, r1, r2, r3 = pos[c], pos[c + 1], pos[c + 2], pos[c + 3]
    g0 = (r0 >> 5) * nsteps * 32 + (r0 & 15)
    g1 = (r1 >> 5) * nsteps * 32 + (r1 & 15)
    g2 = (r2 >> 5) * nsteps * 32 + (r2 & 15)
    g3 = (r3 >> 5) * nsteps * 32 + (r3 & 15)
    h0, h1, h2, h3 = ((r0 >> 4) & 1) * 4, ((r1 >> 4) & 1) * 4, ((r2 >> 4) & 1) * 4, ((r3 >> 4) & 1) * 4
    e0 = 0.0
    e1 = 0.0
    e2 = 0.0
    e3 = 0.0
    for p in range(n_parts):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for t in range(part_steps[p], part_steps[p + 1]):
            o = 32 * t
            a0 += fluts[i, 2 * t, (blocks[g0 + o] >> h0) & 15]
            a1 += fluts[i, 2 * t, (blocks[g1 + o] >> h1) & 15]
            a2 += fluts[i, 2 * t, (blocks[g2 + o] >> h2) & 15]
            a3 += fluts[i, 2 * t, (blocks[g3 + o] >> h3) & 15]
            a0 += fluts[i, 2 * t + 1, (blocks[g0 + o + 16] >> h0) & 15]
            a1 += fluts[i, 2 * t + 1, (blocks[g1 + o + 16] >> h1) & 15]
            a2 += fluts[i, 2 * t + 1, (blocks[g2 + o + 16] >> h2) & 15]
            a3 += fluts[i, 2 * t + 1, (blocks[g3 + o + 16] >> h3) & 15]
        e0 += factors[p, r0] * a0
        e1 += factors[p, r1] * a1
        e2 += factors[p, r2] * a2
        e3 += factors[p, r3] * a3
    out[c] = np.float32(alpha * (cterm[i, block_list[r0 >> 5] + 1] + e0) + beta[r0] + qconst[i])
    out[c + 1] = np.float32(alpha * (cterm[i, block_list[r1 >> 5] + 1] + e1) + beta[r1] + qconst[i])
    out[c + 2] = np.float32(alpha * (cterm[i, block_list[r2 >> 5] + 1] + e2) + beta[r2] + qconst[i])
    out[c + 3] = np.float32(alpha * (cterm[i, block_list[r3 >> 5] + 1] + e3) + beta[r3] + qconst[i])


@njit(cache=_CACHE, nogil=True)
def _rescore_bits_one(words, qf, qs, v0, dv, factors, beta, alpha, qconst, cterm, block_list, i, r):
    """Float score of 1-bit position r for query i: Σ_j q_j·values[bit_j] (float64)."""
    dot = 0.0
    for j in range(qf.shape[1]):
        if (words[r, j >> 6] >> np.uint64(j & 63)) & np.uint64(1):
            dot += qf[i, j]
    est = factors[0, r] * (v0 * qs + dv * dot)
    return np.float32(alpha * (cterm[i, block_list[r >> 5] + 1] + est) + beta[r] + qconst[i])


# ------------------------------------------------------------------------------------------------
# batched (BLAS) path helpers
# ------------------------------------------------------------------------------------------------
@njit(cache=_CACHE, nogil=True, parallel=True)
def decode_tile(blocks, nsteps, part_steps, part_bits, values, factors, b0, b1, out):
    """Decode blocks [b0, b1) to (rows, K) float32 with the per-vector factor baked in.

    Column layout: part p's slots in order, ``cps_p`` coordinates per slot; values (P, 16) float32.
    """
    n_parts = part_steps.shape[0] - 1
    nrows = (b1 - b0) * 32
    for r in prange(nrows):
        pos = b0 * 32 + r
        col = 0
        for p in range(n_parts):
            bits = part_bits[p]
            cps = 1 if bits == 3 else 4 // bits
            mask = (1 << bits) - 1
            f = factors[p, pos]
            for s in range(2 * part_steps[p], 2 * part_steps[p + 1]):
                c = _slot_of(blocks, nsteps, pos, s)
                for t in range(cps):
                    out[r, col] = f * values[p, (c >> (t * bits)) & mask]
                    col += 1


@njit(cache=_CACHE, nogil=True, parallel=True)
def tile_topk(scores, alpha, qconst, cterm, block_list, beta, pos0, heaps_s, heaps_p):
    """Merge a (m, rows) tile of float scores (ip estimates without the centre term) into per-query
    running top-k min-heaps (heaps_s (m, k) float32, heaps_p (m, k) int64; start at -inf / -1)."""
    m, rows = scores.shape
    for i in prange(m):
        hs = heaps_s[i]
        hp = heaps_p[i]
        for r in range(rows):
            pos = pos0 + r
            s = np.float32(
                alpha * (cterm[i, block_list[pos >> 5] + 1] + scores[i, r]) + beta[pos] + qconst[i]
            )
            _heap_push_pair(hs, hp, s, pos)


# ------------------------------------------------------------------------------------------------
# warm-up
# ------------------------------------------------------------------------------------------------
def warmup() -> None:
    """Compile (or load from the on-disk cache) every kernel of the query path on tiny inputs (the
    oracle twins ``accumulate`` and ``popcount_dot`` compile on first use); called at Index open."""
    from . import reference_fastscan as rf

    rng = np.random.default_rng(0)
    nb, S, m, k = 2, 4, 5, 3
    f32, f64, i64 = np.float32, np.float64, np.int64
    blocks = rng.integers(0, 256, size=(nb, S, 32), dtype=np.uint8).reshape(-1)
    luts = rng.integers(0, 256, size=(m, S, 32), dtype=np.uint8).reshape(-1)
    part_steps = np.array([0, 2, S], dtype=i64)
    P = 2
    inv, off, err = np.ones((m, P), f32), np.zeros((m, P), f32), np.zeros((m, P), f32)
    factors = np.ones((P, nb * 32), f32)
    beta = np.zeros(nb * 32, f32)
    qconst = np.zeros(m, f32)
    cterm = np.zeros((m, 1), f32)
    block_list = np.full(nb, -1, np.int32)
    item_b0, item_b1 = np.array([0], i64), np.array([nb], i64)
    item_q = np.array([[0, 1, 2, 3]], i64)
    item_out = np.array([[0, 64, 128, 192]], i64)
    item_pair = np.array([[0, 1, 2, 3]], i64)
    cand_pos = np.empty(4 * nb * 32, i64)
    cand_ub = np.empty(4 * nb * 32, f32)
    counts = np.zeros(4, i64)
    heaps = np.full((4, k), -np.inf, f32)
    for nq in (1, 2, 3, 4):
        iq = item_q.copy()
        iq[0, nq:] = -1
        scan_items(
            blocks,
            S,
            part_steps,
            luts,
            inv,
            off,
            err,
            factors,
            np.zeros((P, nb), f32),
            np.ones((P, nb), f32),
            np.zeros(nb, f32),
            np.zeros(nb, f32),
            beta,
            beta,
            f32(1.0),
            qconst,
            cterm,
            block_list,
            item_b0,
            item_b1,
            iq,
            item_out,
            item_pair,
            np.full(4, 64, i64),
            np.array([0, 1], i64),
            cand_pos,
            cand_ub,
            counts,
            heaps,
            np.full(m, -np.inf, f32),
        )
    fl = rng.standard_normal((4, 2 * S, 16)).astype(f32)
    q_ptr = np.arange(5, dtype=i64)
    finish(
        cand_pos,
        cand_ub,
        counts,
        item_out[0],
        heaps,
        q_ptr,
        k,
        np.full(4, -np.inf, f32),
        blocks,
        S,
        part_steps,
        fl,
        factors,
        beta,
        f32(1.0),
        qconst,
        cterm,
        block_list,
        np.full((4, k), -np.inf, f32),
        np.full((4, k), -1, i64),
        np.zeros(4, i64),
    )
    out = np.empty((64, 2 * S * 2), f32)
    decode_tile(blocks, S, part_steps, np.array([2, 2], i64), np.ones((P, 16), f32), factors, 0, nb, out)
    hs = np.full((m, k), -np.inf, f32)
    hp = np.full((m, k), -1, i64)
    tile_topk(rng.standard_normal((m, 64)).astype(f32), f32(1.0), qconst, cterm, block_list, beta, 0, hs, hp)
    words = rng.integers(0, 2**63, size=(nb * 32, 2), dtype=i64).view(np.uint64)
    qw, lo, de, elo, ehi = rf.bitplane_query(rng.standard_normal((m, 100)).astype(f32), 4)
    scan_items_popcount(
        words,
        qw,
        lo,
        de,
        lo * 0,
        elo,
        ehi,
        f64(-1.0),
        f64(2.0),
        factors,
        beta,
        beta,
        f32(1.0),
        qconst,
        cterm,
        block_list,
        item_b0,
        item_b1,
        item_q,
        item_out,
        item_pair,
        np.full(4, 64, i64),
        cand_pos,
        cand_ub,
        counts,
        heaps,
        np.full(m, -np.inf, f32),
    )
    finish_bits(
        cand_pos,
        cand_ub,
        counts,
        item_out[0],
        heaps,
        q_ptr,
        k,
        np.full(4, -np.inf, f32),
        words,
        rng.standard_normal((4, 100)),
        f64(-1.0),
        f64(2.0),
        factors,
        beta,
        f32(1.0),
        qconst,
        cterm,
        block_list,
        np.full((4, k), -np.inf, f32),
        np.full((4, k), -1, i64),
        np.zeros(4, i64),
    )
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
        256,
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
        256,
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
        256,
        2,
        2,
    )
    quantize_group(np.ones((m, 8, 16), f32), 2, 6, -1.0, np.empty((m, 8, 16), np.uint8), inv, off, err, 0)
    for bits in (1, 2, 3, 4):
        build_luts(
            rng.standard_normal((m, 7)).astype(f32),
            bits,
            np.linspace(-1, 1, 1 << bits),
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
