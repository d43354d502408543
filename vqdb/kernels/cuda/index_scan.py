"""Device-side scan of ``vqdb.Index(device="cuda")``: every allowed row of every segment, scored on the GPU.

Reached through :func:`vqdb.kernels.device_scanner` (the index never imports this module). Used by
:meth:`vqdb.Index.search` instead of ``vqdb.index._scan.scan_flat`` / ``scan_subset`` when the index
was created with ``device="cuda"`` (IVF probing stays on the host). Codes stay resident on the device
(:class:`~vqdb.kernels.cuda.torch_cuda.DeviceScorer` uploads each immutable segment once); filters travel as packed
bitmaps (1 bit per row) and are applied on the device; all queries of the call are scored as one batch,
and a running top-``k`` is kept on the device, so only (m, k) scores and refs come back.
"""

from __future__ import annotations

import numpy as np
import torch

from . import torch_cuda as tc

SHIFT = 40  # same ref encoding as vqdb.index._scan (segment << 40 | row)


class DeviceScan:
    """The device scan of one quantizer's codes: ``supports`` (False: the quantizer has no device path) and
    :meth:`scan`. Segments are uploaded once, on first use, and stay resident."""

    def __init__(self, quantizer):
        self.scorer = tc.DeviceScorer(quantizer)

    @property
    def supports(self) -> bool:
        return self.scorer.supports

    def scan(self, ctx, q: np.ndarray, top) -> None:
        """:func:`scan_device` with this quantizer's scorer."""
        scan_device(ctx, q, top, self.scorer)


def scan_device(ctx, q: np.ndarray, top, scorer: tc.DeviceScorer) -> None:
    """Score every allowed row of ``ctx.segments`` on ``scorer.device`` and push the best into ``top``.

    Parameters
    ----------
    ctx : vqdb.index._scan.ScanContext
    q : (m, d) float32 queries (already normalised for ``cos``)
    top : vqdb.index._scan.TopK — receives (m, top.k) candidates once, at the end
    scorer : DeviceScorer of ``ctx.quantizer`` (``scorer.supports`` must be True)
    """
    dev = scorer.device
    m, kk = q.shape[0], top.k
    prepared = ctx.quantizer.prepare(q)
    qparts = scorer.query_tensors(prepared)
    cterm = torch.from_numpy(ctx.centre_terms(q)).to(dev)
    qnorm2 = torch.from_numpy(np.einsum("ij,ij->i", q, q).astype(np.float32)).to(dev)
    best_s = torch.full((m, 0), -float("inf"), device=dev)
    best_r = torch.full((m, 0), -1, dtype=torch.long, device=dev)
    for si, seg in enumerate(ctx.segments):
        allow_np = ctx.allow[si]
        if seg.n == 0 or (allow_np is not None and not allow_np.any()):
            continue
        dc = scorer.upload(seg)
        allow = None if allow_np is None else tc.bitmap_to_device(allow_np, dev)
        for b0 in range(0, seg.n, scorer.tile_rows):
            b1 = min(seg.n, b0 + scorer.tile_rows)
            s = scorer.score(qparts, dc, slice(b0, b1))
            s = s + cterm[:, dc.lists[b0:b1] + 1]
            if ctx.metric == "l2sq":
                s = 2.0 * s - dc.sqnorm[b0:b1][None, :] - qnorm2[:, None]
            if allow is not None:
                s = s.masked_fill(~allow[b0:b1][None, :], -float("inf"))
            refs = (si << SHIFT) + torch.arange(b0, b1, device=dev, dtype=torch.long)
            cs = torch.cat([best_s, s], 1)
            cr = torch.cat([best_r, refs[None, :].expand(m, -1)], 1)
            if cs.shape[1] > kk:
                cs, pos = torch.topk(cs, kk, dim=1)
                cr = torch.gather(cr, 1, pos)
            best_s, best_r = cs, cr
    if best_s.shape[1]:
        top.push(best_s.cpu().numpy().astype(np.float32), best_r.cpu().numpy())
