"""CPU fast path of the fused attention: scores and value sums from packed TurboQuant codes with the Numba
lookup kernels of :mod:`vqdb.kernels.kv_lut` (no decoded tile of keys or values).

Covers :class:`~vqdb.kvcache._turbo.TurboCodec` (``mse`` / ``scaled``, 1-4 bits) and
:class:`~vqdb.kvcache._codec_base.SplitCodec` of two of them (fractional rates); everything else keeps
the torch path. Queries arrive in the codec's input coordinates (already permuted by the layer); they are
rotated once per call, and value sums are rotated back once per query row.
"""

from __future__ import annotations

import numpy as np
import torch

from ._codec_base import Codes, KVCodec, SplitCodec
from ._turbo import TurboCodec

__all__ = ["supported", "add_scores", "weighted_sum"]


def _turbo_ok(codec: KVCodec) -> bool:
    from ..kernels.kv_lut import SUPPORTED_BITS

    if not isinstance(codec, TurboCodec) or codec.variant not in ("mse", "scaled"):
        return False
    per = 4 if codec.mse_bits == 3 else 8 // codec.mse_bits if codec.mse_bits in SUPPORTED_BITS else 0
    return bool(per) and codec.k % (8 if codec.mse_bits == 3 else per) == 0


def supported(codec: KVCodec, device: torch.device) -> bool:
    """True when this codec's codes on ``device`` are handled by the CPU kernels."""
    if device.type != "cpu":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a core dependency
        return False
    if isinstance(codec, SplitCodec):
        return _turbo_ok(codec.hi) and _turbo_ok(codec.lo)
    return _turbo_ok(codec)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy())


def _table(codec: TurboCodec) -> np.ndarray:
    from ..kernels.kv_lut import unit_table

    table = getattr(codec, "_unit_table", None)
    if table is None:
        table = unit_table(codec.centroids.cpu().numpy(), codec.mse_bits)
        codec._unit_table = table
    return table


def _kernel_parts(codec: KVCodec, codes: Codes) -> tuple[list[TurboCodec], tuple, tuple | None]:
    """(the TurboCodec parts, the kernels' (idx, norm, table, bits) of the first part, of the second or None)."""
    parts = [codec.hi, codec.lo] if isinstance(codec, SplitCodec) else [codec]
    fields = [SplitCodec._part(codes, "hi."), SplitCodec._part(codes, "lo.")] if len(parts) == 2 else [codes]
    args = [
        (_np(f["idx"]), _np(f["norm"][..., 0].float()), _table(c), c.mse_bits) for c, f in zip(parts, fields)
    ]
    return parts, args[0], (args[1] if len(args) == 2 else None)


def add_scores(codec: KVCodec, q: torch.Tensor, codes: Codes, out: torch.Tensor) -> None:
    """``out (B, H, M, n) += <q, x>`` estimated for queries q (B, H, M, d) against n stored codes; ``out``
    is float32 on the CPU and may be a view (the code columns of a score row). Both parts of a split codec
    are scored in one pass over the tokens."""
    from ..kernels.kv_lut import code_scores

    parts, a, lo = _kernel_parts(codec, codes)
    q = q.float()
    if lo is None:
        qr = q @ codec.rotation.T
    else:
        n_hi = codec.n_hi
        qr = torch.cat([q[..., :n_hi] @ parts[0].rotation.T, q[..., n_hi:] @ parts[1].rotation.T], dim=-1)
    code_scores(_np(qr), *a, out.numpy(), lo=lo)


def weighted_sum(codec: KVCodec, w: torch.Tensor, codes: Codes, *, start: int = 0) -> torch.Tensor:
    """(B, H, M, d) float32 ``w[..., start : start + n] @ decode(codes)`` in the codec's input coordinates,
    for weights w (B, H, M, >= start + n) (read in place when float32 and contiguous)."""
    from ..kernels.kv_lut import code_weighted_sum

    parts, a, lo = _kernel_parts(codec, codes)
    wn = _np(w.float())
    b, h, m, _ = wn.shape
    width = sum(c.k for c in parts)
    out = np.zeros((b, h, m, width), dtype=np.float32)
    code_weighted_sum(wn, start, *a, out, lo=lo)
    acc = torch.from_numpy(out)
    if lo is None:
        return acc @ codec.rotation
    k_hi = parts[0].k
    return torch.cat([acc[..., :k_hi] @ parts[0].rotation, acc[..., k_hi:] @ parts[1].rotation], dim=-1)
