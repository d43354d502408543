"""Hugging Face transformers adapter: `VQCache`, its per-layer `VQLayer`, and the fused ``"vqdb"`` attention.

Usage::

    import vqdb.kvcache                       # registers the "vqdb" attention + mask with transformers
    from vqdb.kvcache import VQCache
    cache = VQCache(model.config)   # defaults: K turbo-scaled 3 / V turbo 2.5 bits, centred, 4 sinks, 32-token window
    out = model.generate(**inputs, cache=cache, max_new_tokens=64)
    cache.memory_bytes()          # bytes the cache holds: codes, side data and the full-precision window

transformers 5.25 (installed here) takes a user cache as ``generate(cache=...)`` and ``model(..., cache=...)``;
``past_key_values=`` still works there but warns (``FutureWarning``: removed in 6.0); releases before the
rename take ``past_key_values=`` only. ``cache_implementation=`` accepts only transformers' built-in names, so a
cache object is the one way in. The cache is returned as ``generate(..., return_dict_in_generate=True).cache``.
generate() uses the whole cache interface and VQCache implements all of it on the codes (tests/kvcache/
test_hf.py): ``reorder_cache`` (beam search), ``crop`` (assisted / prompt-lookup decoding, into the codes
too), ``batch_repeat_interleave`` / ``batch_select_indices``, ``get_seq_length`` / ``get_mask_sizes``,
``reset``, ``offload`` / ``prefetch``.

Two modes (``kvcache.md`` §1):

* ``"compat"`` (default): ``update()`` returns dequantized old tokens + the full-precision tail, and the
  model's own attention (sdpa/eager/flash) runs unchanged. This path **saves memory, not bandwidth**:
  the codes are decoded every step.
* ``"fused"``: call ``model.set_attn_implementation("vqdb")`` too. ``update()`` returns only the
  full-precision tail and hands the layer to the registered attention function through a context
  variable; that function scores queries against the key codes and applies the softmax weights to the
  value codes (:meth:`CompressedKVLayer.attend`), never reconstructing keys or values in model space. On
  the CPU, TurboQuant codes (mse/scaled, 1-4 bits and their fractional splits) go through the Numba lookup
  kernels of :mod:`vqdb.kernels.kv_lut`, which never write a decoded tile (``bench/results/kvcache_decode_t1.md``).
* Attention sinks and centring (``sink_tokens=``, ``center=``): the first tokens stay exact and the codes
  hold ``x - mean`` per head (see :class:`CompressedKVLayer`); both modes support them.

Only standard full-attention layers (MHA/GQA) are compressed; sliding-window, chunked and other layer
types get transformers' own dynamic layers, so hybrid models still work (uncompressed there).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .._validation import check_choice
from ..errors import InvalidInputError
from .codecs import make_codec
from .layer import AppendResult, CompressedKVLayer

__all__ = ["VQCache", "VQLayer", "vqdb_attention", "register"]

_MODES = ("compat", "fused")

# The default configuration, chosen by bench/kvcache_long.py on SmolLM2-135M over real text
# (bench/results/kvcache_long.md: 7 WordNet documents x 2k/4k/8k-token contexts, 21,483 scored tokens; passkey
# retrieval in bench/results/kvcache_long_passkey.md): turbo-scaled 3-bit keys, turbo 2.5-bit values
# (outlier channels at 3 bits), codes of x - the per-head mean (centred), the first 4 tokens kept exact
# (attention sinks) and a 32-token full-precision window. The whole cache (memory_bytes(): codes, side data,
# window, sinks, permutations, means, rotations; window at fp16) holds 4.89x less than fp16 (4.73x / 4.92x /
# 5.02x at 2k / 4k / 8k) at +0.79% perplexity [95% CI +0.53, +1.04], and retrieves the passkey at every
# depth where the full cache does (1k-4k). A 128-token window: 4.44x at +0.60%; 64: 4.73x at +0.78%. Values
# at 2.25 or 2 bits cost +1.6 / +1.9% on the first document. The previous default (K 3.5 / V 3, no sinks, no
# centring, 128-token window: 3.93x at +0.89%) stays reachable: VQCache(config, key_bits=3.5, value_bits=3,
# residual_length=128, sink_tokens=0, center=False). Keys get more bits than values because softmax
# amplifies key errors; the scaled variant removes the 1 - D_mse shrinkage of the scores; its pre-scale
# search is off (prescale=False: 9x faster encode, the configuration measured). QJL, PolarQuant and the QJL
# residual (turbo-prod) keys were worse at every rate (bench/results/kvcache.md).
DEFAULT_KEY_CODEC = "turbo-scaled"
DEFAULT_KEY_BITS = 3.0
DEFAULT_VALUE_CODEC = "turbo"
DEFAULT_VALUE_BITS = 2.5
DEFAULT_RESIDUAL_LENGTH = 32
DEFAULT_SINK_TOKENS = 4
DEFAULT_CENTER = True
DEFAULT_CODEC_OPTIONS = {"prescale": False}


@dataclass
class _FusedStep:
    """What the fused attention function needs for the layer that was just updated."""

    core: CompressedKVLayer
    result: AppendResult
    consumed: bool = False


@dataclass
class _FusedState:
    """Shared by the layers of one cache: detects a fused cache used without the "vqdb" attention."""

    pending: _FusedStep | None = None
    checked: bool = field(default=False)


_ACTIVE: contextvars.ContextVar[_FusedStep | None] = contextvars.ContextVar(
    "vqdb_kv_fused_step", default=None
)


class VQLayer(DynamicLayer):
    """A transformers cache layer whose storage is a :class:`CompressedKVLayer`.

    ``self.keys`` / ``self.values`` mirror the full-precision window only (the encoded tokens live in
    ``self.core``); every storage method (update, crop, reorder, batch select/repeat, reset,
    offload/prefetch) is implemented on the core, so nothing inherited touches half the state.
    """

    is_compileable = False
    is_sliding = False
    is_croppable = True

    def __init__(
        self, core: CompressedKVLayer, *, mode: str = "compat", fused_state: _FusedState | None = None
    ) -> None:
        super().__init__()
        self.core = core
        self.mode = check_choice(mode, _MODES, name="mode")
        self._fused_state = fused_state if fused_state is not None else _FusedState()

    # ---- transformers CacheLayerMixin API ---------------------------------------------------
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = torch.tensor([], dtype=key_states.dtype, device=self.device)
        self.values = torch.tensor([], dtype=value_states.dtype, device=self.device)
        self.is_initialized = True

    def _sync(self) -> None:
        if self.core._win_k is not None:
            self.keys, self.values = self.core._win_k, self.core._win_v

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new tokens; return what the attention of this step must see.

        Returns
        -------
        compat: (keys, values) ``[B, H_kv, seq_length, D]``: dequantized encoded tokens ++ full-precision tail.
        fused: (keys, values) ``[B, H_kv, n_fp, D]``: the full-precision tail only; the encoded part is read
        by the ``"vqdb"`` attention function.
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        result = self.core.append(key_states, value_states)
        self._sync()
        if self.mode == "fused":
            state = self._fused_state
            pending = state.pending
            if pending is not None and not pending.consumed:
                # the previous fused step was never read by the "vqdb" attention: a stock attention would
                # silently attend to the full-precision tail only
                raise RuntimeError(
                    "VQCache(mode='fused') was used with an attention implementation that ignores its codes; "
                    "call model.set_attn_implementation('vqdb') after `import vqdb.kvcache` (or use mode='compat')"
                )
            step = _FusedStep(self.core, result)
            state.pending = step
            _ACTIVE.set(step)
            return result.keys, result.values
        if result.n_codes == 0:
            return result.keys, result.values
        k, v = self.core.materialize(result.n_codes)
        return torch.cat([k, result.keys.to(k.dtype)], dim=2), torch.cat(
            [v, result.values.to(v.dtype)], dim=2
        )

    def load(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Append precomputed keys/values without an attention step (e.g. a prefill run elsewhere);
        tokens beyond the window are encoded as usual."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.core.append(key_states, value_states)
        self._sync()

    def get_seq_length(self) -> int:
        return self.core.seq_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.core.reset()
        self.keys = self.values = None
        self.is_initialized = False
        self._fused_state.pending = None

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.core.reorder(beam_idx)
        self._sync()

    def crop(self, tokens_to_remove: int) -> None:
        """Remove the last ``-tokens_to_remove`` tokens (negative count, as transformers' DynamicLayer)."""
        if tokens_to_remove > 0:
            raise ValueError(
                f"Calling `crop` with a positive value (`{tokens_to_remove}`) is not supported. "
                "Please use a negative integer to remove that number of tokens from the cache instead."
            )
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self.core.crop(max(0, self.core.seq_length - abs(int(tokens_to_remove))))
        self._sync()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.core.repeat_interleave(int(repeats))
        self._sync()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        self.core.select(idx.long())
        self._sync()

    def offload(self) -> None:
        if self.is_initialized:
            self.core.to("cpu", non_blocking=True)
            self._sync()

    def prefetch(self) -> None:
        if self.is_initialized and self.core.device != self.device:
            self.core.to(self.device, non_blocking=True)
            self._sync()

    # ---- vqdb extras ------------------------------------------------------------------------
    def memory_bytes(self, *, dtype: torch.dtype | None = None) -> int:
        """Bytes held by this layer (codes + side data + window + outlier permutations); ``dtype`` as in
        :meth:`CompressedKVLayer.memory_bytes`."""
        return self.core.memory_bytes(dtype=dtype)

    def __repr__(self) -> str:
        return f"VQLayer({self.core!r}, mode={self.mode!r})"


def _layer_bytes(layer: Any, dtype: torch.dtype | None = None) -> int:
    if isinstance(layer, VQLayer):
        return layer.memory_bytes(dtype=dtype)
    total = 0
    for name in ("keys", "values"):
        t = getattr(layer, name, None)
        if isinstance(t, torch.Tensor):
            size = t.element_size() if dtype is None else torch.empty((), dtype=dtype).element_size()
            total += t.numel() * size
    return total


def _dense_layer_bytes(layer: Any, dtype: torch.dtype) -> int:
    if isinstance(layer, VQLayer):
        return layer.core.dense_bytes(dtype)
    return _layer_bytes(layer, dtype)


def _layer_types(config: Any) -> tuple[list[str], list[dict]]:
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs

        return get_layer_types_and_kwargs(config)
    except Exception:  # noqa: BLE001 - older transformers: infer from the config fields
        n = config.num_hidden_layers
        types = list(getattr(config, "layer_types", None) or ["full_attention"] * n)
        kwargs = [
            {"sliding_window": config.sliding_window} if t == "sliding_attention" else {} for t in types
        ]
        return types, kwargs


class VQCache(Cache):
    """A transformers ``Cache`` that keeps keys and values as vqdb codes.

    Parameters
    ----------
    config : PretrainedConfig
        The model's config (``model.config``); the text/decoder sub-config is used for multimodal models.
    key_bits, value_bits : float, default 3 and 2.5
        Bits per coordinate of the key and value codes; halves (2.5, 3.5) split each head's channels into
        outlier channels at the next integer and the rest below (``papers.md`` §4.8). ``16`` stores float16.
        Norms come on top (float16 per vector and part): the defaults cost 26 + 24 bytes per token and KV
        head at head_dim 64 (3.125 bits per coordinate), 5.1x less than fp16 per encoded token; the window
        and sinks come on top of that (see :meth:`memory_bytes` and :meth:`dense_bytes` for the whole cache).
    residual_length : int, default 32
        Most recent tokens kept in full precision.
    mode : {"compat", "fused"}
        See the module docstring. ``"fused"`` requires ``model.set_attn_implementation("vqdb")``.
    key_codec : {"turbo", "turbo-scaled", "turbo-prod", "qjl", "polar"}, default "turbo-scaled"
        ``"turbo"`` is TurboQuant-mse, ``"turbo-scaled"`` the same with the per-vector length correction;
        ``"turbo-prod"`` adds the 1-bit QJL residual (unbiased scores).
    value_codec : {"turbo", "turbo-scaled", "groups"}, default "turbo"
        ``"groups"``: KIVI-style per-token min/max groups (``group_size`` channels).
    flush_block : int, default 32
        Tokens leave the window in blocks of at least this many (see :class:`CompressedKVLayer`).
    sink_tokens : int, default 4
        The first this many tokens stay in full precision (attention sinks; see :class:`CompressedKVLayer`).
    center : bool, default True
        Code keys and values minus their per-head mean over the first encoded tokens.
    first_layers : int, default 0
        This many first layers use ``first_layers_bits`` instead (QJL and vLLM keep boundary layers at
        higher precision).
    first_layers_bits : float or None, default None
        Bits for those layers; ``None`` keeps them uncompressed (transformers' ``DynamicLayer``).
    layer_overrides : mapping int -> mapping or None
        Per-layer overrides of ``key_bits``, ``value_bits``, ``key_codec``, ``value_codec`` or codec options;
        ``None`` keeps that layer uncompressed. Applied after ``first_layers``.
    seed : int, default 0
        Seed of the rotations/sketches (one set per codec configuration, shared by all layers).
    **codec_options
        Passed to :func:`vqdb.kvcache.make_codec` (``side_dtype``, ``group_size``, ``outlier_channels``,
        ``qjl_outlier_channels``, ``prescale`` (default False here), ...).
    """

    def __init__(
        self,
        config: Any,
        key_bits: float = DEFAULT_KEY_BITS,
        value_bits: float = DEFAULT_VALUE_BITS,
        residual_length: int = DEFAULT_RESIDUAL_LENGTH,
        mode: str = "compat",
        key_codec: str = DEFAULT_KEY_CODEC,
        value_codec: str = DEFAULT_VALUE_CODEC,
        *,
        flush_block: int = 32,
        sink_tokens: int = DEFAULT_SINK_TOKENS,
        center: bool = DEFAULT_CENTER,
        first_layers: int = 0,
        first_layers_bits: float | None = None,
        layer_overrides: Mapping[int, Mapping[str, Any] | None] | None = None,
        seed: int = 0,
        **codec_options: Any,
    ) -> None:
        check_choice(mode, _MODES, name="mode")
        text_config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        n_layers = text_config.num_hidden_layers
        heads = text_config.num_attention_heads
        head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
        if (
            isinstance(first_layers, bool)
            or not isinstance(first_layers, int)
            or not 0 <= first_layers <= n_layers
        ):
            raise InvalidInputError(
                f"first_layers must be an integer in [0, {n_layers}]; got {first_layers!r}"
            )
        overrides = dict(layer_overrides or {})
        for i in overrides:
            if not isinstance(i, int) or not 0 <= i < n_layers:
                raise InvalidInputError(
                    f"layer_overrides keys must be layer indices in [0, {n_layers}); got {i!r}"
                )

        base = {
            "key_bits": key_bits,
            "value_bits": value_bits,
            "key_codec": key_codec,
            "value_codec": value_codec,
            **DEFAULT_CODEC_OPTIONS,
            **codec_options,
        }
        self.mode = mode
        self.residual_length = residual_length
        self.head_dim = head_dim
        self._codecs: dict[tuple, Any] = {}
        self._fused_state = _FusedState()
        self.layer_specs: list[dict[str, Any] | None] = []

        from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING

        types, type_kwargs = _layer_types(text_config)
        layers = []
        for i, (ltype, lkw) in enumerate(zip(types, type_kwargs)):
            spec: dict[str, Any] | None = dict(base)
            if i < first_layers:
                spec = (
                    None
                    if first_layers_bits is None
                    else {**spec, "key_bits": first_layers_bits, "value_bits": first_layers_bits}
                )
            if i in overrides:
                spec = None if overrides[i] is None else {**(spec or base), **overrides[i]}
            if ltype != "full_attention":
                layers.append(DYNAMIC_LAYER_TYPE_MAPPING[ltype](**lkw))
                self.layer_specs.append(None)
                continue
            if spec is None:
                layers.append(DynamicLayer())
                self.layer_specs.append(None)
                continue
            core = CompressedKVLayer(
                self._codec("key", spec, seed),
                self._codec("value", spec, seed),
                residual_length=residual_length,
                flush_block=flush_block,
                sink_tokens=sink_tokens,
                center=center,
            )
            layers.append(VQLayer(core, mode=mode, fused_state=self._fused_state))
            self.layer_specs.append(spec)
        super().__init__(layers=layers)

    def _codec(self, role: str, spec: Mapping[str, Any], seed: int):
        options = {
            k: v for k, v in spec.items() if k not in ("key_bits", "value_bits", "key_codec", "value_codec")
        }
        kind = spec[f"{role}_codec"]
        bits = spec[f"{role}_bits"]
        key = (
            role,
            kind,
            float(bits),
            self.head_dim,
            seed,
            tuple(sorted((k, str(v)) for k, v in options.items())),
        )
        codec = self._codecs.get(key)
        if codec is None:
            codec = make_codec(kind, bits, self.head_dim, role=role, seed=seed, **options)
            self._codecs[key] = codec
        return codec

    # ---- vqdb extras ------------------------------------------------------------------------
    def load(self, kv: Any) -> VQCache:
        """Fill the cache from precomputed per-layer keys/values, without running attention.

        Parameters
        ----------
        kv : a transformers ``Cache`` (e.g. the ``DynamicCache`` of a full-precision prefill) or a sequence of
            ``(keys, values)`` pairs, one per layer, each ``[batch, kv_heads, tokens, head_dim]``.

        Returns
        -------
        self
        """
        pairs = [(layer.keys, layer.values) for layer in kv.layers] if isinstance(kv, Cache) else list(kv)
        if len(pairs) != len(self.layers):
            raise InvalidInputError(
                f"expected {len(self.layers)} (keys, values) pairs, one per layer; got {len(pairs)}"
            )
        for layer, (k, v) in zip(self.layers, pairs):
            if isinstance(layer, VQLayer):
                layer.load(k, v)
            else:
                layer.update(k, v)
        return self

    def memory_bytes(self, *, dtype: torch.dtype | None = None) -> int:
        """Bytes the cache really holds: every layer's codes, side data, full-precision window and outlier
        permutations, the uncompressed layers' keys/values, and the codecs' shared state (rotations,
        sketches, codebooks) counted once.

        ``dtype=None`` counts the window and uncompressed layers as held (the model's dtype); a dtype
        (e.g. ``torch.float16``) counts them as if held at that dtype, for a model run here in float32
        but deployed in half precision. Compare with :meth:`dense_bytes` of the same cache.
        """
        return sum(_layer_bytes(layer, dtype) for layer in self.layers) + self.codec_state_bytes()

    def dense_bytes(self, dtype: torch.dtype = torch.float16) -> int:
        """Bytes an uncompressed cache of the same layers and tokens would hold at ``dtype`` (float16 by
        default): ``dense_bytes() / memory_bytes()`` is the honest compression ratio."""
        return sum(_dense_layer_bytes(layer, dtype) for layer in self.layers)

    def codec_state_bytes(self) -> int:
        """Bytes of the codecs' fixed state, shared by all layers."""
        return sum(c.state_bytes for c in self._codecs.values())

    def stats(self) -> dict[str, Any]:
        """Per-layer description: codecs, bits per coordinate, encoded tokens, window length, bytes."""
        out = []
        for layer in self.layers:
            if isinstance(layer, VQLayer):
                core = layer.core
                out.append(
                    {
                        "key": core.key_codec.describe(),
                        "value": core.value_codec.describe(),
                        "sinks": core.n_sink,
                        "n_codes": core.n_codes,
                        "window": core.window_length,
                        "bytes": core.memory_bytes(),
                    }
                )
            else:
                out.append(
                    {
                        "uncompressed": type(layer).__name__,
                        "seq_length": layer.get_seq_length(),
                        "bytes": _layer_bytes(layer),
                    }
                )
        return {
            "mode": self.mode,
            "layers": out,
            "codec_state_bytes": self.codec_state_bytes(),
            "memory_bytes": self.memory_bytes(),
        }


# ----------------------------------------------------------------------------------------------
# fused attention
# ----------------------------------------------------------------------------------------------
def _fallback_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def vqdb_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a :class:`VQLayer`'s codes + full-precision tail (registered as ``"vqdb"``).

    Follows transformers' attention-function contract: ``query [B, H_q, q_len, D]``, ``key/value`` as
    returned by the cache's ``update``; returns ``attn_output [B, q_len, H_q, D]`` and no weights. Calls
    that do not come from a fused :class:`VQCache` layer (another cache, no cache, uncompressed layers)
    fall back to transformers' SDPA attention with the same mask.
    """
    step = _ACTIVE.get()
    if step is None or step.consumed or step.result.keys is not key:
        return _fallback_attention(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    step.consumed = True
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = step.core.attend(query, key, value, n_codes=step.result.n_codes, scale=scale, mask=attention_mask)
    return out.transpose(1, 2).contiguous(), None


def register(name: str = "vqdb") -> None:
    """Register :func:`vqdb_attention` and transformers' eager mask builder under ``name`` (idempotent).

    The mask registration is required: without it transformers builds no mask at all for a custom
    attention name (``kvcache.md`` §1.5).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(name, vqdb_attention)
    AttentionMaskInterface.register(name, eager_mask)
