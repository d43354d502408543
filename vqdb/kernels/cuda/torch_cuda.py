"""Torch kernels on CUDA tensors: the ``cuda-torch`` backend of :mod:`vqdb.kernels`, plus device-resident
scoring used by ``vqdb.Index(device="cuda")``.

Plain torch ops (no Triton: the scan is a decode-tile + matmul, which cuBLAS already runs at bandwidth, and
Triton cannot be tested on the CPU-only CI). The tensor kernels themselves live in
:mod:`vqdb.kernels.torch_ops` (device-agnostic); this module

* exposes the reference op signatures for NumPy inputs, computing on :func:`device` (``cuda`` when present,
  else ``cpu`` so the module is testable on CI) and returning NumPy; torch tensors in give tensors out on
  their own device;
* adds :func:`topk_tensor`, a blocked top-k (per-block stable sort, then a stable merge) whose ties go to the
  lower column index exactly like the reference;
* adds :class:`DeviceScorer`: a quantizer's codes uploaded once to the device (uint8, plus the float side
  data) and scored there against batches of queries from the quantizer's ``scan_parts()`` description.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

from .. import reference
from .. import torch_ops as T

name = "cuda-torch"

_DEVICE: str | None = None
TOPK_BLOCK = 1 << 16


def device() -> torch.device:
    """The device NumPy inputs are computed on: ``cuda`` when available, else ``cpu`` (tests)."""
    global _DEVICE
    if _DEVICE is None:
        _DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(_DEVICE)


def set_device(dev: str | None) -> None:
    """Force the device of the NumPy-facing ops (``None``: back to automatic). For tests and benchmarks."""
    global _DEVICE
    _DEVICE = dev


def _t(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        a = np.ascontiguousarray(x)
        t = torch.from_numpy(a if a.flags.writeable else a.copy()).to(device())
    return t if dtype is None else t.to(dtype)


_out = T._out


# ------------------------------------------------------------------------------------------------
# reference ops (NumPy in -> computed on device() -> NumPy out)
# ------------------------------------------------------------------------------------------------
def pack_bits(idx, bits: int):
    """(n, k) uint8 indices -> (n, ceil(k*bits/8)) uint8 LSB-first bitstream."""
    return _out(T.pack_tensor(_t(idx), int(bits)), idx, np.uint8)


def unpack_bits(packed, bits: int, k: int):
    """(n, ceil(k*bits/8)) uint8 -> (n, k) uint8 indices."""
    return _out(T.unpack_tensor(_t(packed), int(bits), int(k)).to(torch.uint8), packed, np.uint8)


def bucketize(x, boundaries):
    """(n, k) float32, (L-1,) float64 -> (n, k) uint8 (count of boundaries <= x, compared in float64)."""
    xt = _t(x, torch.float64)
    return _out(
        torch.bucketize(xt.contiguous(), _t(boundaries, torch.float64).to(xt.device), right=True).to(
            torch.uint8
        ),
        x,
        np.uint8,
    )


def encode_scalar(x, boundaries, bits: int):
    """Fused bucketize + pack: (n, k) float32 -> (n, ceil(k*bits/8)) uint8."""
    xt = _t(x, torch.float64)
    idx = torch.bucketize(xt.contiguous(), _t(boundaries, torch.float64).to(xt.device), right=True)
    return _out(T.pack_tensor(idx, int(bits)), x, np.uint8)


def _scaled(u, boundaries, centroids, scales) -> torch.Tensor:
    ut = _t(u)
    return T.scaled_indices_tensor(
        ut,
        _t(boundaries).to(ut.device),
        _t(centroids).to(ut.device),
        [float(s) for s in np.asarray(scales, np.float64).ravel()],
    )


def scaled_indices(u, boundaries, centroids, scales):
    """See :func:`vqdb.kernels.reference.scaled_indices`."""
    return _out(_scaled(u, boundaries, centroids, scales).to(torch.uint8), u, np.uint8)


def encode_scaled(u, boundaries, centroids, scales, bits: int):
    """Fused :func:`scaled_indices` + pack."""
    return _out(T.pack_tensor(_scaled(u, boundaries, centroids, scales), int(bits)), u, np.uint8)


def _decode(codes, offset: int, bits: int, k: int, values) -> torch.Tensor:
    ct = _t(codes)
    nb = T.packed_size(int(k), int(bits))
    return T.decode_tensor(
        ct[:, offset : offset + nb], _t(values, torch.float32).to(ct.device), int(bits), int(k)
    )


def decode_values(codes, offset: int, bits: int, k: int, values):
    """(n, code_size) uint8 -> (n, k) float32 ``values[idx]``."""
    return _out(_decode(codes, offset, bits, k, values), codes, np.float32)


def lut_scores(q, codes, offset: int, bits: int, values):
    """(m, k) float32 queries x packed codes -> (m, n) float32 (decode a tile, one matmul)."""
    tile = _decode(codes, offset, bits, _t(q).shape[1], values)
    return _out(_t(q, torch.float32).to(tile.device) @ tile.T, codes, np.float32)


_SIGNS = np.array([-1.0, 1.0], dtype=np.float32)


def sign_scores(q, codes, offset: int):
    """Σ_j q[i, j] · (2·bit_j − 1) over 1-bit sign codes: (m, k) float32 -> (m, n) float32."""
    return lut_scores(q, codes, offset, 1, _SIGNS)


# ------------------------------------------------------------------------------------------------
# blocked top-k
# ------------------------------------------------------------------------------------------------
def topk_tensor(
    scores: torch.Tensor, k: int, *, block: int = TOPK_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` per row of ``scores`` (m, n), best first, ties to the lower column index.

    Blocked: each block of ``block`` columns keeps its best ``k`` (stable descending sort, so equal scores
    stay in column order), then the concatenated candidates (blocks in column order) get one more stable
    sort. Returns ``(ids (m, k) int64, top (m, k) float32)``, ``-1``/``-inf`` padded when ``k > n``.
    """
    m, n = scores.shape
    k = int(k)
    kk = min(k, n)
    ids = torch.full((m, k), -1, dtype=torch.long, device=scores.device)
    top = torch.full((m, k), -float("inf"), dtype=torch.float32, device=scores.device)
    if kk == 0 or m == 0:
        return ids, top
    cand_v, cand_i = [], []
    for b0 in range(0, n, block):
        v, o = torch.sort(scores[:, b0 : b0 + block].float(), dim=1, descending=True, stable=True)
        cand_v.append(v[:, :kk])
        cand_i.append(o[:, :kk] + b0)
    v, i = (cand_v[0], cand_i[0]) if len(cand_v) == 1 else (torch.cat(cand_v, 1), torch.cat(cand_i, 1))
    if len(cand_v) > 1:
        v, o = torch.sort(v, dim=1, descending=True, stable=True)
        i = torch.gather(i, 1, o)
    ids[:, :kk] = i[:, :kk]
    top[:, :kk] = v[:, :kk]
    return ids, top


def topk(scores, k: int):
    """Reference ``topk`` signature: NumPy or tensor scores -> (ids int64, top float32)."""
    ids, top = topk_tensor(_t(scores, torch.float32), int(k))
    return _out(ids, scores, np.int64), _out(top, scores, np.float32)


# ------------------------------------------------------------------------------------------------
# device-resident scoring of a quantizer's codes (vqdb.Index(device="cuda"))
# ------------------------------------------------------------------------------------------------
class DeviceCodes:
    """One run of codes on the device: raw bytes, side floats and exact squared norms.

    Attributes
    ----------
    codes : Tensor (n, code_size) uint8; side : Tensor (n, n_side) float32; sqnorm : Tensor (n,) float32.
    """

    def __init__(self, codes: np.ndarray, side_offset: int, n_side: int, dev: torch.device):
        host = np.ascontiguousarray(codes, dtype=np.uint8)
        self.n = host.shape[0]
        self.codes = torch.from_numpy(host).to(dev)
        side = (
            np.ascontiguousarray(host[:, side_offset : side_offset + 4 * n_side])
            .view("<f4")
            .reshape(self.n, n_side)
        )
        self.side = torch.from_numpy(side.astype(np.float32)).to(dev)
        sq = np.ascontiguousarray(host[:, -4:]).view("<f4").reshape(-1)
        self.sqnorm = torch.from_numpy(sq.astype(np.float32)).to(dev)

    @property
    def nbytes(self) -> int:
        return int(self.codes.numel() + 4 * self.side.numel() + 4 * self.sqnorm.numel())


class DeviceScorer:
    """Scores prepared queries against device-resident codes of one quantizer.

    Parameters
    ----------
    quantizer : a vqdb quantizer exposing ``scan_parts()`` (TurboQuant, QJL). Others (PolarQuant) are
        not supported on the device: :meth:`supports` is False and callers keep the host path.
    dev : torch device (default :func:`device`).

    Notes
    -----
    ``score = Σ_parts side[:, p.side] * p.mult * (Q_p @ decode(codes_p).T)`` (+ ``side[:, additive]``) — the quantizer's own
    ``_score_residual`` as plain data; decoded tiles are float32, ``tile_rows`` codes at a time. Uploads are
    cached per segment object (segments are immutable), so a segment is copied to the device once.
    """

    def __init__(self, quantizer, dev=None, *, tile_rows: int = 1 << 15):
        self.quantizer = quantizer
        self.device = torch.device(dev) if dev is not None else device()
        self.tile_rows = int(tile_rows)
        parts = quantizer.scan_parts() if hasattr(quantizer, "scan_parts") else None
        self._spec = parts
        self._values = (
            []
            if parts is None
            else [
                torch.as_tensor(np.asarray(p["values"], np.float32)).to(self.device) for p in parts["parts"]
            ]
        )
        self._cache: dict = {}
        self._lock = threading.Lock()

    @property
    def supports(self) -> bool:
        return self._spec is not None

    def upload(self, seg) -> DeviceCodes:
        """The device copy of a segment's codes and IVF list numbers (cached weakly per segment object)."""
        key = id(seg)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0]() is seg:
                return hit[1]
            dc = DeviceCodes(seg.codes, self._spec["side_offset"], self._spec["n_side"], self.device)
            dc.lists = torch.from_numpy(np.asarray(seg.lists, np.int64)).to(self.device)
            self._cache[key] = (weakref.ref(seg), dc)
            for kk in [kk for kk, (r, _) in self._cache.items() if r() is None]:
                del self._cache[kk]
            return dc

    def query_tensors(self, prepared) -> list[torch.Tensor]:
        """Per part, the (m, k_p) float32 query slice on the device."""
        out = []
        for p in self._spec["parts"]:
            key, index, start, stop = p["query"]
            q = prepared.data[key] if index is None else prepared.data[key][index]
            out.append(
                torch.from_numpy(np.ascontiguousarray(q[:, start:stop], dtype=np.float32)).to(self.device)
            )
        return out

    def score(self, qparts: list[torch.Tensor], dc: DeviceCodes, rows: slice = slice(None)) -> torch.Tensor:
        """(m, b) float32 estimated residual inner products against rows ``rows`` of ``dc``."""
        codes = dc.codes[rows]
        side = dc.side[rows]
        out = None
        for p, qp, vals in zip(self._spec["parts"], qparts, self._values):
            nb = T.packed_size(int(p["k"]), int(p["bits"]))
            tile = T.decode_tensor(
                codes[:, p["offset"] : p["offset"] + nb], vals, int(p["bits"]), int(p["k"])
            )
            s = (qp @ tile.T) * (side[:, p["side"]] * float(p["mult"]))[None, :]
            out = s if out is None else out + s
        if self._spec.get("additive") is not None:  # per-vector additive term (TurboQuant centred query)
            out = out + side[:, int(self._spec["additive"])][None, :]
        return out


def unpack_bitmap(bits: torch.Tensor, n: int) -> torch.Tensor:
    """(ceil(n/8),) uint8 little-endian bitmap -> (n,) bool on the bitmap's device."""
    shifts = torch.arange(8, device=bits.device, dtype=torch.int32)
    return (((bits.to(torch.int32).unsqueeze(-1) >> shifts) & 1).reshape(-1)[:n]).bool()


def bitmap_to_device(mask: np.ndarray, dev) -> torch.Tensor:
    """(n,) bool -> device bool mask, shipped as a packed bitmap (1 bit per row over the bus)."""
    packed = np.packbits(np.asarray(mask, bool), bitorder="little")
    return unpack_bitmap(torch.from_numpy(packed).to(dev), int(mask.shape[0]))


def warmup() -> None:
    """Nothing to compile (torch)."""


# scaled_indices_segments, encode_turbo_block, hadamard_rotate: the NumPy reference's (host arrays)
KERNELS = reference.KERNELS.replace(
    name="cuda-torch",
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
    warmup=warmup,
)
