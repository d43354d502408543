"""Quantizers: TurboQuant, QJL and PolarQuant behind one protocol (:mod:`vqdb.quantizers.base`).

Importing this package imports numpy and the quantizer modules only (no numba, no torch): kernels
are chosen lazily by :func:`vqdb.kernels.get_ops` on first use.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError, UnknownNameError
from ._common import as_array_dict
from ._state_checks import check_round_trip
from .base import PreparedQueries, Quantizer
from .polar import PolarQuantizer
from .qjl import QJLQuantizer
from .turbo import TurboQuantizer

QUANTIZERS: dict[str, type[Quantizer]] = {
    TurboQuantizer.kind: TurboQuantizer,
    QJLQuantizer.kind: QJLQuantizer,
    PolarQuantizer.kind: PolarQuantizer,
}

__all__ = [
    "Quantizer",
    "PreparedQueries",
    "TurboQuantizer",
    "QJLQuantizer",
    "PolarQuantizer",
    "QUANTIZERS",
    "load_quantizer",
    "register_quantizer",
]


def register_quantizer(cls: type[Quantizer]) -> type[Quantizer]:
    """Add a quantizer class to the registry under ``cls.kind`` so indexes that use it can be reopened.

    Stored indexes name their quantizer by kind only; the class is found here, never imported from a
    name in a data file. Registering a kind that is already taken by another class is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, Quantizer)) or not isinstance(
        getattr(cls, "kind", None), str
    ):
        raise InvalidInputError("register_quantizer takes a Quantizer subclass with a 'kind' string")
    if QUANTIZERS.get(cls.kind, cls) is not cls:
        raise InvalidInputError(
            f"quantizer kind {cls.kind!r} is already registered by {QUANTIZERS[cls.kind].__name__}"
        )
    QUANTIZERS[cls.kind] = cls
    return cls


def load_quantizer(state: dict[str, Any]) -> Quantizer:
    """Rebuild a quantizer from :meth:`Quantizer.state_dict` output (arrays are used, not re-drawn).

    The state is checked once here (:mod:`._state_checks`): the rebuilt quantizer must write back
    exactly the arrays it was given, and each loader checks the ranges the kernels rely on.

    Raises
    ------
    UnknownNameError
        ``state["kind"]`` is not a registered quantizer kind.
    InvalidInputError
        An array is missing, of the wrong shape or dtype, or holds values the kernels cannot use.
    """
    kind = state.get("kind") if isinstance(state, dict) else None
    cls = QUANTIZERS.get(kind)
    if cls is None:
        raise UnknownNameError(f"unknown quantizer kind {kind!r}; expected one of {sorted(QUANTIZERS)}")
    quantizer = cls.from_state_dict(state)
    check_round_trip(quantizer, as_array_dict(state.get("arrays") or {}))
    return quantizer
