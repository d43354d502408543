"""Bit packing of b-bit indices (b = 1..8) into bytes. Pure NumPy; the kernels have fast twins.

Used by the kernels and the quantizers alike.

Layout (the only one vqdb uses; documented here, next to the code)
------------------------------------------------------------------
Each row of ``k`` indices becomes one little-endian, LSB-first bitstream of ``k * b`` bits stored in
``ceil(k * b / 8)`` bytes:

* index ``j`` occupies stream bits ``[j*b, (j+1)*b)``; its least significant bit is stream bit ``j*b``;
* stream bit ``t`` is bit ``t % 8`` (value ``1 << (t % 8)``) of byte ``t // 8``;
* unused high bits of the last byte are zero.

So for b = 1 bit j of byte p is index ``8p + j`` (QJL's sign layout); for b = 4 byte p holds index
``2p`` in its low nibble and ``2p + 1`` in its high nibble; for b = 3 index 2 straddles bytes 0 and 1
(bits 6, 7 of byte 0 and bit 0 of byte 1). Rows are independent, so codes can be sliced by row.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


def packed_size(k: int, bits: int) -> int:
    """Bytes taken by ``k`` indices of ``bits`` bits: ``ceil(k * bits / 8)``."""
    return (int(k) * int(bits) + 7) // 8


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise InvalidInputError(f"bits must be an integer in [1, 8]; got {bits!r}")
    return int(bits)


def pack_bits(idx: np.ndarray, bits: int) -> np.ndarray:
    """Pack b-bit indices.

    Parameters
    ----------
    idx : ndarray of shape (n, k), uint8
        Values in [0, 2**bits); higher bits must be zero (checked).
    bits : int in [1, 8]

    Returns
    -------
    packed : ndarray of shape (n, ceil(k * bits / 8)), uint8
    """
    bits = _check_bits(bits)
    idx = np.ascontiguousarray(idx, dtype=np.uint8)
    if idx.ndim != 2:
        raise InvalidInputError(f"idx must be 2-D (n, k); got shape {idx.shape}")
    n, k = idx.shape
    if bits < 8 and idx.size and int(idx.max()) >> bits:
        raise InvalidInputError(f"indices must be < 2**{bits}; got max {int(idx.max())}")
    if bits == 8:
        return idx.copy()
    planes = (idx[:, :, None] >> np.arange(bits, dtype=np.uint8)) & 1  # (n, k, b), LSB first
    stream = planes.reshape(n, k * bits)
    return np.packbits(stream, axis=1, bitorder="little").reshape(n, packed_size(k, bits))


def unpack_bits(packed: np.ndarray, bits: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`.

    Parameters
    ----------
    packed : ndarray of shape (n, ceil(k * bits / 8)), uint8
    bits : int in [1, 8]
    k : int
        Indices per row.

    Returns
    -------
    idx : ndarray of shape (n, k), uint8
    """
    bits = _check_bits(bits)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n = packed.shape[0]
    if packed.ndim != 2 or packed.shape[1] != packed_size(k, bits):
        raise InvalidInputError(f"packed must be (n, {packed_size(k, bits)}); got {packed.shape}")
    if bits == 8:
        return packed.copy()
    if 8 % bits == 0:  # 1, 2, 4 bits: whole indices per byte, lowest bits first (no bit stream needed)
        shifts = np.arange(0, 8, bits, dtype=np.uint8)
        idx = (packed[:, :, None] >> shifts) & np.uint8((1 << bits) - 1)
        return np.ascontiguousarray(idx.reshape(n, packed.shape[1] * shifts.size)[:, :k])
    stream = np.unpackbits(packed, axis=1, count=k * bits, bitorder="little").reshape(n, k, bits)
    weights = (1 << np.arange(bits)).astype(np.uint8)
    return (stream * weights).sum(axis=2, dtype=np.uint8) if n else np.zeros((0, k), np.uint8)
