"""The index's quantizer: build from a preset or copy an instance; describe and reload it for the manifest."""

from __future__ import annotations

import numpy as np

from ..errors import DimensionMismatchError, InvalidInputError, VqdbError


def make_quantizer(quantizer, dim: int):
    from ..quantizers.base import Quantizer

    if isinstance(quantizer, Quantizer):
        if quantizer.dim != dim:
            raise DimensionMismatchError(f"quantizer has dim {quantizer.dim}; this index has dim {dim}")
        clone = load_quantizer(quantizer_meta(quantizer), quantizer.state_dict()["arrays"])
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
    cls = type(q)
    return {"kind": state["kind"], "config": state["config"], "class": f"{cls.__module__}:{cls.__qualname__}"}


def load_quantizer(meta: dict, arrays: dict):
    state = {"kind": meta["kind"], "config": meta["config"], "arrays": arrays}
    try:
        from ..quantizers import load_quantizer

        return load_quantizer(state)
    except (ImportError, VqdbError):
        import importlib

        module, _, qualname = meta.get("class", "").partition(":")
        if not module:
            raise
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj.from_state_dict(state)
