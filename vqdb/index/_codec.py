"""The index's quantizer: build from a preset or copy an instance; describe and reload it for the manifest."""

from __future__ import annotations

import numpy as np

from ..errors import DimensionMismatchError, InvalidInputError


def make_quantizer(quantizer, dim: int):
    from ..quantizers.base import Quantizer

    if isinstance(quantizer, Quantizer):
        if quantizer.dim != dim:
            raise DimensionMismatchError(f"quantizer has dim {quantizer.dim}; this index has dim {dim}")
        state = quantizer.state_dict()
        clone = type(quantizer).from_state_dict({**state, "arrays": dict(state["arrays"])})
        clone.centre_ = (
            None if getattr(quantizer, "centre_", None) is None else np.array(quantizer.centre_, np.float32)
        )
        return clone
    if not isinstance(quantizer, str):
        raise InvalidInputError(
            f"quantizer must be a preset name or a Quantizer; got {type(quantizer).__name__}"
        )
    from ..presets import make_quantizer

    return make_quantizer(quantizer, dim)


def quantizer_meta(q) -> dict:
    state = q.state_dict()
    return {"kind": state["kind"], "config": state["config"]}


def load_quantizer(meta: dict, arrays: dict):
    """The quantizer of a manifest, rebuilt by the class vqdb's registry holds for ``meta["kind"]``
    (:func:`vqdb.quantizers.register_quantizer`). Nothing named in a data file is ever imported: a
    format-1 manifest's ``class`` entry is ignored."""
    from ..quantizers import load_quantizer as from_registry

    return from_registry({"kind": meta["kind"], "config": meta["config"], "arrays": arrays})
