"""CPU fast path of the fused attention: scores and value sums from packed TurboQuant codes with the Numba
lookup kernels of :mod:`vqdb.kernels.kv_lut` (no decoded tile of keys or values).

Covers :class:`~vqdb.kvcache._turbo.TurboCodec` (``mse`` / ``scaled``, 1-4 bits) and
:class:`~vqdb.kvcache._codec_base.SplitCodec` of two of them (fractional rates); everything else keeps
the torch path. Queries arrive in the codec's input coordinates (already permuted by the layer); they are
rotated once per call (one block-diagonal matrix for a split codec), and value sums are rotated back
once per query row.
"""

from __future__ import annotations

import numpy as np
import torch

from ._codec_base import Codes, KVCodec, SplitCodec
from ._turbo import TurboCodec

__all__ = ["supported", "rotation", "code_args", "scores", "values", "f32"]


def _turbo_ok(codec: KVCodec) -> bool:
    from ..kernels.kv_lut import SUPPORTED_BITS

    if not isinstance(codec, TurboCodec) or codec.variant not in ("mse", "scaled"):
        return False
    if codec.mse_bits not in SUPPORTED_BITS:
        return False
    return codec.k % (4 if codec.mse_bits in (2, 4) else 8) == 0  # whole units of the expansion loops


def supported(codec: KVCodec, device: torch.device) -> bool:
    """True when this codec's codes on ``device`` are handled by the CPU kernels."""
    if device.type != "cpu":
        return False
    ok = getattr(codec, "_cpu_supported", None)
    if ok is None:
        ok = all(_turbo_ok(c) for c in _parts(codec))
        codec._cpu_supported = ok
    return ok


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy())


def f32(t: torch.Tensor | None) -> np.ndarray | None:
    """A float32 C-contiguous NumPy view (or copy) of a CPU tensor for the kernels (None stays None)."""
    return None if t is None else _np(t.float())


def _table(codec: TurboCodec) -> np.ndarray:
    from ..kernels.kv_lut import unit_table

    table = getattr(codec, "_unit_table", None)
    if table is None:
        table = unit_table(codec.centroids.cpu().numpy(), codec.mse_bits)
        codec._unit_table = table
    return table


def _parts(codec: KVCodec) -> list[TurboCodec]:
    return [codec.hi, codec.lo] if isinstance(codec, SplitCodec) else [codec]


def rotation(codec: KVCodec) -> torch.Tensor:
    """(k, d) float32 rotation from the codec's input coordinates to the kernels' (block-diagonal over
    the two parts of a split codec; cached on the codec)."""
    rot = getattr(codec, "_cpu_rotation", None)
    if rot is None:
        parts = _parts(codec)
        rot = torch.block_diag(*[c.rotation for c in parts]) if len(parts) > 1 else codec.rotation
        codec._cpu_rotation = rot
    return rot


def code_args(codec: KVCodec, codes: Codes) -> tuple:
    """The kernels' view of ``codes``: (idx, norm, table, bits) NumPy arrays, a pair of them for a split
    codec (norms converted to float32 once; cache the result while the codes do not change)."""
    parts = _parts(codec)
    fields = [SplitCodec._part(codes, "hi."), SplitCodec._part(codes, "lo.")] if len(parts) == 2 else [codes]
    args = tuple(
        (_np(f["idx"]), f32(f["norm"][..., 0]), _table(c), c.mse_bits) for c, f in zip(parts, fields)
    )
    return args if len(args) == 2 else args[0]


def scores(codec: KVCodec, q: torch.Tensor, args: tuple, out: np.ndarray, **exact) -> None:
    """Write score rows ``out (B, H, M, S + n + W)`` for queries q (B, H, M, d) (already scaled and
    permuted like the codes): exact parts and mask as in :func:`vqdb.kernels.kv_lut.code_scores`
    (``exact``: qx, sink, tail, mu, mask as NumPy float32 arrays)."""
    from ..kernels.kv_lut import code_scores

    code_scores(f32(q.float() @ rotation(codec).T), args, out, **exact)


def values(codec: KVCodec, w: np.ndarray, args: tuple, *, d_exact: int = 0, **exact):
    """(code part (B, H, M, d) float32 torch in the codec's input coordinates, exact part (B, H, M,
    ``d_exact``) NumPy) of the attention output for weights w (B, H, M, S + n + W) float32."""
    from ..kernels.kv_lut import code_weighted_sum

    rot = rotation(codec)
    b, h, m, _ = w.shape
    out_rot = np.empty((b, h, m, rot.shape[0]), dtype=np.float32)
    out_x = np.empty((b, h, m, d_exact), dtype=np.float32)
    code_weighted_sum(w, args, out_rot, out_x, **exact)
    return torch.from_numpy(out_rot) @ rot, out_x
