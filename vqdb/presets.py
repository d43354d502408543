"""Named quantizer presets: one dict, no string grammar.

>>> import vqdb
>>> [name for name, _, _ in vqdb.presets(384)][:3]
['turbo-1', 'turbo-2', 'turbo-2.5']
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

from .errors import DimensionMismatchError, InvalidInputError, UnknownNameError


@dataclass(frozen=True)
class Preset:
    """A quantizer class name, its keyword arguments, and a one-line description."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


# The data-oblivious ``turbo-N`` presets store one more exact float per vector, β = <c, r> - est<c, r>, so
# that scores estimate <q, x> as <q, c> + <c, r> + est<q - c, r> (the query centred like the data; RaBitQ's
# form): the estimation error scales with ||q - c|| instead of ||q|| (TurboQuantizer ``centred_query``).
# Indexes persist their quantizer state, so indexes made before this keep their codes and scores.
# They also use the structured FHT-Kac rotation (O(d log d), no padding): recall within noise of the dense
# Haar rotation on every shared data set, and the encoder no longer spends its time in a d x d matmul.
_CENTRED = {"centred_query": True, "rotation": "fht"}

PRESETS: dict[str, Preset] = {
    "turbo-1": Preset(
        "turbo",
        {"bits": 1, **_CENTRED},
        "TurboQuant 1 bit/dim, scaled, centred query (RaBitQ-like sign code + length correction)",
    ),
    "turbo-2": Preset("turbo", {"bits": 2, **_CENTRED}, "TurboQuant 2 bits/dim, scaled, centred query"),
    "turbo-2.5": Preset(
        "turbo",
        {"bits": 2.5, **_CENTRED},
        "TurboQuant 2.5 bits/dim: 1/4 outlier channels at 3 bits, rest at 2; centred query",
    ),
    "turbo-3": Preset("turbo", {"bits": 3, **_CENTRED}, "TurboQuant 3 bits/dim, scaled, centred query"),
    "turbo-3.5": Preset(
        "turbo",
        {"bits": 3.5, **_CENTRED},
        "TurboQuant 3.5 bits/dim: 1/2 outlier channels at 4 bits, rest at 3; centred query",
    ),
    "turbo-4": Preset(
        "turbo", {"bits": 4, **_CENTRED}, "TurboQuant 4 bits/dim, scaled, centred query (default)"
    ),
    "turbo-8": Preset(
        "turbo", {"bits": 8, **_CENTRED}, "TurboQuant 8 bits/dim, scaled, centred query (near lossless)"
    ),
    "turbo-mse-2": Preset(
        "turbo", {"bits": 2, "variant": "mse"}, "TurboQuant_mse 2 bits/dim (paper Algorithm 1)"
    ),
    "turbo-mse-4": Preset(
        "turbo", {"bits": 4, "variant": "mse"}, "TurboQuant_mse 4 bits/dim (paper Algorithm 1)"
    ),
    "turbo-prod-3": Preset(
        "turbo",
        {"bits": 3, "variant": "prod"},
        "TurboQuant_prod 3 bits/dim: 2-bit mse + 1-bit QJL residual, unbiased",
    ),
    "turbo-prod-4": Preset(
        "turbo",
        {"bits": 4, "variant": "prod"},
        "TurboQuant_prod 4 bits/dim: 3-bit mse + 1-bit QJL residual, unbiased",
    ),
    "turbo-hadamard-4": Preset(
        "turbo",
        {"bits": 4, "rotation": "hadamard", **_CENTRED},
        "TurboQuant 4 bits/dim, randomized Hadamard rotation (padded to 2^k), centred query",
    ),
    "turbo-pca-1": Preset(
        "turbo",
        {"bits": 1, "rotation": "pca"},
        "TurboQuant 1 bit/dim on a fitted PCA basis with bit allocation (one-pass fit)",
    ),
    "turbo-pca-2": Preset(
        "turbo",
        {"bits": 2, "rotation": "pca"},
        "TurboQuant 2 bits/dim on a fitted PCA basis with bit allocation",
    ),
    "turbo-pca-3": Preset(
        "turbo",
        {"bits": 3, "rotation": "pca"},
        "TurboQuant 3 bits/dim on a fitted PCA basis with bit allocation",
    ),
    "turbo-pca-4": Preset(
        "turbo",
        {"bits": 4, "rotation": "pca"},
        "TurboQuant 4 bits/dim on a fitted PCA basis with bit allocation",
    ),
    "turbo-pca-8": Preset(
        "turbo",
        {"bits": 8, "rotation": "pca"},
        "TurboQuant 8 bits/dim on a fitted PCA basis with bit allocation",
    ),
    "qjl": Preset("qjl", {}, "QJL: d sign bits of an orthogonalised sketch + norm (1 bit/dim)"),
    "qjl-2x": Preset("qjl", {"sketch_dim_factor": 2}, "QJL with 2d sign bits (2 bits/dim)"),
    "polar": Preset(
        "polar", {}, "PolarQuant: 4 levels, 4/2/2/2-bit angles + fp16 radius per 16 dims (3.875 bits/dim)"
    ),
}


def _classes():
    from .quantizers import QUANTIZERS

    return QUANTIZERS


def _kwargs(preset: Preset, dim: int) -> dict[str, Any]:
    kw = dict(preset.kwargs)
    factor = kw.pop("sketch_dim_factor", None)
    if factor is not None:
        kw["sketch_dim"] = int(factor) * dim
    return kw


def _check_dim(dim) -> int:
    if isinstance(dim, bool) or not hasattr(dim, "__index__") or int(dim) < 2:
        raise InvalidInputError(f"dim must be an integer >= 2; got {dim!r}")
    return int(dim)


def presets(dim: int) -> list[tuple[str, int, str]]:
    """List the presets with their bytes per vector for dimension ``dim``.

    Parameters
    ----------
    dim : int >= 2

    Returns
    -------
    list of (name, bytes_per_vector, description)
        ``bytes_per_vector`` is the full ``code_size`` (side data included). Presets that cannot
        be built at this ``dim`` (e.g. fractional rates for tiny d) are left out.
    """
    dim = _check_dim(dim)
    classes = _classes()
    out = []
    for name, preset in PRESETS.items():
        try:
            size = classes[preset.kind].code_size_for(dim, **_kwargs(preset, dim))
        except InvalidInputError:
            continue
        out.append((name, int(size), preset.description))
    return out


def make_quantizer(name_or_quantizer, dim: int, seed: int = 0):
    """Build the quantizer of a preset name (or check and return a given quantizer).

    Parameters
    ----------
    name_or_quantizer : str or Quantizer
        A key of :data:`PRESETS`, or a quantizer instance (returned as is after checking its dim).
    dim : int
    seed : int

    Raises
    ------
    UnknownNameError
        Unknown preset name (the message lists the valid ones).
    DimensionMismatchError
        A quantizer instance of another dimension.
    """
    from .quantizers.base import Quantizer

    if isinstance(name_or_quantizer, Quantizer):
        if name_or_quantizer.dim != dim:
            raise DimensionMismatchError(f"quantizer has dim {name_or_quantizer.dim}; expected {dim}")
        return name_or_quantizer
    preset = PRESETS.get(name_or_quantizer) if isinstance(name_or_quantizer, str) else None
    if preset is None:
        raise UnknownNameError(
            f"unknown quantizer preset {name_or_quantizer!r}; expected one of {list(PRESETS)}"
        )
    dim = _check_dim(dim)
    return _classes()[preset.kind](dim, seed=seed, **_kwargs(preset, dim))


class _CallableModule(types.ModuleType):
    """``vqdb.presets`` is both this module and the function :func:`presets`.

    Importing the submodule (``from vqdb.presets import make_quantizer``) binds the *module* to the
    attribute ``vqdb.presets``, shadowing the lazily exported function; making the module callable keeps
    ``vqdb.presets(dim)`` working either way.
    """

    def __call__(self, dim: int) -> list[tuple[str, int, str]]:
        return presets(dim)


sys.modules[__name__].__class__ = _CallableModule
