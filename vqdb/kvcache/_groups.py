"""Per-token group quantization of values (KIVI-style asymmetric min/max groups).

Each vector is cut into groups of ``group_size`` consecutive channels; a group stores ``bits``-bit
integer codes ``q = round((x - min) / scale)`` with ``scale = (max - min) / (2**bits - 1)``, plus its
``scale`` and ``min`` in the side dtype (float16 by default, as KIVI and QJL's value path do). No
rotation and no fixed state: the codec is data-dependent per group, which is why it costs
``2 * 16 / group_size`` extra bits per coordinate.
"""

from __future__ import annotations

import torch

from ..kernels import torch_ops as ops
from ._codec_base import KVCodec

__all__ = ["GroupCodec"]


class GroupCodec(KVCodec):
    """Asymmetric min/max integer codes per group of channels of each vector.

    Parameters
    ----------
    dim : int
    bits : int in [1, 8]
    group_size : int, must divide ``dim``
    side_dtype : torch dtype of the per-group scale and minimum (default float16)
    """

    def __init__(self, dim: int, bits: int, group_size: int, side_dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        self.dim, self.bits, self.group_size, self.side_dtype = dim, bits, group_size, side_dtype
        self.n_groups = dim // group_size
        self.kind = f"groups{bits}/g{group_size}"
        self._levels = torch.arange(1 << bits, dtype=torch.float32)
        self._table = ops.byte_table(self._levels, bits) if (8 % bits == 0 or bits == 3) else None

    def state_tensors(self):
        return {"levels": self._levels}

    def _with_state(self, state):
        copy = GroupCodec(self.dim, self.bits, self.group_size, side_dtype=self.side_dtype)
        copy._levels = state["levels"]
        copy._table = (
            ops.byte_table(copy._levels, self.bits) if (8 % self.bits == 0 or self.bits == 3) else None
        )
        return copy

    @property
    def code_bytes(self) -> int:
        side = torch.empty((), dtype=self.side_dtype).element_size()
        return ops.packed_size(self.dim, self.bits) + 2 * self.n_groups * side

    def encode(self, x):
        lead = x.shape[:-1]
        g = x.float().reshape(*lead, self.n_groups, self.group_size)
        mn = g.amin(-1)
        mx = g.amax(-1)
        levels = (1 << self.bits) - 1
        scale = ((mx - mn) / levels).to(self.side_dtype)
        mn_s = mn.to(self.side_dtype)
        s = scale.float().unsqueeze(-1)
        safe = torch.where(s > 0, s, torch.ones_like(s))
        q = torch.round((g - mn_s.float().unsqueeze(-1)) / safe).clamp_(0, levels)
        q = torch.where(s > 0, q, torch.zeros_like(q))
        return {"q": ops.pack_tensor(q.reshape(*lead, self.dim), self.bits), "scale": scale, "min": mn_s}

    def decode(self, codes):
        q = ops.decode_tensor(codes["q"], self._levels, self.bits, self.dim, self._table)
        lead = q.shape[:-1]
        q = q.reshape(*lead, self.n_groups, self.group_size)
        x = codes["min"].float().unsqueeze(-1) + codes["scale"].float().unsqueeze(-1) * q
        return x.reshape(*lead, self.dim)

    def prepare(self, queries):
        return queries.float()

    def score(self, prepared, codes):
        return ops.scores_from_tile(prepared, self.decode(codes))

    def weighted_sum(self, weights, codes):
        return ops.weighted_tile_sum(weights.float(), self.decode(codes))

    def describe(self):
        out = super().describe()
        out.update(bits=self.bits, group_size=self.group_size)
        return out
