"""Torch kernels for codes held as tensors (CPU or CUDA): bit packing, bucketing and decoded-tile scoring.

These are the primitives of the KV-cache codecs (:mod:`vqdb.kvcache.codecs`) and of the fused attention
path: they operate on torch tensors with arbitrary leading dimensions and never leave the tensors'
device. Imported only when a torch path is selected (``import vqdb`` never imports this module).

Bit layout (the same as the NumPy reference packer): codes of ``bits`` bits are written as one
little-endian bit stream, LSB first — code ``j`` occupies stream bits ``[j*bits, (j+1)*bits)``, and stream
bit ``i`` is bit ``i % 8`` of byte ``i // 8``. For ``bits`` in {1, 2, 4, 8} this means byte ``p`` holds
codes ``p*k .. p*k + k - 1`` (``k = 8 // bits``), the first in the lowest bits.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "packed_size",
    "pack_bits",
    "unpack_bits",
    "byte_table",
    "decode_packed",
    "bucketize",
    "sign_bits",
    "scores_from_tile",
    "weighted_tile_sum",
]


def packed_size(n: int, bits: int) -> int:
    """Bytes needed for ``n`` codes of ``bits`` bits (the stream is padded to whole bytes)."""
    return (n * bits + 7) // 8


def _stream_weights(device) -> torch.Tensor:
    return (2 ** torch.arange(8, device=device, dtype=torch.int32)).to(torch.int32)


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes into bytes.

    Parameters
    ----------
    codes : Tensor (..., n), any integer dtype, values in ``[0, 2**bits)``
    bits : int in [1, 8]

    Returns
    -------
    Tensor (..., packed_size(n, bits)) uint8
    """
    n = codes.shape[-1]
    lead = codes.shape[:-1]
    if bits == 8:
        return codes.to(torch.uint8)
    c = codes.to(torch.int32)
    if 8 % bits == 0:
        k = 8 // bits
        pad = (-n) % k
        if pad:
            c = torch.nn.functional.pad(c, (0, pad))
        c = c.reshape(*lead, -1, k)
        shifts = torch.arange(k, device=c.device, dtype=torch.int32) * bits
        return (c << shifts).sum(-1).to(torch.uint8)
    # general bit stream: expand to bits, regroup by 8
    shifts = torch.arange(bits, device=c.device, dtype=torch.int32)
    stream = ((c.unsqueeze(-1) >> shifts) & 1).reshape(*lead, n * bits)
    pad = (-stream.shape[-1]) % 8
    if pad:
        stream = torch.nn.functional.pad(stream, (0, pad))
    stream = stream.reshape(*lead, -1, 8)
    return (stream * _stream_weights(c.device)).sum(-1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`.

    Parameters
    ----------
    packed : Tensor (..., packed_size(n, bits)) uint8
    bits : int in [1, 8]
    n : int, number of codes per row

    Returns
    -------
    Tensor (..., n) int64
    """
    lead = packed.shape[:-1]
    if bits == 8:
        return packed[..., :n].long()
    p = packed.to(torch.int32)
    if 8 % bits == 0:
        k = 8 // bits
        shifts = torch.arange(k, device=p.device, dtype=torch.int32) * bits
        out = (p.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
        return out.reshape(*lead, -1)[..., :n].long()
    stream = ((p.unsqueeze(-1) >> torch.arange(8, device=p.device, dtype=torch.int32)) & 1).reshape(*lead, -1)
    stream = stream[..., : n * bits].reshape(*lead, n, bits)
    weights = (2 ** torch.arange(bits, device=p.device, dtype=torch.int32)).to(torch.int32)
    return (stream * weights).sum(-1).long()


@functools.lru_cache(maxsize=32)
def _byte_codes(bits: int, device_str: str) -> torch.Tensor:
    k = 8 // bits
    b = torch.arange(256, dtype=torch.int32, device=device_str)
    shifts = torch.arange(k, dtype=torch.int32, device=device_str) * bits
    return ((b.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)).long()  # (256, k)


def byte_table(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Lookup table from a packed byte to the values of the ``8 // bits`` codes it holds.

    Parameters
    ----------
    values : Tensor (2**bits,) float — the value of each code (a codebook, or ±1 for sign bits)
    bits : int in {1, 2, 4, 8}

    Returns
    -------
    Tensor (256, 8 // bits), same dtype/device as ``values``; row ``b`` lists the decoded codes of byte ``b``.
    """
    if bits == 8:
        return values.reshape(256, 1)
    return values[_byte_codes(bits, str(values.device))]


def decode_packed(packed: torch.Tensor, values: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Replace packed codes by their values: ``values[unpack_bits(packed)]`` without materialising indices.

    Parameters
    ----------
    packed : Tensor (..., packed_size(n, bits)) uint8
    values : Tensor (2**bits,) float — value of each code
    bits : int in [1, 8]
    n : int

    Returns
    -------
    Tensor (..., n), dtype of ``values``
    """
    if 8 % bits == 0:
        table = byte_table(values, bits)  # (256, k)
        k = table.shape[1]
        out = table[packed.long()]  # (..., nbytes, k)
        return out.reshape(*packed.shape[:-1], packed.shape[-1] * k)[..., :n]
    return values[unpack_bits(packed, bits, n)]


def bucketize(x: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """Cell index of each value for increasing ``boundaries``; a value equal to a boundary goes up.

    Same rule as ``np.searchsorted(boundaries, x, side="right")``. Returns int64 of ``x``'s shape.
    """
    return torch.bucketize(x.contiguous(), boundaries, right=True)


def sign_bits(x: torch.Tensor) -> torch.Tensor:
    """1 where ``x > 0`` else 0 (so 0 maps to the ``-1`` code), int64 of ``x``'s shape."""
    return (x > 0).long()


def scores_from_tile(queries: torch.Tensor, tile: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Inner products of queries with a decoded tile, optionally scaled per stored vector.

    Parameters
    ----------
    queries : Tensor (..., m, d) float32
    tile : Tensor (..., n, d) float32 — stored vectors in the codec's (rotated) coordinates
    scale : Tensor (..., n) float32 or None — per-vector factor (norm, scale correction)

    Returns
    -------
    Tensor (..., m, n) float32
    """
    s = torch.matmul(queries, tile.transpose(-1, -2))
    if scale is not None:
        s = s * scale.unsqueeze(-2)
    return s


def weighted_tile_sum(weights: torch.Tensor, tile: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_t weights[..., m, t] * scale[..., t] * tile[..., t, :]`` as one matmul.

    Parameters
    ----------
    weights : Tensor (..., m, n) float32
    tile : Tensor (..., n, d) float32
    scale : Tensor (..., n) float32 or None

    Returns
    -------
    Tensor (..., m, d) float32
    """
    if scale is not None:
        weights = weights * scale.unsqueeze(-2)
    return torch.matmul(weights, tile)
