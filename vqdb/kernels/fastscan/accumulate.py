"""Accumulate: exact integer LUT sums of up to 4 queries over a run of 32-vector blocks."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import CACHE as _CACHE
from .isa import _win1, _win2

QMAX = 4  # queries per work item (passed over each block in pairs)
SUB = 16  # blocks per inner sub-chunk of a work item (their sums stay in L1)


@njit(cache=_CACHE, nogil=True)
def _item_sums(blocks, nsteps, part_steps, luts, qs, nq, b0, nblk, lbases, sums, mx):
    """sums[(j*P + p)*cap + 32*b + v] = exact LUT sum of part p, query qs[j], vector v of block b0 + b
    (cap = len(sums) // (QMAX * P)); mx[(j*P + p)*SUB + b] = the largest of those 32 sums.

    A part of more than 256 steps (the uint16 accumulators' limit) takes several windows; they run block
    by block, so each block's codes are read in one sequential pass (running the first window over all
    ``nblk`` blocks and then coming back for the rest was 3.5x slower: Fashion-MNIST turbo-4, 392 steps).
    """
    n_parts = part_steps.shape[0] - 1
    cap = sums.shape[0] // (QMAX * n_parts)
    bs = nsteps * 32
    qstr = n_parts * cap
    for p in range(n_parts):
        s0p = part_steps[p]
        s1p = part_steps[p + 1]
        for j0 in range(0, nq, 2):  # pairs of queries share each code load (more spill on AVX2)
            two = nq - j0 >= 2
            sb = p * cap + j0 * qstr
            mb = p * SUB + j0 * n_parts * SUB
            if s1p - s0p <= 256:
                for j in range(j0, min(nq, j0 + 2)):
                    lbases[j - j0] = (qs[j] * nsteps + s0p) * 32
                cb = (b0 * nsteps + s0p) * 32
                if two:
                    _win2(
                        blocks,
                        cb,
                        bs,
                        nblk,
                        luts,
                        lbases,
                        s1p - s0p,
                        sums,
                        sb,
                        qstr,
                        1,
                        mx,
                        mb,
                        n_parts * SUB,
                    )
                else:
                    _win1(
                        blocks,
                        cb,
                        bs,
                        nblk,
                        luts,
                        lbases,
                        s1p - s0p,
                        sums,
                        sb,
                        qstr,
                        1,
                        mx,
                        mb,
                        n_parts * SUB,
                    )
                continue
            for b in range(nblk):
                s0 = s0p
                first = 1
                while s0 < s1p:
                    w = min(256, s1p - s0)
                    for j in range(j0, min(nq, j0 + 2)):
                        lbases[j - j0] = (qs[j] * nsteps + s0) * 32
                    cb = ((b0 + b) * nsteps + s0) * 32
                    sbb = sb + 32 * b
                    if two:
                        _win2(
                            blocks,
                            cb,
                            bs,
                            1,
                            luts,
                            lbases,
                            w,
                            sums,
                            sbb,
                            qstr,
                            first,
                            mx,
                            mb + b,
                            n_parts * SUB,
                        )
                    else:
                        _win1(
                            blocks,
                            cb,
                            bs,
                            1,
                            luts,
                            lbases,
                            w,
                            sums,
                            sbb,
                            qstr,
                            first,
                            mx,
                            mb + b,
                            n_parts * SUB,
                        )
                    s0 += w
                    first = 0


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


@njit(cache=_CACHE, nogil=True)
def block_sums(blocks, cbase, nblk, nsteps, luts, lbases, sums, mx):
    """Exact integer LUT sums of one query over ``nblk`` contiguous 32-vector blocks (callable from numba,
    e.g. a graph traversal scoring a node's neighbour block).

    blocks : uint8 1-D, block b's ``nsteps`` 32-byte steps at ``cbase + b * nsteps * 32`` (the fast-scan
        layout, :func:`vqdb.kernels.reference_fastscan.interleave`)
    luts : uint8 1-D, the query's ``nsteps`` 32-byte LUT steps at ``lbases[0]`` (``lbases`` (>= 1,) int64;
        :meth:`vqdb.kernels.scanner.FastScanner.prepare` builds them: ``prepared.luts``, query i at
        ``i * nsteps * 32``)
    sums : int32 (>= 32 * nblk,) out: vector v of block b at ``32 * b + v``
    mx : int32 (>= nblk,) out: the largest of each block's 32 sums

    The estimate of a single-part code is then ``factor * (sum * inv + off)`` (``prepared.inv``/``off``).
    """
    base = lbases[0]
    if nsteps <= 256:
        _win1(blocks, cbase, nsteps * 32, nblk, luts, lbases, nsteps, sums, 0, 0, 1, mx, 0, 0)
        return
    for b in range(nblk):  # several windows: block by block (see _item_sums)
        s0 = 0
        first = 1
        while s0 < nsteps:
            w = min(256, nsteps - s0)
            lbases[0] = base + s0 * 32
            _win1(
                blocks,
                cbase + b * nsteps * 32 + s0 * 32,
                nsteps * 32,
                1,
                luts,
                lbases,
                w,
                sums,
                32 * b,
                0,
                first,
                mx,
                b,
                0,
            )
            s0 += w
            first = 0
    lbases[0] = base
