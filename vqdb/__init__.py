"""vqdb: vector search and KV-cache compression on data-oblivious extreme quantization.

Importing ``vqdb`` loads only numpy (and, lazily, scipy/pyarrow when used); numba, torch,
transformers and fastapi load only when a backend or extension that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute", resolved on first access (PEP 562)
_LAZY = {
    "TurboQuantizer": "vqdb.quantizers.turbo:TurboQuantizer",
    "QJLQuantizer": "vqdb.quantizers.qjl:QJLQuantizer",
    "PolarQuantizer": "vqdb.quantizers.polar:PolarQuantizer",
    "Quantizer": "vqdb.quantizers.base:Quantizer",
    "load_quantizer": "vqdb.quantizers:load_quantizer",
    "presets": "vqdb.presets:presets",
    "make_quantizer": "vqdb.presets:make_quantizer",
    "Index": "vqdb.index:Index",
    "SearchResult": "vqdb.index:SearchResult",
    "SearchParams": "vqdb.index:SearchParams",
    "open": "vqdb.index:open_index",
    "open_or_create": "vqdb.index:open_or_create",
    "IndexProtocol": "vqdb.index:IndexProtocol",
    "Client": "vqdb.client:Client",
    "AsyncClient": "vqdb.client:AsyncClient",
}

__all__ = sorted(_LAZY) + ["__version__", "errors"]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        if name == "errors":
            return importlib.import_module("vqdb.errors")
        raise AttributeError(f"module 'vqdb' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
