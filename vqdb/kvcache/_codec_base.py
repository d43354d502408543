"""The torch codec protocol of the KV cache, plus the two codecs that wrap others.

A KV codec turns vectors ``x (..., d)`` into a dict of code tensors that all share the leading dimensions
of ``x`` (so a cache can concatenate, slice and reorder them along any leading axis without knowing
what they hold), and computes the two products attention needs directly from codes:

* ``score(prepare(q), codes)`` — estimated ``<q, x>`` for every query and stored vector;
* ``weighted_sum(w, codes)`` — ``sum_t w_t x̂_t``, the attention output over decoded values.

``decode(codes)`` gives the reconstruction used by the compatibility path; for every codec here
``score`` equals ``<q, decode(codes)>`` up to float rounding (the estimators are linear in the query),
so the fused and compatibility paths agree.

Codecs are immutable and shareable across layers; :meth:`KVCodec.on` returns a copy whose state lives on
another device (cached per device).
"""

from __future__ import annotations

import abc
from typing import Any

import torch

__all__ = ["KVCodec", "SplitCodec", "Codes"]

Codes = dict[str, torch.Tensor]


class KVCodec(abc.ABC):
    """Fixed-size codec for KV vectors; see the module docstring for the contract.

    Attributes
    ----------
    dim : int
        Width ``d`` of the vectors.
    kind : str
        Short name used in reports (``"turbo-mse"``, ``"qjl"``, ...).
    """

    dim: int
    kind: str

    def __init__(self) -> None:
        self._device_copies: dict[str, KVCodec] = {}

    # ---- state and devices -----------------------------------------------------------------
    @abc.abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Fixed state (rotations, sketches, codebooks) as named tensors."""

    @abc.abstractmethod
    def _with_state(self, state: dict[str, torch.Tensor]) -> KVCodec:
        """A copy of this codec holding ``state`` (same names) instead of its own."""

    def on(self, device: torch.device | str) -> KVCodec:
        """This codec with its state on ``device`` (cached; ``self`` when already there)."""
        device = torch.device(device)
        state = self.state_tensors()
        if not state or all(t.device == device for t in state.values()):
            return self
        key = str(device)
        copy = self._device_copies.get(key)
        if copy is None:
            copy = self._with_state({k: t.to(device) for k, t in state.items()})
            self._device_copies[key] = copy
        return copy

    @property
    def state_bytes(self) -> int:
        """Bytes of the fixed state (counted once per codec, whatever the number of tokens)."""
        return sum(t.numel() * t.element_size() for t in self.state_tensors().values())

    @property
    @abc.abstractmethod
    def code_bytes(self) -> int:
        """Exact bytes stored per vector, side data (norms, scales) included."""

    @property
    def bits_per_dim(self) -> float:
        """``code_bytes * 8 / dim``."""
        return self.code_bytes * 8.0 / self.dim

    # ---- codec ----------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> Codes:
        """Encode vectors.

        Parameters
        ----------
        x : Tensor (..., d) float (any float dtype; computed in float32)

        Returns
        -------
        dict name -> Tensor (..., k_name); uint8 codes and float side data
        """

    @abc.abstractmethod
    def decode(self, codes: Codes) -> torch.Tensor:
        """Reconstruction ``(..., d)`` float32 of :meth:`encode`'s output."""

    @abc.abstractmethod
    def prepare(self, queries: torch.Tensor) -> Any:
        """Transform queries ``(..., m, d)`` once (rotation, sketch) for :meth:`score`."""

    @abc.abstractmethod
    def score(self, prepared: Any, codes: Codes) -> torch.Tensor:
        """Estimated inner products ``(..., m, n)`` float32 of prepared queries with ``n`` stored vectors.

        ``codes`` tensors have shape ``(..., n, k)`` with the same leading dimensions as the queries.
        """

    @abc.abstractmethod
    def weighted_sum(self, weights: torch.Tensor, codes: Codes) -> torch.Tensor:
        """``(..., m, d)`` float32: ``weights (..., m, n) @ decode(codes) (..., n, d)`` computed from codes."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for reports."""
        return {
            "kind": self.kind,
            "dim": self.dim,
            "code_bytes": self.code_bytes,
            "bits_per_dim": self.bits_per_dim,
        }


class SplitCodec(KVCodec):
    """Two codecs over a split of the coordinates: the first ``n_hi`` and the remaining ``d - n_hi``.

    Used for fractional bit rates (outlier channels at more bits, papers.md §4.8) and for QJL's outlier
    sketch: the cache permutes each head's channels so that its high-energy ("outlier") channels come
    first, and this codec codes the two parts independently; inner products add up.
    """

    kind = "split"

    def __init__(self, hi: KVCodec, lo: KVCodec) -> None:
        super().__init__()
        self.hi, self.lo = hi, lo
        self.n_hi = hi.dim
        self.dim = hi.dim + lo.dim
        self.kind = f"split({hi.kind}|{lo.kind})"

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"hi.{k}": v for k, v in self.hi.state_tensors().items()}
        out.update({f"lo.{k}": v for k, v in self.lo.state_tensors().items()})
        return out

    def _with_state(self, state):
        raise NotImplementedError  # `on` is overridden

    def on(self, device):
        device = torch.device(device)
        key = str(device)
        copy = self._device_copies.get(key)
        if copy is None:
            hi, lo = self.hi.on(device), self.lo.on(device)
            copy = self if (hi is self.hi and lo is self.lo) else SplitCodec(hi, lo)
            self._device_copies[key] = copy
        return copy

    @property
    def code_bytes(self) -> int:
        return self.hi.code_bytes + self.lo.code_bytes

    @staticmethod
    def _part(codes: Codes, prefix: str) -> Codes:
        n = len(prefix)
        return {k[n:]: v for k, v in codes.items() if k.startswith(prefix)}

    def encode(self, x):
        out = {f"hi.{k}": v for k, v in self.hi.encode(x[..., : self.n_hi]).items()}
        out.update({f"lo.{k}": v for k, v in self.lo.encode(x[..., self.n_hi :]).items()})
        return out

    def decode(self, codes):
        return torch.cat(
            [self.hi.decode(self._part(codes, "hi.")), self.lo.decode(self._part(codes, "lo."))], dim=-1
        )

    def prepare(self, queries):
        return self.hi.prepare(queries[..., : self.n_hi]), self.lo.prepare(queries[..., self.n_hi :])

    def score(self, prepared, codes):
        return self.hi.score(prepared[0], self._part(codes, "hi.")) + self.lo.score(
            prepared[1], self._part(codes, "lo.")
        )

    def weighted_sum(self, weights, codes):
        return torch.cat(
            [
                self.hi.weighted_sum(weights, self._part(codes, "hi.")),
                self.lo.weighted_sum(weights, self._part(codes, "lo.")),
            ],
            dim=-1,
        )

    def describe(self):
        out = super().describe()
        out.update(hi=self.hi.describe(), lo=self.lo.describe())
        return out
