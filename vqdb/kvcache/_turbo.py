"""Torch codecs of the rotation-based quantizers: TurboQuant (mse / scaled / prod), QJL and PolarQuant.

The math follows the NumPy reference quantizers of :mod:`vqdb.quantizers` exactly — rotations, sketches
and codebooks are *taken from* those objects (see :mod:`vqdb.kvcache.codecs`), never re-derived — but the
codes are laid out for a KV cache: packed indices/sign bits as uint8 tensors and the per-vector floats
(norm, scale, residual norm, block radii) as separate small tensors in ``side_dtype`` (float16 by
default, as QJL's and KIVI's KV paths store them).

Scoring works in the codec's own coordinates: the query is rotated (and sketched) once, each stored
vector is expanded to its codebook values with a byte lookup table (a "decoded tile", never rotated
back), and a matmul gives all inner products. The attention output is accumulated in the same rotated
coordinates and rotated back once per query row.
"""

from __future__ import annotations

import math

import torch

from ..errors import InvalidInputError
from ..kernels import torch_ops as ops
from ._codec_base import Codes, KVCodec

__all__ = ["TurboCodec", "QJLCodec", "PolarCodec", "FloatCodec"]

_FP16_MAX = 65504.0


def _side(x: torch.Tensor, dtype: torch.dtype, what: str) -> torch.Tensor:
    out = x.to(dtype)
    if dtype == torch.float16 and x.numel() and bool((x.abs() > _FP16_MAX).any()):
        raise InvalidInputError(
            f"a {what} exceeds the float16 range; build the cache with side_dtype=torch.float32"
        )
    return out


def _norms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(norms (...,), unit vectors (..., d)); zero vectors stay zero."""
    n = torch.linalg.vector_norm(x, dim=-1)
    safe = torch.where(n > 0, n, torch.ones_like(n))
    return n, x / safe.unsqueeze(-1)


class FloatCodec(KVCodec):
    """Stores vectors as floats of ``dtype`` (float16 by default): the 16-bit baseline and escape hatch."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        self.dim, self.dtype = dim, dtype
        self.kind = f"float{torch.empty((), dtype=dtype).element_size() * 8}"

    def state_tensors(self):
        return {}

    def _with_state(self, state):
        return self

    @property
    def code_bytes(self) -> int:
        return self.dim * torch.empty((), dtype=self.dtype).element_size()

    def encode(self, x):
        return {"x": x.to(self.dtype)}

    def decode(self, codes):
        return codes["x"].float()

    def prepare(self, queries):
        return queries.float()

    def score(self, prepared, codes):
        return ops.scores_from_tile(prepared, codes["x"].float())

    def weighted_sum(self, weights, codes):
        return ops.weighted_tile_sum(weights.float(), codes["x"].float())


class TurboCodec(KVCodec):
    """TurboQuant codes (arXiv 2504.19874) for KV vectors, the torch twin of :class:`vqdb.TurboQuantizer`.

    Parameters
    ----------
    rotation : Tensor (k, d) float32
        Π with orthonormal columns (k = d for a Haar rotation, k = next power of two for Hadamard);
        rotated coordinates are ``y = x @ Πᵀ``.
    centroids, boundaries : Tensor (2**b,), (2**b - 1,) float64
        Lloyd–Max codebook of a unit-vector coordinate in R^k for the ``b`` MSE bits.
    variant : {"mse", "scaled", "prod"}
        ``mse``: ``x̂ = ||x|| Πᵀ c[idx]`` with ``idx`` the cells of ``u = Πx/||x||``.
        ``scaled``: the stored factor is ``||x|| / <u, c[idx]>`` instead of ``||x||`` and ``idx`` is the
        code of ``u·t`` for the pre-scale ``t`` in ``scales`` with the best cosine (EDEN/RaBitQ-style length
        renormalisation: inner products are no longer shrunk by 1 - D_mse).
        ``prod``: the MSE stage has ``b = bits - 1`` bits; the residual ``e = x - x̂_mse`` gets 1-bit QJL with
        ``sketch`` (d × d, orthogonal rows of norm sqrt(d)) and its norm ``γ = ||e||`` is stored:
        ``x̂ = x̂_mse + sketch_scale · γ · Sᵀ sign(S e)`` (unbiased inner products).
    sketch : Tensor (d, d) float32, required for ``prod``
    sketch_scale : float — the sign estimator constant (``vqdb.TurboQuantizer.estimator_scale``)
    scales : sequence of float — pre-scales tried by the ``scaled`` encoder (the reference's ``scales``)
    side_dtype : torch dtype of the per-vector floats (float16 default)

    Notes
    -----
    Codes: ``idx`` (packed MSE indices), ``norm`` (``||x||`` or the scaled factor), and for ``prod``
    ``signs`` (packed) and ``rnorm`` (γ). Encoding compares float64 values with float64 boundaries, as
    the reference does, so both produce the same indices from the same rotated input.
    """

    def __init__(
        self,
        rotation: torch.Tensor,
        centroids: torch.Tensor,
        boundaries: torch.Tensor,
        *,
        variant: str = "mse",
        sketch: torch.Tensor | None = None,
        sketch_scale: float | None = None,
        scales=(1.0,),
        side_dtype: torch.dtype = torch.float16,
    ) -> None:
        super().__init__()
        self.rotation = rotation.float()
        self.centroids64 = centroids.double()
        self.boundaries64 = boundaries.double()
        self.centroids = centroids.float()
        self.sketch = None if sketch is None else sketch.float()
        self.variant = variant
        self.scales = tuple(float(t) for t in scales)
        self.side_dtype = side_dtype
        self.k, self.dim = int(rotation.shape[0]), int(rotation.shape[1])
        self.mse_bits = int(round(math.log2(self.centroids.numel())))
        if variant == "prod" and (self.sketch is None or sketch_scale is None):
            raise InvalidInputError("TurboCodec(variant='prod') needs a sketch and its sketch_scale")
        self.sketch_scale = None if sketch_scale is None else float(sketch_scale)
        self.bits = self.mse_bits + (1 if variant == "prod" else 0)
        self.kind = f"turbo-{variant}{self.bits}"
        self._signs = torch.tensor([-1.0, 1.0], device=self.rotation.device)
        self._table = (
            ops.byte_table(self.centroids, self.mse_bits)
            if (8 % self.mse_bits == 0 or self.mse_bits == 3)
            else None
        )
        self._signs_table = ops.byte_table(self._signs, 1)

    def state_tensors(self):
        out = {"rotation": self.rotation, "centroids": self.centroids64, "boundaries": self.boundaries64}
        if self.sketch is not None:
            out["sketch"] = self.sketch
        return out

    def _with_state(self, state):
        return TurboCodec(
            state["rotation"],
            state["centroids"],
            state["boundaries"],
            variant=self.variant,
            sketch=state.get("sketch"),
            sketch_scale=self.sketch_scale,
            scales=self.scales,
            side_dtype=self.side_dtype,
        )

    @property
    def code_bytes(self) -> int:
        side = torch.empty((), dtype=self.side_dtype).element_size()
        n = ops.packed_size(self.k, self.mse_bits)
        if self.variant == "prod":
            return n + ops.packed_size(self.dim, 1) + 2 * side
        return n + side

    # ---- encode / decode -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Codes:
        x = x.float()
        norm = torch.linalg.vector_norm(x.double(), dim=-1)
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        u = (x @ self.rotation.T).double() / safe.unsqueeze(-1)
        if self.variant == "scaled" and len(self.scales) > 1:
            idx = ops.scaled_indices_tensor(u.float(), self.boundaries64, self.centroids64, self.scales)
        else:
            idx = ops.bucketize_tensor(u.float().double(), self.boundaries64)
        c = self.centroids[idx]
        out = {"idx": ops.pack_tensor(idx, self.mse_bits)}
        if self.variant == "scaled":
            dot = (u.float().double() * c.double()).sum(-1)
            factor = torch.where(
                (dot > 0) & (norm > 0),
                norm / torch.where(dot > 0, dot, torch.ones_like(dot)),
                torch.zeros_like(norm),
            )
        else:
            factor = norm
        out["norm"] = _side(factor, self.side_dtype, "norm").unsqueeze(-1)
        if self.variant == "prod":
            e = x - (c @ self.rotation) * norm.float().unsqueeze(-1)
            out["signs"] = ops.pack_tensor(ops.sign_tensor(e @ self.sketch.T), 1)
            out["rnorm"] = _side(
                torch.linalg.vector_norm(e.double(), dim=-1), self.side_dtype, "residual norm"
            ).unsqueeze(-1)
        return out

    def _tile(self, codes: Codes) -> torch.Tensor:
        """Codebook values in rotated coordinates (..., n, k), unit scale."""
        return ops.decode_tensor(codes["idx"], self.centroids, self.mse_bits, self.k, self._table)

    def _signs_tile(self, codes: Codes) -> torch.Tensor:
        return ops.decode_tensor(codes["signs"], self._signs, 1, self.dim, self._signs_table)

    def decode(self, codes: Codes) -> torch.Tensor:
        out = (self._tile(codes) @ self.rotation) * codes["norm"].float()
        if self.variant == "prod":
            out = out + (self._signs_tile(codes) @ self.sketch) * (self.sketch_scale * codes["rnorm"].float())
        return out

    # ---- scoring ---------------------------------------------------------------------------
    def prepare(self, queries: torch.Tensor):
        q = queries.float()
        return q @ self.rotation.T, (q @ self.sketch.T if self.variant == "prod" else None)

    def score(self, prepared, codes: Codes) -> torch.Tensor:
        qr, qs = prepared
        s = ops.scores_from_tile(qr, self._tile(codes), codes["norm"].float().squeeze(-1))
        if self.variant == "prod":
            s = s + ops.scores_from_tile(
                qs, self._signs_tile(codes), self.sketch_scale * codes["rnorm"].float().squeeze(-1)
            )
        return s

    def weighted_sum(self, weights: torch.Tensor, codes: Codes) -> torch.Tensor:
        w = weights.float()
        out = ops.weighted_tile_sum(w, self._tile(codes), codes["norm"].float().squeeze(-1)) @ self.rotation
        if self.variant == "prod":
            out = (
                out
                + ops.weighted_tile_sum(
                    w, self._signs_tile(codes), self.sketch_scale * codes["rnorm"].float().squeeze(-1)
                )
                @ self.sketch
            )
        return out

    def describe(self):
        out = super().describe()
        out.update(variant=self.variant, bits=self.bits)
        return out


class QJLCodec(KVCodec):
    """QJL (arXiv 2406.03482): ``m`` sign bits of ``S x`` plus ``||x||``.

    Parameters
    ----------
    sketch : Tensor (m, d) float32 — JL matrix (rows orthogonalised in blocks, row norm ≈ sqrt(d))
    scale : float — estimator constant; ``<q, x> ≈ scale · ||x|| · <S q, sign(S x)>`` (``sqrt(pi/2)/m`` for QJL)
    side_dtype : torch dtype of the norm
    """

    def __init__(
        self, sketch: torch.Tensor, scale: float, *, side_dtype: torch.dtype = torch.float16
    ) -> None:
        super().__init__()
        self.sketch = sketch.float()
        self.scale = float(scale)
        self.side_dtype = side_dtype
        self.m, self.dim = int(sketch.shape[0]), int(sketch.shape[1])
        self.kind = f"qjl{self.m}"
        self._signs = torch.tensor([-1.0, 1.0], device=self.sketch.device)
        self._signs_table = ops.byte_table(self._signs, 1)

    def state_tensors(self):
        return {"sketch": self.sketch}

    def _with_state(self, state):
        return QJLCodec(state["sketch"], self.scale, side_dtype=self.side_dtype)

    @property
    def code_bytes(self) -> int:
        return ops.packed_size(self.m, 1) + torch.empty((), dtype=self.side_dtype).element_size()

    def encode(self, x):
        x = x.float()
        norm = torch.linalg.vector_norm(x, dim=-1)
        return {
            "signs": ops.pack_tensor(ops.sign_tensor(x @ self.sketch.T), 1),
            "norm": _side(norm, self.side_dtype, "norm").unsqueeze(-1),
        }

    def _tile(self, codes):
        return ops.decode_tensor(codes["signs"], self._signs, 1, self.m, self._signs_table)

    def decode(self, codes):
        return (self._tile(codes) @ self.sketch) * (self.scale * codes["norm"].float())

    def prepare(self, queries):
        return queries.float() @ self.sketch.T

    def score(self, prepared, codes):
        return ops.scores_from_tile(
            prepared, self._tile(codes), self.scale * codes["norm"].float().squeeze(-1)
        )

    def weighted_sum(self, weights, codes):
        return (
            ops.weighted_tile_sum(
                weights.float(), self._tile(codes), self.scale * codes["norm"].float().squeeze(-1)
            )
            @ self.sketch
        )

    def describe(self):
        out = super().describe()
        out.update(sketch_dim=self.m)
        return out


class PolarCodec(KVCodec):
    """PolarQuant (arXiv 2502.02617), the torch twin of :class:`vqdb.PolarQuantizer`: rotation, recursive
    polar transform over blocks of ``2**levels`` rotated coordinates, per-level Lloyd–Max angle codebooks,
    one radius per block.

    Parameters
    ----------
    rotation : Tensor (p, d) float32 — orthonormal columns; p is d rounded up to a multiple of ``2**levels``
    level_centroids, level_boundaries : lists (one per level) of Tensor (2**b_l,), (2**b_l - 1,) float64 — angle
        codebooks (level 1 on [0, 2π), levels ≥ 2 on [0, π/2])
    side_dtype : torch dtype of the block radii (float16 like the reference)
    """

    def __init__(
        self, rotation, level_centroids, level_boundaries, *, side_dtype: torch.dtype = torch.float16
    ) -> None:
        super().__init__()
        self.rotation = rotation.float()
        self.level_centroids = [c.double() for c in level_centroids]
        self.level_boundaries = [b.double() for b in level_boundaries]
        self.levels = len(self.level_centroids)
        self.level_bits = [int(round(math.log2(c.numel()))) for c in self.level_centroids]
        self.k, self.dim = int(rotation.shape[0]), int(rotation.shape[1])
        self.block = 2**self.levels
        if self.k % self.block:
            raise InvalidInputError(
                f"PolarQuant needs the rotated width divisible by 2**levels = {self.block}; got {self.k}"
            )
        self.n_blocks = self.k // self.block
        self.side_dtype = side_dtype
        self.kind = "polar" + "-".join(str(b) for b in self.level_bits)
        self._cos = [torch.cos(c).float() for c in self.level_centroids]
        self._sin = [torch.sin(c).float() for c in self.level_centroids]
        # one table per level giving (cos, sin) pairs of every code in a byte
        self._cs = [torch.stack([c, s_], -1) for c, s_ in zip(self._cos, self._sin)]

    def state_tensors(self):
        out = {"rotation": self.rotation}
        for i, (c, b) in enumerate(zip(self.level_centroids, self.level_boundaries)):
            out[f"c{i}"], out[f"b{i}"] = c, b
        return out

    def _with_state(self, state):
        cs = [state[f"c{i}"] for i in range(self.levels)]
        bs = [state[f"b{i}"] for i in range(self.levels)]
        return PolarCodec(state["rotation"], cs, bs, side_dtype=self.side_dtype)

    def _n_angles(self, level: int) -> int:
        return self.k >> (level + 1)  # level index 0 -> k/2 angles

    @property
    def code_bytes(self) -> int:
        side = torch.empty((), dtype=self.side_dtype).element_size()
        return (
            sum(ops.packed_size(self._n_angles(i), b) for i, b in enumerate(self.level_bits))
            + self.n_blocks * side
        )

    def encode(self, x):
        r = (x.float() @ self.rotation.T).double()
        out = {}
        for i in range(self.levels):
            a, b = r[..., 0::2], r[..., 1::2]
            ang = torch.atan2(b, a)
            if i == 0:
                ang = torch.remainder(ang, 2 * math.pi)
            idx = ops.bucketize_tensor(ang.float().double(), self.level_boundaries[i])
            out[f"a{i}"] = ops.pack_tensor(idx, self.level_bits[i])
            r = torch.hypot(a, b)
        out["radius"] = _side(r, self.side_dtype, "radius")
        return out

    def decode_rotated(self, codes):
        """Reconstruction in rotated coordinates (..., p) float32."""
        r = codes["radius"].float()
        for i in range(self.levels - 1, -1, -1):
            n = self._n_angles(i)
            idx = ops.unpack_tensor(codes[f"a{i}"], self.level_bits[i], n)
            cs = (
                self._cs[i].index_select(0, idx.reshape(-1)).reshape(*idx.shape, 2)
            )  # (cos, sin) of every angle
            r = (r.unsqueeze(-1) * cs).reshape(*r.shape[:-1], 2 * n)
        return r

    def decode(self, codes):
        return self.decode_rotated(codes) @ self.rotation

    def prepare(self, queries):
        return queries.float() @ self.rotation.T

    def score(self, prepared, codes):
        return ops.scores_from_tile(prepared, self.decode_rotated(codes))

    def weighted_sum(self, weights, codes):
        return ops.weighted_tile_sum(weights.float(), self.decode_rotated(codes)) @ self.rotation

    def describe(self):
        out = super().describe()
        out.update(level_bits=self.level_bits)
        return out
