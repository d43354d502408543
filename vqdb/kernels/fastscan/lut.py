"""Lookup tables: float LUTs of a query part and their uint8 quantization (twin of
``reference_fastscan.float_luts`` + ``quantize_luts``, bit for bit)."""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import twin


def _build_luts(q, bits, values, n_slots, slot0, sigmas, u8_out, fl_out, inv, off, err, col):
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


build_luts_serial, build_luts = twin(_build_luts)


def _quantize_group(fl, s0, s1, sigmas, u8_out, inv, off, err, col):
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


quantize_group_serial, quantize_group = twin(_quantize_group)
