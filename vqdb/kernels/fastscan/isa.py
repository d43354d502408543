"""Instruction-set level of the fast scan: the host ISA and the LLVM intrinsics the kernels inline.

:func:`_make_window` emits the inner loop (per 32-byte step: load the codes, split the nibbles, two
in-register byte shuffles against the query's LUT -- AVX2 ``vpshufb``, SSSE3 / NEON ``tbl`` on 16-byte
halves, a portable extract/insert loop elsewhere -- and add the bytes into uint16 accumulators, FAISS'
even/odd trick). Integer results do not depend on the ISA, so every variant is checked against the same
oracle. Under ``NUMBA_DISABLE_JIT=1`` pure-Python twins are used.
"""

from __future__ import annotations

import numpy as np
from numba import config as _nb_config
from numba import types


def host_cpu() -> tuple[set, str] | None:
    """(feature flags such as ``"+avx2"``, process triple) of the CPU numba compiles for, or None."""
    try:
        import llvmlite.binding as ll

        feats = _nb_config.CPU_FEATURES
        if feats is None:
            feats = ll.get_host_cpu_features().flatten()
        return set(feats.split(",")), ll.get_process_triple()
    except Exception:  # noqa: BLE001 - any failure: portable code
        return None


def _host_isa() -> str:
    """'avx2', 'ssse3', 'neon' or 'generic' for the CPU numba compiles for."""
    host = host_cpu()
    if host is None:
        return "generic"
    flags, triple = host
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


def _make_window(nq: int, isa: str | None = None):
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

    isa = ISA if isa is None else isa  # an explicit ISA lets tests build the other variants on this CPU
    i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
    v32 = ir.VectorType(i8, 32)
    v16 = ir.VectorType(i8, 16)
    w16 = ir.VectorType(i16, 16)
    d32 = ir.VectorType(i32, 16)

    def shuffle(builder, table, idx):
        mod = builder.module
        if isa == "avx2":
            fn = cgutils.get_or_insert_function(
                mod, ir.FunctionType(v32, [v32, v32]), "llvm.x86.avx2.pshuf.b"
            )
            return builder.call(fn, [table, idx])
        if isa in ("ssse3", "neon"):
            name = "llvm.x86.ssse3.pshuf.b.128" if isa == "ssse3" else "llvm.aarch64.neon.tbl1.v16i8"
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


def _make_ge_mask():
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)

    @intrinsic
    def ge_mask(typingctx, arr, start, lo):
        """Bit v (v < 32) set when ``arr[start + v] >= lo`` (int32 1-D ``arr``, ``lo`` int64 clipped to the
        int32 range): one vector compare of a block's 32 integer sums, FAISS' threshold mask."""
        sig = types.int64(arr, types.intp, types.int64)

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            vec = ir.VectorType(i32, 32)
            v = builder.load(builder.bitcast(builder.gep(data, [args[1]]), vec.as_pointer()), align=4)
            big = ir.Constant(i64, 2**31 - 1)
            small = ir.Constant(i64, -(2**31))
            t = builder.select(builder.icmp_signed(">", args[2], big), big, args[2])
            t = builder.trunc(builder.select(builder.icmp_signed("<", t, small), small, t), i32)
            splat = builder.shuffle_vector(
                builder.insert_element(ir.Constant(vec, ir.Undefined), t, ir.Constant(i32, 0)),
                ir.Constant(vec, ir.Undefined),
                ir.Constant(ir.VectorType(i32, 32), [0] * 32),
            )
            bits = builder.bitcast(builder.icmp_signed(">=", v, splat), i32)
            return builder.zext(bits, i64)

        return sig, codegen

    @intrinsic
    def low_bit(typingctx, x):
        """Index of the lowest set bit of ``x`` (int64, nonzero)."""
        sig = types.int64(types.int64)

        def codegen(context, builder, signature, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i64, [i64, i1]), "llvm.cttz.i64"
            )
            return builder.call(fn, [args[0], ir.Constant(i1, 1)])

        return sig, codegen

    return ge_mask, low_bit


if _nb_config.DISABLE_JIT:

    def _ge_mask(arr, start, lo):
        m = 0
        for v in range(32):
            if arr[start + v] >= lo:
                m |= 1 << v
        return m

    def _low_bit(x):
        return (int(x) & -int(x)).bit_length() - 1
else:
    _ge_mask, _low_bit = _make_ge_mask()
