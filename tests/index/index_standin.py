"""TEMPORARY test-only stand-in quantizer (8-bit scalar on the residual) until vqdb.quantizers lands."""

from __future__ import annotations

import numpy as np

from vqdb.quantizers.base import PreparedQueries, Quantizer


class StandInQuantizer(Quantizer):
    kind = "standin"

    def __init__(self, dim: int):
        self.dim = dim
        self.code_size = dim + 8
        self.centre_ = None

    def encode(self, x, /, *, centre=None):
        x = np.asarray(x, np.float32)
        c = self._centre(centre)
        r = x - (0 if c is None else c)
        scale = np.maximum(np.abs(r).max(axis=1), 1e-12) / 127.0
        q = np.clip(np.round(r / scale[:, None]), -127, 127).astype(np.int8).view(np.uint8)
        side = np.stack([scale.astype(np.float32), (x * x).sum(1).astype(np.float32)], 1).view(np.uint8)
        return np.ascontiguousarray(np.hstack([q, side]))

    def decode(self, codes, /, *, centre=None):
        codes = np.ascontiguousarray(codes)
        scale = codes[:, self.dim : self.dim + 4].copy().view("<f4")
        r = codes[:, : self.dim].view(np.int8).astype(np.float32) * scale
        c = self._centre(centre)
        return r + (0 if c is None else c)

    def prepare(self, queries, /):
        return PreparedQueries(np.ascontiguousarray(queries, np.float32), {})

    def _score_residual(self, prepared, codes):
        codes = np.ascontiguousarray(codes)
        scale = codes[:, self.dim : self.dim + 4].copy().view("<f4").reshape(-1)
        r = codes[:, : self.dim].view(np.int8).astype(np.float32)
        return (prepared.queries @ r.T) * scale[None, :]

    def state_dict(self):
        return {"kind": self.kind, "config": {"dim": self.dim}, "arrays": {}}

    @classmethod
    def from_state_dict(cls, state):
        return cls(state["config"]["dim"])
