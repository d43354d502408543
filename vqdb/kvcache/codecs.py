"""`make_codec`: build a torch KV codec by name and bit rate, from the reference quantizers' state.

Names (``kind``):

=================  ===========================================================================
``turbo``          TurboQuant-mse: rotation + Lloyd–Max codes + norm (alias ``turbo-mse``)
``turbo-scaled``   TurboQuant-mse with the per-vector scale correction (unbiased-in-expectation length)
``turbo-prod``     TurboQuant-prod: (b-1)-bit mse + 1-bit QJL of the residual + residual norm
``qjl``            QJL sign sketch (+ an outlier-channel sketch, as the QJL paper's KV code does)
``polar``          PolarQuant: recursive polar angles with per-level codebooks + block radii
``groups``         KIVI-style per-token min/max groups (values)
``float16``        no compression (also selected by ``bits=16``)
=================  ===========================================================================

Bit rates. ``bits`` is the nominal number of bits per coordinate of the codes. Fractional rates
(``2.5``, ``3.5``, any ``b + f``) split each head's channels: the ``round(f * d)`` channels with the
most energy (chosen per batch row and head by the cache) get ``ceil(bits)`` bits, the rest
``floor(bits)`` (papers.md §4.8). Side data (norms, scales, radii; float16 by default) comes on top and
is included in ``codec.code_bytes``; that is the number to compare.

Rotations, sketches and codebooks come from :mod:`vqdb.quantizers` (the NumPy reference
implementations) for the given seed, so a torch codec and the matching reference quantizer produce the
same codes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._validation import check_choice
from ..errors import InvalidInputError
from ._codec_base import KVCodec, SplitCodec
from ._groups import GroupCodec
from ._turbo import FloatCodec, PolarCodec, QJLCodec, TurboCodec

__all__ = [
    "make_codec",
    "KINDS",
    "POLAR_LEVEL_BITS",
    "turbo_codec_from",
    "qjl_codec_from",
    "polar_codec_from",
]

OPTIONS = ("group_size", "qjl_outlier_channels", "polar_level_bits", "rotation", "prescale")
KINDS = ("turbo", "turbo-mse", "turbo-scaled", "turbo-prod", "qjl", "polar", "groups", "float16")

# nominal rate -> (levels, bits per level); with float16 block radii the exact rates are 4 -> 3.875,
# 3.5 -> 3.375, 3 -> 3.0, 2.5 -> 2.625 bits per coordinate at d = 64 (the first is the paper's)
POLAR_LEVEL_BITS: dict[float, tuple[int, ...]] = {
    4.0: (4, 2, 2, 2),
    3.5: (3, 2, 2, 2),
    3.0: (3, 2, 2, 2, 2),
    2.5: (3, 1, 1, 1, 1),
}

_ROLE_OFFSET = {"key": 0, "value": 1}


def _sub_seed(seed: int, role: str, part: int) -> int:
    return int(seed) * 16 + _ROLE_OFFSET[role] * 8 + part


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float32)))


def _check_bits(bits: Any) -> float:
    try:
        b = float(bits)
    except (TypeError, ValueError):
        raise InvalidInputError(f"bits must be a number in [1, 8] or 16; got {bits!r}") from None
    if isinstance(bits, bool) or not (1.0 <= b <= 8.0 or b == 16.0) or not math.isfinite(b):
        raise InvalidInputError(f"bits must be a number in [1, 8] or 16; got {bits!r}")
    return b


# ------------------------------------------------------------------------------------------------
# torch codecs from reference quantizers
# ------------------------------------------------------------------------------------------------
def turbo_codec_from(quantizer: Any, *, side_dtype: torch.dtype = torch.float16) -> TurboCodec:
    """The torch codec equivalent to an integer-bit :class:`vqdb.TurboQuantizer` (same rotation, codebook,
    sketch, estimator constant and scale search), without centring."""
    c, b = quantizer.codebook
    sketch = scale = None
    if quantizer.variant == "prod":
        sketch = _t(quantizer.state_dict()["arrays"]["sketch"])
        scale = quantizer.estimator_scale
    return TurboCodec(
        _rotation_matrix(quantizer),
        torch.from_numpy(np.array(c, dtype=np.float64)),
        torch.from_numpy(np.array(b, dtype=np.float64)),
        variant=quantizer.variant,
        sketch=sketch,
        sketch_scale=scale,
        scales=quantizer.scales,
        side_dtype=side_dtype,
    )


def qjl_codec_from(quantizer: Any, *, side_dtype: torch.dtype = torch.float16) -> QJLCodec:
    """The torch codec equivalent to a :class:`vqdb.QJLQuantizer` (same sketch and estimator constant)."""
    arrays = quantizer.state_dict()["arrays"]
    return QJLCodec(_t(arrays["sketch"]), quantizer.estimator_scale, side_dtype=side_dtype)


def polar_codec_from(quantizer: Any, *, side_dtype: torch.dtype = torch.float16) -> PolarCodec:
    """The torch codec equivalent to a :class:`vqdb.PolarQuantizer` (same rotation and angle codebooks)."""
    rotation = _rotation_matrix(quantizer)
    cs, bs = zip(*quantizer.codebooks)
    f64 = lambda a: torch.from_numpy(np.array(a, dtype=np.float64))  # noqa: E731
    return PolarCodec(rotation, [f64(c) for c in cs], [f64(b) for b in bs], side_dtype=side_dtype)


def _rotation_matrix(quantizer: Any) -> torch.Tensor:
    """Dense (d, d) matrix R with rotated = R @ x, read from a reference quantizer."""
    eye = np.eye(quantizer.dim, dtype=np.float64)
    return _t(quantizer.rotate(eye).T)


# ------------------------------------------------------------------------------------------------
# factory
# ------------------------------------------------------------------------------------------------
def _integer_codec(
    kind: str, bits: int, dim: int, seed: int, side_dtype: torch.dtype, options: dict
) -> KVCodec:
    from .. import quantizers  # noqa: F401  (NumPy reference implementations)

    if kind in ("turbo", "turbo-mse", "turbo-scaled", "turbo-prod"):
        from ..quantizers.turbo import TurboQuantizer

        variant = {"turbo": "mse", "turbo-mse": "mse", "turbo-scaled": "scaled", "turbo-prod": "prod"}[kind]
        if variant == "prod" and bits < 2:
            raise InvalidInputError(
                "turbo-prod needs at least 2 bits (1 MSE bit + 1 QJL bit); use kind='qjl' for 1 bit"
            )
        kwargs = {}
        if variant == "scaled" and options.get("prescale", True):
            # the pre-scale search (pick the code of u*t with the best cosine) is off by default in the index
            # quantizer (no recall gain there) but lowers the KL of attention on SmolLM2 by ~10% at 3.5 bits
            from ..quantizers.turbo import PRESCALE_GRID

            kwargs["scales"] = PRESCALE_GRID
        q = TurboQuantizer(
            dim, bits=bits, variant=variant, rotation=options.get("rotation", "dense"), seed=seed, **kwargs
        )
        return turbo_codec_from(q, side_dtype=side_dtype)
    if kind == "groups":
        group = int(options.get("group_size", 32))
        group = min(group, dim)
        if dim % group:
            raise InvalidInputError(f"group_size {group} must divide the channel count {dim}")
        return GroupCodec(dim, bits, group, side_dtype=side_dtype)
    raise AssertionError(kind)  # pragma: no cover - callers dispatch the other kinds


def _qjl(bits: float, dim: int, seed: int, side_dtype: torch.dtype, options: dict) -> KVCodec:
    from ..quantizers.qjl import QJLQuantizer

    m_total = max(8, int(round(bits * dim / 8.0)) * 8)
    n_out = options.get("qjl_outlier_channels")
    if n_out is None:
        n_out = 8 if dim >= 64 else dim // 8
    n_out = int(n_out)
    if not 0 <= n_out < dim:
        raise InvalidInputError(f"qjl_outlier_channels must be in [0, {dim}); got {n_out}")
    if n_out == 0:
        return qjl_codec_from(QJLQuantizer(dim, sketch_dim=m_total, seed=seed), side_dtype=side_dtype)
    m_out = max(8, int(round(m_total / 4.0 / 8.0)) * 8)
    m_in = m_total - m_out
    hi = qjl_codec_from(QJLQuantizer(n_out, sketch_dim=m_out, seed=seed + 1), side_dtype=side_dtype)
    lo = qjl_codec_from(QJLQuantizer(dim - n_out, sketch_dim=m_in, seed=seed), side_dtype=side_dtype)
    return SplitCodec(hi, lo)


def _polar(bits: float, dim: int, seed: int, side_dtype: torch.dtype, options: dict) -> KVCodec:
    from ..quantizers.polar import PolarQuantizer

    level_bits = options.get("polar_level_bits")
    if level_bits is None:
        if bits not in POLAR_LEVEL_BITS:
            raise InvalidInputError(
                f"polar supports bits in {sorted(POLAR_LEVEL_BITS)} (or pass polar_level_bits=...); got {bits}"
            )
        level_bits = POLAR_LEVEL_BITS[bits]
    level_bits = tuple(int(b) for b in level_bits)
    q = PolarQuantizer(dim, levels=len(level_bits), level_bits=level_bits, seed=seed)
    return polar_codec_from(q, side_dtype=side_dtype)


def make_codec(
    kind: str,
    bits: float,
    dim: int,
    *,
    role: str = "key",
    seed: int = 0,
    side_dtype: torch.dtype = torch.float16,
    outlier_channels: int | None = None,
    **options: Any,
) -> KVCodec:
    """Build a KV codec.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS` (see the module docstring).
    bits : float
        Nominal bits per coordinate: an integer in [1, 8], a fractional rate (split into outlier and
        regular channels), or 16 (float16, no compression).
    dim : int
        Head dimension.
    role : {"key", "value"}
        Only changes the seeds, so keys and values get independent rotations.
    seed : int
    side_dtype : torch dtype of norms/scales/radii (float16 default; float32 for exact agreement with
        the float32 side data of the reference quantizers)
    outlier_channels : int, optional
        For fractional rates: number of high-precision channels (default ``round(frac * dim)``).
    **options
        ``group_size`` (groups; default 32), ``qjl_outlier_channels`` (qjl; default 8 for d >= 64, 0 for a
        plain sketch), ``polar_level_bits`` (polar; default from :data:`POLAR_LEVEL_BITS`), ``rotation``
        (turbo; ``"dense"`` or ``"hadamard"``), ``prescale`` (turbo-scaled; default True: the encoder tries the
        reference's ``PRESCALE_GRID`` of pre-scales and keeps the code with the best cosine).

    Returns
    -------
    KVCodec
    """
    check_choice(kind, KINDS, name="codec kind")
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise InvalidInputError(
            f"unknown codec option(s) {sorted(unknown)}; expected some of {list(OPTIONS)}"
        )
    check_choice(role, tuple(_ROLE_OFFSET), name="role")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise InvalidInputError(f"dim must be an integer >= 2; got {dim!r}")
    dim = int(dim)
    b = _check_bits(bits)
    if b == 16.0 or kind == "float16":
        return FloatCodec(dim, torch.float16)
    if kind == "qjl":
        return _qjl(b, dim, _sub_seed(seed, role, 0), side_dtype, options)
    if kind == "polar":
        return _polar(b, dim, _sub_seed(seed, role, 0), side_dtype, options)
    lo_bits = int(math.floor(b))
    frac = b - lo_bits
    if frac == 0:
        return _integer_codec(kind, lo_bits, dim, _sub_seed(seed, role, 0), side_dtype, options)
    n_hi = int(outlier_channels) if outlier_channels is not None else int(round(frac * dim))
    if not 0 < n_hi < dim:
        raise InvalidInputError(
            f"fractional bits {b} with dim {dim} give {n_hi} outlier channels; need 0 < n < dim"
        )
    hi = _integer_codec(kind, lo_bits + 1, n_hi, _sub_seed(seed, role, 1), side_dtype, options)
    lo = _integer_codec(kind, lo_bits, dim - n_hi, _sub_seed(seed, role, 2), side_dtype, options)
    return SplitCodec(hi, lo)
