"""KV-cache decode step on the GPU: attention of one new query token over a
:class:`~vqdb.kvcache.CompressedKVLayer`'s TurboQuant key/value codes plus its full-precision tail.

:func:`decode_attention` computes exactly what ``CompressedKVLayer.attend`` computes for a decode step
(``q_len == 1``, no mask), in two kernels over the codes:

``impl="numba"``  :func:`vqdb.kernels.cuda.numba_cuda.decode_attention` — kernel 1 scores the rotated queries
                  against the packed key codes (LUT per token, queries in registers); kernel 2 takes the row
                  max, the softmax and the weighted sum of dequantized values, one block per query row.
``impl="torch"``  the same two passes as torch ops over token chunks (decode a chunk to a tile, matmul),
                  never materialising the whole dequantized cache.

Both return flash-decoding partials (output, row max, row sum) for the codes, merged here with the exact
softmax over the full-precision tail. The value output stays in the value codec's rotated coordinates until
one final ``@ Π_v``. Supported codecs: :class:`~vqdb.kvcache._turbo.TurboCodec` with variant ``mse`` or
``scaled`` for both keys and values (no split/outlier permutation); anything else returns ``None`` so the
caller keeps the generic path.
"""

from __future__ import annotations

import torch

from ..kernels import torch_ops as T

__all__ = ["supported", "decode_attention"]

CHUNK = 8192  # tokens per decoded tile (torch impl)


def supported(layer, queries: torch.Tensor, mask=None) -> bool:
    """True when :func:`decode_attention` handles this layer and call."""
    from ._turbo import TurboCodec

    kc, vc = layer.key_codec, layer.value_codec
    return (
        mask is None
        and queries.dim() == 4
        and queries.shape[2] == 1
        and layer.n_codes > 0
        and isinstance(kc, TurboCodec)
        and isinstance(vc, TurboCodec)
        and kc.variant in ("mse", "scaled")
        and vc.variant in ("mse", "scaled")
        and not layer.channels_permuted
        and not layer.center
        and layer.n_sink == 0
    )


def _codes(layer, n: int):
    kc, vc = layer.codes(n)
    return kc["idx"], kc["norm"][..., 0].float(), vc["idx"], vc["norm"][..., 0].float()


def _torch_partials(qr, kidx, knorm, vidx, vnorm, kcodec, vcodec, scale):
    """(out (.., G, kv), rmax (.., G), rsum (.., G)) over the codes, chunked over tokens."""
    n = kidx.shape[-2]
    parts = []
    for t0 in range(0, n, CHUNK):
        tile = T.decode_tensor(kidx[..., t0 : t0 + CHUNK, :], kcodec.centroids, kcodec.mse_bits, kcodec.k)
        parts.append(
            torch.matmul(qr, tile.transpose(-1, -2)) * (knorm[..., t0 : t0 + CHUNK] * scale).unsqueeze(-2)
        )
    s = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
    rmax = s.amax(-1)
    e = torch.exp(s - rmax.unsqueeze(-1))
    rsum = e.sum(-1)
    acc = None
    for t0 in range(0, n, CHUNK):
        tile = T.decode_tensor(vidx[..., t0 : t0 + CHUNK, :], vcodec.centroids, vcodec.mse_bits, vcodec.k)
        part = torch.matmul(e[..., t0 : t0 + CHUNK] * vnorm[..., t0 : t0 + CHUNK].unsqueeze(-2), tile)
        acc = part if acc is None else acc + part
    return acc / rsum.unsqueeze(-1), rmax, rsum


def _numba_partials(qr, kidx, knorm, vidx, vnorm, kcodec, vcodec, scale):
    from ..kernels.cuda import numba_cuda as nc

    b, h, g, k = qr.shape
    n = kidx.shape[2]
    flat = [
        qr.reshape(b * h, g, k),
        kidx.reshape(b * h, n, -1),
        knorm.reshape(b * h, n),
        vidx.reshape(b * h, n, -1),
        vnorm.reshape(b * h, n),
    ]
    kv, vv = kcodec.centroids.float(), vcodec.centroids.float()
    if qr.is_cuda:
        from numba import cuda

        args = [cuda.as_cuda_array(t.contiguous()) for t in flat]
        kv, vv = cuda.as_cuda_array(kv.contiguous()), cuda.as_cuda_array(vv.contiguous())
        out, rmax, rsum = nc.decode_attention(
            args[0], args[1], args[2], kcodec.mse_bits, kv, args[3], args[4], vcodec.mse_bits, vv, scale
        )
        conv = [torch.as_tensor(a, device=qr.device) for a in (out, rmax, rsum)]
    else:  # CPU tensors: the CUDA simulator (tests)
        arrs = [t.contiguous().cpu().numpy() for t in flat]
        out, rmax, rsum = nc.decode_attention(
            arrs[0],
            arrs[1],
            arrs[2],
            kcodec.mse_bits,
            kv.numpy(),
            arrs[3],
            arrs[4],
            vcodec.mse_bits,
            vv.numpy(),
            scale,
        )
        conv = [torch.from_numpy(a) for a in (out, rmax, rsum)]
    vk = vcodec.k
    return conv[0].reshape(b, h, g, vk), conv[1].reshape(b, h, g), conv[2].reshape(b, h, g)


def decode_attention(
    layer,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    n_codes: int,
    scale: float,
    impl: str = "auto",
) -> torch.Tensor | None:
    """One decode step of ``layer`` from its codes, or ``None`` when unsupported (see :func:`supported`).

    Parameters
    ----------
    layer : CompressedKVLayer
    queries : Tensor [B, H_q, 1, D]
    keys, values : Tensor [B, H_kv, n_fp, D] — the full-precision tail (``AppendResult.keys/values``)
    n_codes : int — encoded prefix length (``AppendResult.n_codes``)
    scale : float — softmax scale
    impl : {"auto", "numba", "torch"} — ``auto``: numba-cuda kernels on CUDA tensors when numba-cuda is
        usable, else torch ops

    Returns
    -------
    Tensor [B, H_q, 1, D] in the dtype of ``queries``, equal to ``layer.attend(...)`` up to float rounding.
    """
    if not supported(layer, queries) or n_codes <= 0:
        return None
    if impl == "auto":
        from ..kernels.cuda import probe_cuda_numba

        impl = "numba" if queries.is_cuda and probe_cuda_numba() is None else "torch"
    b, hq, _, d = queries.shape
    h = keys.shape[1]
    g = hq // h
    kc = layer.key_codec.on(queries.device)
    vc = layer.value_codec.on(queries.device)
    qg = queries.float().reshape(b, h, g, d)
    qr = torch.matmul(qg, kc.rotation.T)
    kidx, knorm, vidx, vnorm = _codes(layer, n_codes)
    partials = _numba_partials if impl == "numba" else _torch_partials
    out_c, m_c, l_c = partials(qr, kidx, knorm, vidx, vnorm, kc, vc, float(scale))
    out_c = torch.matmul(out_c, vc.rotation)  # back from the value rotation
    if keys.shape[2]:
        s_t = torch.matmul(qg, keys.float().transpose(-1, -2)) * scale  # exact tail scores
        m_t = s_t.amax(-1)
        m = torch.maximum(m_c, m_t)
        a_c = torch.exp(m_c - m) * l_c
        e_t = torch.exp(s_t - m.unsqueeze(-1))
        out = (out_c * a_c.unsqueeze(-1) + torch.matmul(e_t, values.float())) / (a_c + e_t.sum(-1)).unsqueeze(
            -1
        )
    else:
        out = out_c
    return out.reshape(b, hq, 1, d).to(queries.dtype)


def dense_decode_attention(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float
) -> torch.Tensor:
    """fp16/fp32 baseline of a decode step: softmax(q kᵀ · scale) v with GQA ([B,Hq,1,D] x [B,Hkv,n,D])."""
    b, hq, _, d = queries.shape
    h = keys.shape[1]
    q = queries.reshape(b, h, hq // h, d).to(keys.dtype)
    w = torch.softmax((torch.matmul(q, keys.transpose(-1, -2)) * scale).float(), -1).to(values.dtype)
    return torch.matmul(w, values).reshape(b, hq, 1, d)
