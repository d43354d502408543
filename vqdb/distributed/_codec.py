"""The quantizer as plain data: how the coordinator hands it to shard actors and to disk.

Shards receive the quantizer's ``state_dict()`` (kind, config, arrays: everything drawn from the
seed), its class path, and its fitted centre -- never a pickled object, so a shard process running a
slightly different build of vqdb still rebuilds exactly the same state (or fails loudly).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def quantizer_state(quantizer) -> dict[str, Any]:
    """``{"kind", "config", "class", "arrays", "centre"}`` of ``quantizer`` (``centre`` (d,) float32 or None)."""
    state = quantizer.state_dict()
    cls = type(quantizer)
    centre = getattr(quantizer, "centre_", None)
    return {
        "kind": state["kind"],
        "config": state["config"],
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "arrays": {name: np.asarray(a) for name, a in state["arrays"].items()},
        "centre": None if centre is None else np.asarray(centre, dtype=np.float32),
    }


def load_quantizer_state(state: dict[str, Any]):
    """Inverse of :func:`quantizer_state`: the class vqdb's registry holds for ``kind``
    (:func:`vqdb.quantizers.register_quantizer`). ``class`` is informative only: nothing named in a
    data file is ever imported."""
    from ..quantizers import load_quantizer

    quantizer = load_quantizer({"kind": state["kind"], "config": state["config"], "arrays": state["arrays"]})
    centre = state.get("centre")
    quantizer.centre_ = None if centre is None else np.asarray(centre, dtype=np.float32)
    return quantizer
