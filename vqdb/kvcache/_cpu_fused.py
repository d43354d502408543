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


def _turbo_scores(codec: TurboCodec, q: torch.Tensor, codes: Codes, out: np.ndarray) -> None:
    from ..kernels.kv_lut import code_scores

    qr = _np(q.float() @ codec.rotation.T)
    code_scores(qr, _np(codes["idx"]), _np(codes["norm"][..., 0].float()), _table(codec), codec.mse_bits, out)


def _turbo_sum(codec: TurboCodec, w: np.ndarray, start: int, codes: Codes) -> torch.Tensor:
    from ..kernels.kv_lut import code_weighted_sum

    b, h, m, _ = w.shape
    out = np.zeros((b, h, m, codec.k), dtype=np.float32)
    code_weighted_sum(
        w,
        start,
        _np(codes["idx"]),
        _np(codes["norm"][..., 0].float()),
        _table(codec),
        codec.mse_bits,
        out,
    )
    return torch.from_numpy(out) @ codec.rotation


def add_scores(codec: KVCodec, q: torch.Tensor, codes: Codes, out: torch.Tensor) -> None:
    """``out (B, H, M, n) += <q, x>`` estimated for queries q (B, H, M, d) against n stored codes; ``out``
    is float32 on the CPU and may be a view (the code columns of a score row)."""
    view = out.numpy()
    if isinstance(codec, SplitCodec):
        n_hi = codec.n_hi
        _turbo_scores(codec.hi, q[..., :n_hi], SplitCodec._part(codes, "hi."), view)
        _turbo_scores(codec.lo, q[..., n_hi:], SplitCodec._part(codes, "lo."), view)
    else:
        _turbo_scores(codec, q, codes, view)


def weighted_sum(codec: KVCodec, w: torch.Tensor, codes: Codes, *, start: int = 0) -> torch.Tensor:
    """(B, H, M, d) float32 ``w[..., start : start + n] @ decode(codes)`` in the codec's input coordinates,
    for weights w (B, H, M, >= start + n) (read in place when float32 and contiguous)."""
    wn = _np(w.float())
    if isinstance(codec, SplitCodec):
        return torch.cat(
            [
                _turbo_sum(codec.hi, wn, start, SplitCodec._part(codes, "hi.")),
                _turbo_sum(codec.lo, wn, start, SplitCodec._part(codes, "lo.")),
            ],
            dim=-1,
        )
    return _turbo_sum(codec, wn, start, codes)
