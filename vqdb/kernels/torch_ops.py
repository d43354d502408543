"""Torch kernels for codes held as tensors (CPU or CUDA): bit packing, bucketing and decoded-tile scoring.

Two layers:

* tensor primitives (``*_tensor``, ``byte_table``, ``scores_from_tile``, ``weighted_tile_sum``) used by
  the KV-cache codecs (:mod:`vqdb.kvcache.codecs`) and the fused attention path: torch tensors with any
  leading dimensions, computed on the tensors' device;
* the kernel-dispatch ops of :mod:`vqdb.kernels` (``get_ops("torch")``): the same names and signatures
  as :mod:`vqdb.kernels.reference` (``pack_bits``, ``unpack_bits``, ``bucketize``, ``encode_scalar``,
  ``scaled_indices``, ``encode_scaled``, ``decode_values``, ``lut_scores``, ``sign_scores``, ``topk``).
  They accept NumPy arrays (returned as NumPy, with the reference's dtypes) or torch tensors (returned as
  tensors on the same device), so CUDA tensors stay on the GPU.

Imported only when a torch path is selected (``import vqdb`` never imports this module).

Bit layout (the same as the NumPy reference packer): codes of ``bits`` bits are written as one
little-endian bit stream, LSB first — code ``j`` occupies stream bits ``[j*bits, (j+1)*bits)``, and stream
bit ``i`` is bit ``i % 8`` of byte ``i // 8``. For ``bits`` in {1, 2, 4, 8} this means byte ``p`` holds
codes ``p*k .. p*k + k - 1`` (``k = 8 // bits``), the first in the lowest bits.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from . import reference

name = "torch"

__all__ = [
    "pack_bits",
    "unpack_bits",
    "bucketize",
    "encode_scalar",
    "scaled_indices",
    "encode_scaled",
    "decode_values",
    "lut_scores",
    "sign_scores",
    "topk",
    "packed_size",
    "pack_tensor",
    "unpack_tensor",
    "byte_table",
    "decode_tensor",
    "bucketize_tensor",
    "scaled_indices_tensor",
    "sign_tensor",
    "scores_from_tile",
    "weighted_tile_sum",
]


def packed_size(n: int, bits: int) -> int:
    """Bytes needed for ``n`` codes of ``bits`` bits (the stream is padded to whole bytes)."""
    return (n * bits + 7) // 8


def _pad_last(t: torch.Tensor, multiple: int) -> torch.Tensor:
    pad = (-t.shape[-1]) % multiple
    return torch.nn.functional.pad(t, (0, pad)) if pad else t


def pack_tensor(codes: torch.Tensor, bits: int) -> torch.Tensor:
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
    if bits == 8:
        return codes.to(torch.uint8)
    if 8 % bits == 0:
        k = 8 // bits
        c = _pad_last(codes.to(torch.int32), k).unflatten(-1, (-1, k))
        shifts = torch.arange(k, device=c.device, dtype=torch.int32) * bits
        return (c << shifts).sum(-1).to(torch.uint8)
    # 8 codes make `bits` whole bytes: build a 64-bit word per group of 8 codes, then cut it into bytes
    c = _pad_last(codes.to(torch.int64), 8).unflatten(-1, (-1, 8))
    word = (c << (torch.arange(8, device=c.device, dtype=torch.int64) * bits)).sum(-1)
    out = (word.unsqueeze(-1) >> (torch.arange(bits, device=c.device, dtype=torch.int64) * 8)) & 255
    return out.flatten(-2)[..., : packed_size(n, bits)].to(torch.uint8)


def unpack_tensor(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_tensor`.

    Parameters
    ----------
    packed : Tensor (..., packed_size(n, bits)) uint8
    bits : int in [1, 8]
    n : int, number of codes per row

    Returns
    -------
    Tensor (..., n) int64
    """
    if bits == 8:
        return packed[..., :n].long()
    if 8 % bits == 0:
        k = 8 // bits
        shifts = torch.arange(k, device=packed.device, dtype=torch.int32) * bits
        out = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
        return out.flatten(-2)[..., :n].long()
    return _unpack_words(packed, bits, n).long()


def _unpack_words(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Codes of a bit width that does not divide 8: each group of 8 codes spans ``bits`` bytes."""
    b = _pad_last(packed, bits).to(torch.int64).unflatten(-1, (-1, bits))
    word = (b << (torch.arange(bits, device=packed.device, dtype=torch.int64) * 8)).sum(-1)
    codes = (word.unsqueeze(-1) >> (torch.arange(8, device=packed.device, dtype=torch.int64) * bits)) & (
        (1 << bits) - 1
    )
    return codes.flatten(-2)[..., :n]


@functools.lru_cache(maxsize=32)
def _byte_codes(bits: int, device_str: str) -> torch.Tensor:
    k = 8 // bits
    b = torch.arange(256, dtype=torch.int32, device=device_str)
    shifts = torch.arange(k, dtype=torch.int32, device=device_str) * bits
    return ((b.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)).long()  # (256, k)


def byte_table(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Lookup table from a packed chunk to the values of the codes it holds.

    For ``bits`` in {1, 2, 4, 8} a chunk is one byte holding ``8 // bits`` codes: table (256, 8 // bits).
    For ``bits == 3`` a chunk is 12 bits (half of the 3 bytes that hold 8 codes): table (4096, 4).

    Parameters
    ----------
    values : Tensor (2**bits,) float — the value of each code (a codebook, or ±1 for sign bits)
    bits : int in {1, 2, 3, 4, 8}

    Returns
    -------
    Tensor (n_chunks, codes_per_chunk), same dtype/device as ``values``.
    """
    if bits == 8:
        return values.reshape(256, 1)
    if bits == 3:
        w = torch.arange(4096, dtype=torch.int32, device=values.device)
        codes = (w.unsqueeze(-1) >> (torch.arange(4, dtype=torch.int32, device=values.device) * 3)) & 7
        return values[codes.long()]
    return values[_byte_codes(bits, str(values.device))]


def decode_tensor(
    packed: torch.Tensor, values: torch.Tensor, bits: int, n: int, table: torch.Tensor | None = None
) -> torch.Tensor:
    """Replace packed codes by their values: ``values[unpack_tensor(packed)]`` without an index tensor per code.

    For ``bits`` in {1, 2, 4, 8} one ``index_select`` of a (256, 8 // bits) byte table per byte, for 3 bits
    one of a (4096, 4) table per 12-bit chunk (pass a precomputed ``table = byte_table(values, bits)`` to
    skip building it); otherwise 8 codes are cut from ``bits``-byte words and looked up.

    Parameters
    ----------
    packed : Tensor (..., packed_size(n, bits)) uint8
    values : Tensor (2**bits,) float — value of each code
    bits : int in [1, 8]
    n : int
    table : Tensor from :func:`byte_table`, optional

    Returns
    -------
    Tensor (..., n), dtype of ``values``
    """
    lead = packed.shape[:-1]
    if 8 % bits == 0:
        if table is None:
            table = byte_table(values, bits)
        k = table.shape[1]
        out = table.index_select(0, packed.reshape(-1).to(torch.int32))
        return out.reshape(*lead, packed.shape[-1] * k)[..., :n]
    if bits == 3:  # 3 bytes = 8 codes = two 12-bit chunks of 4 codes each
        if table is None:
            table = byte_table(values, 3)
        b = _pad_last(packed, 3).unflatten(-1, (-1, 3)).to(torch.int32)
        word = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        chunks = torch.stack([word & 4095, word >> 12], -1)
        out = table.index_select(0, chunks.reshape(-1))
        return out.reshape(*lead, chunks.shape[-2] * 8)[..., :n]
    codes = _unpack_words(packed, bits, n)
    return values.index_select(0, codes.reshape(-1)).reshape(*lead, n)


def bucketize_tensor(x: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """Cell index of each value for increasing ``boundaries``; a value equal to a boundary goes up.

    Same rule as ``np.searchsorted(boundaries, x, side="right")``. Returns int64 of ``x``'s shape.
    """
    return torch.bucketize(x.contiguous(), boundaries, right=True)


def sign_tensor(x: torch.Tensor) -> torch.Tensor:
    """1 where ``x > 0`` else 0 (so 0 maps to the ``-1`` code), int64 of ``x``'s shape."""
    return (x > 0).long()


def scores_from_tile(
    queries: torch.Tensor, tile: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
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


def weighted_tile_sum(
    weights: torch.Tensor, tile: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
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


# ------------------------------------------------------------------------------------------------
# kernel-dispatch ops (reference signatures; NumPy or torch in, same kind out)
# ------------------------------------------------------------------------------------------------
def _tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        a = np.ascontiguousarray(x)
        t = torch.from_numpy(
            a if a.flags.writeable else a.copy()
        )  # torch cannot wrap read-only memory (mapped codes)
    return t if dtype is None else t.to(dtype)


def _out(t: torch.Tensor, like, np_dtype):
    if isinstance(like, torch.Tensor):
        return t
    return np.ascontiguousarray(t.cpu().numpy(), dtype=np_dtype)


def pack_bits(idx, bits: int):
    """(n, k) uint8 indices -> (n, ceil(k*bits/8)) uint8 LSB-first bitstream."""
    return _out(pack_tensor(_tensor(idx), int(bits)), idx, np.uint8)


def unpack_bits(packed, bits: int, k: int):
    """(n, ceil(k*bits/8)) uint8 -> (n, k) uint8 indices."""
    return _out(unpack_tensor(_tensor(packed), int(bits), int(k)).to(torch.uint8), packed, np.uint8)


def _bucketize64(x, boundaries) -> torch.Tensor:
    xt = _tensor(x, torch.float64)
    b = _tensor(boundaries, torch.float64).to(xt.device)
    return torch.bucketize(xt.contiguous(), b, right=True)


def bucketize(x, boundaries):
    """(n, k) float32, (L-1,) float64 -> (n, k) uint8 cell indices (count of boundaries <= x)."""
    return _out(_bucketize64(x, boundaries).to(torch.uint8), x, np.uint8)


def encode_scalar(x, boundaries, bits: int):
    """Fused bucketize + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    return _out(pack_tensor(_bucketize64(x, boundaries), int(bits)), x, np.uint8)


def scaled_indices_tensor(
    u: torch.Tensor, boundaries: torch.Tensor, centroids: torch.Tensor, scales
) -> torch.Tensor:
    """Indices of ``u * t`` for the ``t`` in ``scales`` whose reconstruction has the highest cosine with ``u``.

    Parameters
    ----------
    u : Tensor (..., k) — computed in float64, like the reference
    boundaries, centroids : Tensor (L-1,), (L,) — the codebook
    scales : sequence of float — candidate pre-scales, tried in order; a later one wins only if strictly better

    Returns
    -------
    Tensor (..., k) int64
    """
    u64 = u.to(torch.float64)
    dev = u64.device
    b = boundaries.to(device=dev, dtype=torch.float64)
    c = centroids.to(device=dev, dtype=torch.float64)
    best = torch.zeros(u64.shape, dtype=torch.long, device=dev)
    best_cos = torch.full(u64.shape[:-1], -float("inf"), dtype=torch.float64, device=dev)
    for t in [float(v) for v in scales]:
        idx = torch.bucketize((u64 * t).contiguous(), b, right=True)
        vals = c[idx]
        dot = (u64 * vals).sum(-1)
        nrm = torch.linalg.vector_norm(vals, dim=-1)
        cos = torch.where(
            nrm > 0,
            dot / torch.where(nrm > 0, nrm, torch.ones_like(nrm)),
            torch.full_like(nrm, -float("inf")),
        )
        better = cos > best_cos
        best = torch.where(better.unsqueeze(-1), idx, best)
        best_cos = torch.where(better, cos, best_cos)
    return best


def _scaled_indices(u, boundaries, centroids, scales) -> torch.Tensor:
    return scaled_indices_tensor(
        _tensor(u), _tensor(boundaries), _tensor(centroids), _tensor(scales, torch.float64).tolist()
    )


def scaled_indices(u, boundaries, centroids, scales):
    """Per row, the indices of ``u * t`` (t in ``scales``) whose reconstruction has the highest cosine
    with ``u`` (first such ``t`` on ties); see :func:`vqdb.kernels.reference.scaled_indices`."""
    return _out(_scaled_indices(u, boundaries, centroids, scales).to(torch.uint8), u, np.uint8)


def encode_scaled(u, boundaries, centroids, scales, bits: int):
    """Fused :func:`scaled_indices` + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    return _out(pack_tensor(_scaled_indices(u, boundaries, centroids, scales), int(bits)), u, np.uint8)


def _decode_values(codes, offset: int, bits: int, k: int, values) -> torch.Tensor:
    ct = _tensor(codes)
    nb = packed_size(int(k), int(bits))
    vals = _tensor(values, torch.float32).to(ct.device)
    return decode_tensor(ct[:, offset : offset + nb], vals, int(bits), int(k))


def decode_values(codes, offset: int, bits: int, k: int, values):
    """Gather reconstruction levels: (n, code_size) uint8 -> (n, k) float32 ``values[idx]``."""
    return _out(_decode_values(codes, offset, bits, k, values), codes, np.float32)


def lut_scores(q, codes, offset: int, bits: int, values):
    """Σ_j q[i, j] · values[idx[n, j]]: (m, k) float32 queries x packed codes -> (m, n) float32."""
    qt = _tensor(q, torch.float32)
    tile = _decode_values(codes, offset, bits, qt.shape[1], values).to(qt.device)
    return _out(qt @ tile.T, q, np.float32)


_SIGNS = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q, codes, offset: int):
    """Σ_j q[i, j] · (2·bit_j − 1) over 1-bit sign codes (QJL): (m, k) float32 -> (m, n) float32."""
    return lut_scores(q, codes, offset, 1, _SIGNS)


def topk(scores, k: int):
    """Best ``k`` per row, best first, ties broken by lower column index; ``-1``/``-inf`` padding when k > n.

    Returns ``(ids (m, k) int64, top (m, k) float32)``.
    """
    st = _tensor(scores, torch.float32)
    m, n = st.shape
    kk = min(int(k), n)
    ids = torch.full((m, int(k)), -1, dtype=torch.long, device=st.device)
    top = torch.full((m, int(k)), -float("inf"), dtype=torch.float32, device=st.device)
    if kk and m:
        vals, order = torch.sort(st, dim=1, descending=True, stable=True)
        ids[:, :kk] = order[:, :kk]
        top[:, :kk] = vals[:, :kk]
    return _out(ids, scores, np.int64), _out(top, scores, np.float32)


# scaled_indices_segments, encode_turbo_block, hadamard_rotate, fht_kac_rotate: the NumPy reference's (host arrays only)
KERNELS = reference.KERNELS.replace(
    name="torch",
    pack_bits=pack_bits,
    unpack_bits=unpack_bits,
    bucketize=bucketize,
    encode_scalar=encode_scalar,
    scaled_indices=scaled_indices,
    encode_scaled=encode_scaled,
    decode_values=decode_values,
    lut_scores=lut_scores,
    sign_scores=sign_scores,
    topk=topk,
)
