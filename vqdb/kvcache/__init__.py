"""KV-cache compression with vqdb codes (needs the ``kv`` extra: torch, and transformers for `VQCache`).

* :class:`CompressedKVLayer` — framework-free core (torch tensors, CPU or CUDA).
* :func:`make_codec` — torch codecs (TurboQuant mse/scaled/prod, QJL, PolarQuant, per-token groups).
* :class:`VQCache` — a transformers ``Cache`` in ``"compat"`` or ``"fused"`` mode, passed as
  ``model.generate(..., cache=VQCache(model.config))`` (transformers 5.25, as installed; releases before the
  rename take ``past_key_values=``, deprecated since). Full-attention layers are compressed; sliding-window
  layers stay transformers' own. Importing this package registers the ``"vqdb"`` attention function and mask
  with transformers when transformers is installed, so ``model.set_attn_implementation("vqdb")`` works.
"""

from __future__ import annotations

from typing import Any

from ._codec_base import KVCodec, SplitCodec
from .codecs import KINDS, make_codec
from .layer import AppendResult, CompressedKVLayer

__all__ = [
    "CompressedKVLayer",
    "AppendResult",
    "KVCodec",
    "SplitCodec",
    "make_codec",
    "KINDS",
    "VQCache",
    "VQLayer",
    "register",
]

try:  # transformers is optional: the core layer works without it
    from .hf import VQCache, VQLayer, register, vqdb_attention  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised only without transformers
    _HF_ERROR: ImportError | None = _exc
else:
    _HF_ERROR = None
    register()


def __getattr__(name: str) -> Any:
    if name in ("VQCache", "VQLayer", "register", "vqdb_attention") and _HF_ERROR is not None:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"vqdb.kvcache.{name} needs transformers (pip install 'vqdb[kv]'): {_HF_ERROR}"
        )
    raise AttributeError(f"module 'vqdb.kvcache' has no attribute {name!r}")
