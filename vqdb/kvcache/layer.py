"""`CompressedKVLayer`: one attention layer's compressed KV cache, framework-free (torch tensors, CPU or CUDA).

Storage. Keys and values arrive as ``[batch, kv_heads, tokens, head_dim]``. The most recent tokens stay in
full precision (the *window*); when the window holds ``residual_length + flush_block`` tokens or more, the
oldest ones leave it and are encoded, **once**, by the key and value codecs, and appended to the code
store (append-only: codes are never decoded and re-encoded). A freshly appended chunk is first attended
in full precision, so a prefill attends exactly, and a decode step sees exact values for the window.

Outlier channels. When a codec is a :class:`~vqdb.kvcache._codec_base.SplitCodec` (fractional bits, QJL
outlier sketch), the layer picks, for each (batch row, head), the ``n_hi`` channels with the largest energy
among the first tokens it encodes, and permutes every stored vector (and every query) so those channels
come first. The permutation is stored per (row, head) as int16 and counted in :meth:`memory_bytes`.

Attention sinks. With ``sink_tokens = s > 0`` the first ``s`` tokens of the sequence never get encoded:
they stay in full precision before the codes (the "attention sink" tokens of StreamingLLM receive a large
share of every query's attention, and their keys are outliers that a rotation code renders badly).

Centring. With ``center=True`` the layer stores, per (batch row, head), the mean key and the mean value
of the first tokens it encodes and codes ``x - mean`` instead of ``x``: real keys carry a large common
offset (most of their norm at low bits), and a code of the residual is far more precise. Scores add the
exact ``<q, mean>`` back (so codes and full-precision tokens stay on one scale) and outputs add
``(sum of weights) * mean``.

Attention. :meth:`attend` scores queries against the key codes directly (the codec rotates or sketches
the query once; no key is reconstructed in the original space), concatenates exact scores against the
full-precision tail, applies the mask and softmax, and applies the weights to the value codes (again in
the codec's own coordinates, rotated back once per query). :meth:`materialize` returns dequantized
keys/values for runtimes that run their own attention (the Hugging Face *compat* mode). Both paths give
the same result up to float rounding. Grouped-query attention: query head ``h`` uses KV head
``h // (q_heads // kv_heads)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DimensionMismatchError, InvalidInputError
from . import _cpu_fused
from ._codec_base import Codes, KVCodec, SplitCodec

__all__ = ["CompressedKVLayer", "AppendResult"]


@dataclass(frozen=True)
class AppendResult:
    """What the current queries must attend to after :meth:`CompressedKVLayer.append`.

    Attributes
    ----------
    n_codes : int
        Number of tokens before the full-precision tail visible to this step (sink tokens + codes that
        existed *before* the append; see :attr:`CompressedKVLayer.n_prefix`).
    keys, values : Tensor [batch, kv_heads, n_fp, head_dim]
        The full-precision tail in time order: the previous window followed by the appended tokens.
        ``n_codes + n_fp`` is the total length the queries attend to.
    """

    n_codes: int
    keys: torch.Tensor
    values: torch.Tensor


def _cat_codes(a: Codes | None, b: Codes) -> Codes:
    if a is None:
        return b
    return {k: torch.cat([a[k], b[k]], dim=2) for k in b}


def _slice_codes(codes: Codes, start: int, stop: int) -> Codes:
    return {k: v[:, :, start:stop] for k, v in codes.items()}


_f32 = _cpu_fused.f32


def _f32_mean(mu: torch.Tensor | None) -> np.ndarray | None:
    """A centring mean [B, H, 1, D] as the kernels' (B, H, D)."""
    return None if mu is None else _f32(mu[:, :, 0])


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


class CompressedKVLayer:
    """Compressed keys and values of one attention layer.

    Parameters
    ----------
    key_codec, value_codec : KVCodec
        Codecs of width ``head_dim`` (see :func:`vqdb.kvcache.make_codec`). They are shared, immutable
        objects; the layer moves them to the data's device on first use.
    residual_length : int >= 0, default 128
        Minimum number of most recent tokens kept in full precision.
    flush_block : int >= 1, default 32
        Tokens leave the window in blocks: a flush happens when the window reaches
        ``residual_length + flush_block`` tokens and encodes all but the last ``residual_length``.
        ``1`` keeps the window at exactly ``residual_length`` tokens.
    tile_tokens : int >= 1, default 8192
        Codes are scored and decoded in tiles of this many tokens to bound temporary memory.
    sink_tokens : int >= 0, default 0
        The first this many tokens of the sequence stay in full precision (attention sinks).
    center : bool, default False
        Code keys and values minus their per-(row, head) mean over the first encoded tokens.

    Notes
    -----
    Shapes: keys/values ``[B, H_kv, T, D]``; queries ``[B, H_q, q_len, D]`` with ``H_q`` a multiple of
    ``H_kv``. Scores are computed in float32; outputs are returned in the dtype of the queries (attend)
    or of the appended keys (materialize).
    """

    def __init__(
        self,
        key_codec: KVCodec,
        value_codec: KVCodec,
        *,
        residual_length: int = 128,
        flush_block: int = 32,
        tile_tokens: int = 8192,
        sink_tokens: int = 0,
        center: bool = False,
    ) -> None:
        if not isinstance(key_codec, KVCodec) or not isinstance(value_codec, KVCodec):
            raise InvalidInputError(
                "key_codec and value_codec must be KVCodec instances (see vqdb.kvcache.make_codec)"
            )
        if key_codec.dim != value_codec.dim:
            raise DimensionMismatchError(
                f"key and value codecs have different widths: {key_codec.dim} vs {value_codec.dim}"
            )
        for name, value, lo in (
            ("residual_length", residual_length, 0),
            ("flush_block", flush_block, 1),
            ("tile_tokens", tile_tokens, 1),
            ("sink_tokens", sink_tokens, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise InvalidInputError(f"{name} must be an integer >= {lo}; got {value!r}")
        self.key_codec = key_codec
        self.value_codec = value_codec
        self.head_dim = key_codec.dim
        self.residual_length = residual_length
        self.flush_block = flush_block
        self.tile_tokens = tile_tokens
        self.sink_tokens = sink_tokens
        if not isinstance(center, bool):
            raise InvalidInputError(f"center must be True or False; got {center!r}")
        self.center = center
        # CPU attention from codes through the Numba lookup kernels (False: the torch decoded-tile path)
        self.fast = True
        self.reset()

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop every token, code and outlier permutation (the codecs are kept)."""
        self._key_codes: Codes | None = None
        self._value_codes: Codes | None = None
        self._n_codes = 0
        self._win_k: torch.Tensor | None = None
        self._win_v: torch.Tensor | None = None
        self._perm_k: torch.Tensor | None = None
        self._perm_v: torch.Tensor | None = None
        self._sink_k: torch.Tensor | None = None
        self._sink_v: torch.Tensor | None = None
        self._mu_k: torch.Tensor | None = None
        self._mu_v: torch.Tensor | None = None
        self._inverse: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(perm) -> (perm, inverse)
        self._kernel_views: tuple | None = None  # (n_codes, key args, value args) of the CPU kernels
        self.dtype: torch.dtype | None = None
        self.device: torch.device | None = None

    @property
    def n_codes(self) -> int:
        """Number of encoded tokens."""
        return self._n_codes

    @property
    def n_sink(self) -> int:
        """Number of full-precision sink tokens held before the codes."""
        return 0 if self._sink_k is None else self._sink_k.shape[2]

    @property
    def n_prefix(self) -> int:
        """Tokens before the full-precision window: sink tokens + encoded tokens."""
        return self.n_sink + self._n_codes

    @property
    def window_length(self) -> int:
        """Number of full-precision tokens."""
        return 0 if self._win_k is None else self._win_k.shape[2]

    @property
    def seq_length(self) -> int:
        """Total number of tokens held (sinks + encoded + window)."""
        return self.n_prefix + self.window_length

    @property
    def channels_permuted(self) -> bool:
        """True when a split codec reorders channels (outlier split) before encoding keys or values."""
        return self._perm_k is not None or self._perm_v is not None

    def codes(self, n_codes: int | None = None) -> tuple[Codes, Codes]:
        """Key and value codes of the first ``n_codes`` encoded tokens (default: all), as views.

        Returns ``(key_codes, value_codes)``: each a dict of the codec's fields (e.g. ``"idx"`` uint8
        [B, H_kv, n, bytes], ``"norm"`` [B, H_kv, n, 1]), sliced along the token axis without copying.
        """
        n = self._n_enc(n_codes)
        if self._key_codes is None:
            raise InvalidInputError("the layer holds no codes")
        return _slice_codes(self._key_codes, 0, n), _slice_codes(self._value_codes, 0, n)

    @property
    def batch_size(self) -> int:
        return self._shape_bh()[0] if self.seq_length else 0

    def memory_bytes(self, *, dtype: torch.dtype | None = None) -> int:
        """Bytes held by this layer: codes + side data + full-precision window and sinks + outlier
        permutations + centring means.

        Parameters
        ----------
        dtype : torch dtype or None
            ``None`` counts the window as held (the dtype of the appended keys, i.e. the model's); a dtype
            counts it as if held at that dtype (e.g. ``torch.float16`` for a half-precision deployment of a
            model run here in float32). Codes, side data and permutations are always counted as stored.

        The codecs' fixed state (rotations, sketches) is shared between layers and not included; see
        ``key_codec.state_bytes``.
        """
        window = [t for t in (self._win_k, self._win_v, self._sink_k, self._sink_v) if t is not None]
        rest = [t for t in (self._perm_k, self._perm_v, self._mu_k, self._mu_v) if t is not None]
        for codes in (self._key_codes, self._value_codes):
            if codes:
                rest.extend(codes.values())
        if dtype is None:
            held = sum(_nbytes(t) for t in window)
        else:
            size = torch.empty((), dtype=dtype).element_size()
            held = sum(t.numel() * size for t in window)
        return held + sum(_nbytes(t) for t in rest)

    def dense_bytes(self, dtype: torch.dtype = torch.float16) -> int:
        """Bytes an uncompressed cache of the same tokens would hold at ``dtype`` (keys and values)."""
        if not self.seq_length:
            return 0
        b, h = self._shape_bh()
        return 2 * b * h * self.seq_length * self.head_dim * torch.empty((), dtype=dtype).element_size()

    def code_bytes_per_token(self) -> int:
        """Bytes one encoded token costs in this layer, over all batch rows and heads."""
        if self._win_k is None and not self._key_codes:
            return 0
        b, h = self._shape_bh()
        return b * h * (self.key_codec.code_bytes + self.value_codec.code_bytes)

    def _shape_bh(self) -> tuple[int, int]:
        for t in (self._win_k, self._sink_k):
            if t is not None:
                return t.shape[0], t.shape[1]
        t = next(iter(self._key_codes.values()))
        return t.shape[0], t.shape[1]

    # ------------------------------------------------------------------------------------------
    # appending and encoding
    # ------------------------------------------------------------------------------------------
    def append(self, keys: torch.Tensor, values: torch.Tensor) -> AppendResult:
        """Add tokens; encode those that leave the full-precision window.

        Parameters
        ----------
        keys, values : Tensor [B, H_kv, T, D]
            Same shape; ``D`` equals the codecs' width; batch and heads match earlier appends.

        Returns
        -------
        AppendResult
            The encoded prefix length visible to the current queries and the full-precision tail
            (previous window + these tokens) they attend to exactly.
        """
        self._check_kv(keys, values)
        if self.dtype is None:
            self.dtype, self.device = keys.dtype, keys.device
        n_before = self.n_prefix
        tail_k = keys if self._win_k is None else torch.cat([self._win_k, keys.to(self._win_k.dtype)], dim=2)
        tail_v = (
            values if self._win_v is None else torch.cat([self._win_v, values.to(self._win_v.dtype)], dim=2)
        )
        n_tail = tail_k.shape[2]
        if n_tail >= self.residual_length + self.flush_block:
            n_flush = n_tail - self.residual_length
            self._encode(tail_k[:, :, :n_flush], tail_v[:, :, :n_flush])
            self._win_k = tail_k[:, :, n_flush:].clone()
            self._win_v = tail_v[:, :, n_flush:].clone()
        else:
            self._win_k, self._win_v = tail_k, tail_v
        return AppendResult(n_before, tail_k, tail_v)

    def _check_kv(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
            raise InvalidInputError("keys and values must be torch tensors")
        if keys.dim() != 4 or keys.shape != values.shape:
            raise DimensionMismatchError(
                f"keys and values must both have shape [batch, kv_heads, tokens, head_dim]; got {tuple(keys.shape)} and {tuple(values.shape)}"
            )
        if keys.shape[-1] != self.head_dim:
            raise DimensionMismatchError(
                f"head_dim is {keys.shape[-1]}; this layer's codecs expect {self.head_dim}"
            )
        if not keys.is_floating_point():
            raise InvalidInputError(f"keys must be a float tensor; got {keys.dtype}")
        if self.seq_length:
            b, h = self._shape_bh()
            if keys.shape[0] != b or keys.shape[1] != h:
                raise DimensionMismatchError(
                    f"batch/heads {tuple(keys.shape[:2])} differ from the cached {(b, h)}; use select/reorder first"
                )

    @staticmethod
    def _outlier_perm(x: torch.Tensor) -> torch.Tensor:
        """[B, H, D] channel order by decreasing energy over the tokens of ``x`` [B, H, T, D] (int16)."""
        energy = x.float().pow(2).sum(dim=2)
        return torch.argsort(energy, dim=-1, descending=True, stable=True).to(torch.int16)

    @staticmethod
    def _permute(x: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
        """Reorder the last axis of x [B, H, n, D] by perm [B, H, D]."""
        if perm is None:
            return x
        idx = perm.long().unsqueeze(2).expand(-1, -1, x.shape[2], -1)
        return torch.gather(x, -1, idx)

    def _unpermute(self, x: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
        """Undo :meth:`_permute` (the inverse permutation is computed once per permutation tensor)."""
        if perm is None:
            return x
        cached = self._inverse.get(id(perm))
        if cached is None or cached[0] is not perm:
            cached = (perm, torch.argsort(perm.long(), dim=-1))
            self._inverse[id(perm)] = cached
        return torch.gather(x, -1, cached[1].unsqueeze(2).expand(-1, -1, x.shape[2], -1))

    def _encode(self, k: torch.Tensor, v: torch.Tensor) -> None:
        take = min(self.sink_tokens - self.n_sink, k.shape[2])
        if take > 0:  # the first tokens of the sequence become full-precision sinks
            sk, sv = k[:, :, :take].clone(), v[:, :, :take].clone()
            self._sink_k = sk if self._sink_k is None else torch.cat([self._sink_k, sk], 2)
            self._sink_v = sv if self._sink_v is None else torch.cat([self._sink_v, sv], 2)
            k, v = k[:, :, take:], v[:, :, take:]
            if not k.shape[2]:
                return
        if self.center and self._mu_k is None:
            self._mu_k = k.float().mean(2, keepdim=True)
            self._mu_v = v.float().mean(2, keepdim=True)
        if self._mu_k is not None:
            k, v = k.float() - self._mu_k, v.float() - self._mu_v
        kc = self.key_codec.on(k.device)
        vc = self.value_codec.on(v.device)
        if isinstance(kc, SplitCodec) and self._perm_k is None:
            self._perm_k = self._outlier_perm(k)
        if isinstance(vc, SplitCodec) and self._perm_v is None:
            self._perm_v = self._outlier_perm(v)
        new_k = kc.encode(self._permute(k.float(), self._perm_k))
        new_v = vc.encode(self._permute(v.float(), self._perm_v))
        self._key_codes = _cat_codes(self._key_codes, new_k)
        self._value_codes = _cat_codes(self._value_codes, new_v)
        self._n_codes += k.shape[2]
        self._kernel_views = None

    # ------------------------------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------------------------------
    def _tiles(self, n_codes: int):
        for start in range(0, n_codes, self.tile_tokens):
            stop = min(n_codes, start + self.tile_tokens)
            yield _slice_codes(self._key_codes, start, stop), _slice_codes(self._value_codes, start, stop)

    def _n_enc(self, n_codes: int | None) -> int:
        if n_codes is None:
            return self._n_codes
        if not 0 <= n_codes <= self._n_codes:
            raise InvalidInputError(f"n_codes must be in [0, {self._n_codes}]; got {n_codes}")
        return n_codes

    def _split(self, n_prefix: int | None) -> tuple[int, int]:
        """(sink tokens, encoded tokens) of the first ``n_prefix`` prefix tokens (default: all)."""
        if n_prefix is None:
            return self.n_sink, self._n_codes
        if not 0 <= n_prefix <= self.n_prefix:
            raise InvalidInputError(f"n_codes must be in [0, {self.n_prefix}]; got {n_prefix}")
        s = min(n_prefix, self.n_sink)
        return s, n_prefix - s

    def materialize(self, n_codes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the first ``n_codes`` prefix tokens (default: all): the sink tokens as held,
        then the encoded tokens dequantized.

        Returns
        -------
        keys, values : Tensor [B, H_kv, n_codes, D] in the dtype of the appended keys
        """
        s, n = self._split(n_codes)
        if s + n == 0:
            b, h = self._shape_bh() if self.seq_length else (0, 0)
            empty = torch.empty(b, h, 0, self.head_dim, dtype=self.dtype or torch.float32, device=self.device)
            return empty, empty
        ks, vs = [], []
        if s:
            ks.append(self._sink_k[:, :, :s].to(self.dtype))
            vs.append(self._sink_v[:, :, :s].to(self.dtype))
        if n:
            kc = self.key_codec.on(self.device)
            vc = self.value_codec.on(self.device)
            for kt, vt in self._tiles(n):
                k = self._unpermute(kc.decode(kt), self._perm_k)
                v = self._unpermute(vc.decode(vt), self._perm_v)
                if self._mu_k is not None:
                    k, v = k + self._mu_k, v + self._mu_v
                ks.append(k.to(self.dtype))
                vs.append(v.to(self.dtype))
        return (torch.cat(ks, 2), torch.cat(vs, 2)) if len(ks) > 1 else (ks[0], vs[0])

    def _group_queries(self, queries: torch.Tensor) -> tuple[torch.Tensor, int]:
        if queries.dim() != 4 or queries.shape[-1] != self.head_dim:
            raise DimensionMismatchError(
                f"queries must have shape [batch, q_heads, q_len, {self.head_dim}]; got {tuple(queries.shape)}"
            )
        b, hq, q_len, d = queries.shape
        bb, h = self._shape_bh()
        if b != bb or hq % h:
            raise DimensionMismatchError(
                f"queries [batch={b}, heads={hq}] do not fit the cache [batch={bb}, kv_heads={h}]"
            )
        g = hq // h
        return queries.float().reshape(b, h, g * q_len, d), g

    def _cpu_kernels(self, device: torch.device) -> bool:
        """True when the Numba lookup kernels serve this layer's codes on ``device``."""
        return (
            self.fast
            and _cpu_fused.supported(self.key_codec, device)
            and _cpu_fused.supported(self.value_codec, device)
        )

    def _views(self, n: int) -> tuple:
        """The kernels' (key args, value args) of the first n codes, kept until the codes change (a decode
        step between flushes reuses them)."""
        views = self._kernel_views
        if views is None or views[0] != n:
            kc, vc = self.key_codec.on(self.device), self.value_codec.on(self.device)
            views = (
                n,
                _cpu_fused.code_args(kc, _slice_codes(self._key_codes, 0, n)),
                _cpu_fused.code_args(vc, _slice_codes(self._value_codes, 0, n)),
            )
            self._kernel_views = views
        return views[1], views[2]

    def _code_scores(self, qg: torch.Tensor, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """[B, H, M, n] estimated <q, k> of grouped queries against the first n key codes, written into
        ``out`` (a float32 view, e.g. the code columns of a score row) when given."""
        kc = self.key_codec.on(qg.device)
        if self._cpu_kernels(qg.device):  # lookup kernels, no decoded tile
            if out is None:
                out = qg.new_empty(*qg.shape[:3], n)
            _cpu_fused.scores(
                kc,
                self._permute(qg, self._perm_k),
                self._views(n)[0],
                out.numpy(),
                qx=_f32(qg),
                mu=_f32_mean(self._mu_k),
            )
            return out
        offset = None
        if self._mu_k is not None:  # codes hold k - mean: add the exact <q, mean> back
            offset = torch.matmul(qg, self._mu_k.transpose(-1, -2))
        prepared = kc.prepare(self._permute(qg, self._perm_k))
        parts = [kc.score(prepared, kt) for kt, _ in self._tiles(n)]
        scores = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        if offset is not None:
            scores = scores + offset
        if out is None:
            return scores
        out.copy_(scores)
        return out

    def scores(
        self, queries: torch.Tensor, *, n_codes: int | None = None, scale: float = 1.0
    ) -> torch.Tensor:
        """Estimated scaled scores ``scale * <q, k>`` of queries against the encoded keys.

        Parameters
        ----------
        queries : Tensor [B, H_q, q_len, D]
        n_codes : int, optional — score only the first ``n_codes`` encoded tokens (default all)
        scale : float

        Returns
        -------
        Tensor [B, H_q, q_len, n_codes] float32
        """
        n = self._n_enc(n_codes)
        qg, g = self._group_queries(queries)
        b, hq, q_len, _ = queries.shape
        if n == 0:
            return qg.new_zeros(b, hq, q_len, 0)
        return (self._code_scores(qg, n) * scale).reshape(b, hq, q_len, n)

    def attend(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        *,
        n_codes: int,
        scale: float,
        mask: torch.Tensor | None = None,
        causal: bool = True,
    ) -> torch.Tensor:
        """Attention of queries over ``n_codes`` encoded tokens followed by a full-precision tail.

        Parameters
        ----------
        queries : Tensor [B, H_q, q_len, D]
        keys, values : Tensor [B, H_kv, n_fp, D]
            The full-precision tail (``AppendResult.keys/values``); the queries are its last ``q_len`` tokens.
        n_codes : int
            Encoded prefix length (``AppendResult.n_codes``).
        scale : float
            Softmax scale (usually ``D ** -0.5``).
        mask : Tensor, optional
            Additive float mask or boolean keep-mask broadcastable to ``[B, H_q, q_len, n_codes + n_fp]``.
            When given it replaces the causal rule.
        causal : bool, default True
            Without a mask, query ``i`` sees everything up to its own position.

        Returns
        -------
        Tensor [B, H_q, q_len, D] in the dtype of ``queries``.
        """
        n_s, n_c = self._split(n_codes)
        n = n_s + n_c
        b, hq, q_len, d = queries.shape
        if keys.dim() != 4 or keys.shape != values.shape or keys.shape[-1] != d:
            raise DimensionMismatchError(
                f"keys/values must be [B, H_kv, n_fp, {d}]; got {tuple(keys.shape)} / {tuple(values.shape)}"
            )
        if n and not self.seq_length:
            raise InvalidInputError("n_codes > 0 but the layer holds no codes")
        h = keys.shape[1]
        if hq % h:
            raise DimensionMismatchError(f"{hq} query heads are not a multiple of {h} kv heads")
        g = hq // h
        if queries.is_cuda and mask is None and q_len == 1 and n_c and not n_s:  # GPU decode from codes
            from .device_decode import decode_attention

            fused = decode_attention(self, queries, keys, values, n_codes=n_c, scale=scale)
            if fused is not None:
                return fused
        if (
            n_c
            and self._cpu_kernels(queries.device)
            and (mask is None or (mask.dim() == 4 and mask.shape[1] == 1))
        ):
            return self._attend_cpu(queries, keys, values, n_s, n_c, scale, mask, causal)
        # scaled queries; one score row [sinks | codes | tail] written in place (no concatenation)
        qg = queries.float().reshape(b, h, g * q_len, d) * scale
        kf, vf = keys.float(), values.float()
        total = n + kf.shape[2]
        s = qg.new_empty(b, h, g * q_len, total)
        if n_s:
            torch.matmul(qg, self._sink_k[:, :, :n_s].float().transpose(-1, -2), out=s[..., :n_s])
        if n_c:
            self._code_scores(qg, n_c, out=s[..., n_s:n])
        torch.matmul(qg, kf.transpose(-1, -2), out=s[..., n:])
        s = s.reshape(b, hq, q_len, total)
        if mask is not None:
            m = mask[..., -total:]
            s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m.float()
        elif causal and q_len > 1:
            pos = torch.arange(total, device=s.device)
            qpos = total - q_len + torch.arange(q_len, device=s.device)
            s = s.masked_fill(pos[None, :] > qpos[:, None], float("-inf"))
        w = torch.softmax(s, dim=-1).reshape(b, h, g * q_len, total)
        out = torch.matmul(w[..., n:], vf)
        if n_s:
            out = out + torch.matmul(w[..., :n_s], self._sink_v[:, :, :n_s].float())
        if n_c:
            vc = self.value_codec.on(qg.device)
            acc = None
            start = n_s
            for _, vt in self._tiles(n_c):
                stop = start + next(iter(vt.values())).shape[2]
                part = vc.weighted_sum(w[..., start:stop], vt)
                acc = part if acc is None else acc + part
                start = stop
            out = out + self._unpermute(acc, self._perm_v)
            if self._mu_v is not None:
                out = out + w[..., n_s:n].sum(-1, keepdim=True) * self._mu_v
        return out.reshape(b, hq, q_len, d).to(queries.dtype)

    def _attend_cpu(self, queries, keys, values, n_s, n_c, scale, mask, causal) -> torch.Tensor:
        """:meth:`attend` through the Numba kernels: one call writes the score rows (sinks, codes with the
        centring offset, tail, mask), a softmax, one call sums the values (codes in rotated coordinates,
        sinks + tail + centring mean in the model's)."""
        b, hq, q_len, d = queries.shape
        h = keys.shape[1]
        rows = hq // h * q_len
        total = n_s + n_c + keys.shape[2]
        qg = queries.float().reshape(b, h, rows, d) * scale
        mask_rows = None
        if mask is not None:  # [B or 1, 1, q_len or 1, >= total] -> (B or 1, q_len, total) additive
            m = mask[:, 0, :, -total:]
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape).masked_fill_(~m, float("-inf"))
            mask_rows = _f32(m.expand(-1, q_len, -1))
        elif causal and q_len > 1:
            pos = torch.arange(total)
            later = pos[None, :] > (total - q_len + torch.arange(q_len))[:, None]
            mask_rows = _f32(torch.zeros(1, q_len, total).masked_fill_(later, float("-inf")))
        key_args, value_args = self._views(n_c)
        sink_k = _f32(self._sink_k[:, :, :n_s]) if n_s else None
        sink_v = _f32(self._sink_v[:, :, :n_s]) if n_s else None
        s = np.empty((b, h, rows, total), dtype=np.float32)
        _cpu_fused.scores(
            self.key_codec,
            self._permute(qg, self._perm_k),
            key_args,
            s,
            qx=_f32(qg),
            sink=sink_k,
            tail=_f32(keys),
            mu=_f32_mean(self._mu_k),
            mask=mask_rows,
        )
        w = torch.softmax(torch.from_numpy(s), dim=-1)
        coded, exact = _cpu_fused.values(
            self.value_codec,
            w.numpy(),
            value_args,
            d_exact=d,
            sink=sink_v,
            tail=_f32(values),
            mu=_f32_mean(self._mu_v),
        )
        out = torch.from_numpy(exact) + self._unpermute(coded, self._perm_v)
        return out.reshape(b, hq, q_len, d).to(queries.dtype)

    # ------------------------------------------------------------------------------------------
    # batch and length edits (beam search, speculative decoding, offloading)
    # ------------------------------------------------------------------------------------------
    def _apply(self, fn) -> None:
        """Apply ``fn`` to every per-row tensor (dim 0 = batch)."""
        if self._win_k is not None:
            self._win_k, self._win_v = fn(self._win_k), fn(self._win_v)
        if self._sink_k is not None:
            self._sink_k, self._sink_v = fn(self._sink_k), fn(self._sink_v)
        if self._mu_k is not None:
            self._mu_k, self._mu_v = fn(self._mu_k), fn(self._mu_v)
        self._inverse.clear()
        self._kernel_views = None
        if self._perm_k is not None:
            self._perm_k = fn(self._perm_k)
        if self._perm_v is not None:
            self._perm_v = fn(self._perm_v)
        if self._key_codes is not None:
            self._key_codes = {k: fn(v) for k, v in self._key_codes.items()}
            self._value_codes = {k: fn(v) for k, v in self._value_codes.items()}

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Reorder batch rows (beam search): row ``i`` becomes old row ``beam_idx[i]``; codes are moved, not re-encoded."""
        self.select(beam_idx)

    def select(self, indices: torch.Tensor) -> None:
        """Keep (and reorder to) the batch rows ``indices`` (1-D int64 tensor or list)."""
        if not self.seq_length:
            return
        idx = torch.as_tensor(indices, dtype=torch.long)
        b = self.batch_size
        if idx.dim() != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= b)):
            raise InvalidInputError(
                f"batch indices must be a 1-D tensor of rows in [0, {b}); got {idx.tolist()[:8]}"
            )
        self._apply(lambda t: t.index_select(0, idx.to(t.device)))

    def repeat_interleave(self, repeats: int) -> None:
        """Repeat every batch row ``repeats`` times in place (``num_return_sequences``, contrastive search)."""
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise InvalidInputError(f"repeats must be a positive integer; got {repeats!r}")
        if self.seq_length:
            self._apply(lambda t: t.repeat_interleave(repeats, dim=0))

    def crop(self, max_length: int) -> None:
        """Keep only the first ``max_length`` tokens (speculative decoding rollback).

        Encoded tokens are per-token codes, so cropping into the encoded part is exact too.
        """
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0:
            raise InvalidInputError(f"max_length must be a non-negative integer; got {max_length!r}")
        if max_length >= self.seq_length:
            return
        if max_length >= self.n_prefix:
            keep = max_length - self.n_prefix
            self._win_k = self._win_k[:, :, :keep].clone()
            self._win_v = self._win_v[:, :, :keep].clone()
            return
        n_enc = max(0, max_length - self.n_sink)
        if self._key_codes is not None:
            self._key_codes = {k: v[:, :, :n_enc].clone() for k, v in self._key_codes.items()}
            self._value_codes = {k: v[:, :, :n_enc].clone() for k, v in self._value_codes.items()}
        self._n_codes = n_enc
        self._kernel_views = None
        if max_length < self.n_sink:
            self._sink_k = self._sink_k[:, :, :max_length].clone()
            self._sink_v = self._sink_v[:, :, :max_length].clone()
        if self._win_k is not None:
            self._win_k = self._win_k[:, :, :0].clone()
            self._win_v = self._win_v[:, :, :0].clone()

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> None:
        """Move every stored tensor to ``device`` (offload to CPU / prefetch back)."""
        self._apply(lambda t: t.to(device, non_blocking=non_blocking))
        if self.device is not None:
            self.device = torch.device(device)

    def __repr__(self) -> str:
        return (
            f"CompressedKVLayer(key={self.key_codec.kind}, value={self.value_codec.kind}, residual_length={self.residual_length}, "
            f"sinks={self.n_sink}, n_codes={self._n_codes}, window={self.window_length})"
        )
