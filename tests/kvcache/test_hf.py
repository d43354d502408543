"""VQCache with transformers: compat == fused, agreement with the full cache, every cache-layer method, GQA."""

from __future__ import annotations

import inspect

import pytest
import torch

transformers = pytest.importorskip("transformers")

from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer  # noqa: E402

import vqdb.kvcache as kv  # noqa: E402  (registers the "vqdb" attention)
from vqdb.errors import InvalidInputError, UnknownNameError  # noqa: E402
from vqdb.kvcache import VQCache, VQLayer  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """A tiny randomly initialised Llama with GQA (4 query heads, 2 KV heads), built locally."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
    )
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 256, (2, 96), generator=torch.Generator().manual_seed(1))
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return model, cfg, ids, kw


# With a left-padded row, transformers' sdpa and eager attention disagree on the hidden states of the
# fully masked pad positions; the fused path uses the eager mask, so compat runs compare under "eager".
COMPAT = "eager"


def _generate(tiny, cache, impl, **kwargs):
    model, _, ids, kw = tiny
    model.set_attn_implementation(impl)
    att = torch.ones(2, 40, dtype=torch.long)
    att[1, :5] = 0  # a left-padded row
    with torch.no_grad():
        out = model.generate(
            input_ids=ids[:, :40],
            attention_mask=att,
            do_sample=False,
            pad_token_id=0,
            **{kw: cache},
            **kwargs,
        )
    model.set_attn_implementation("sdpa")
    return out[:, 40:] if out.dim() == 2 else out


def _teacher_forced_logits(tiny, cache, impl, prefill=48):
    model, _, ids, kw = tiny
    model.set_attn_implementation(impl)
    outs = []
    with torch.no_grad():
        out = model(input_ids=ids[:, :prefill], use_cache=True, **{kw: cache})
        outs.append(out.logits[:, -1])
        for t in range(prefill, ids.shape[1] - 1):
            out = model(input_ids=ids[:, t : t + 1], use_cache=True, **{kw: cache})
            outs.append(out.logits[:, -1])
    model.set_attn_implementation("sdpa")
    return torch.stack(outs, 1)


def test_import_registers_the_vqdb_attention_and_mask():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    assert AttentionInterface._global_mapping["vqdb"] is kv.vqdb_attention
    assert "vqdb" in AttentionMaskInterface._global_mapping


def test_compat_and_fused_generate_the_same_tokens(tiny):
    _, cfg, _, _ = tiny
    compat = VQCache(cfg, key_bits=4, value_bits=4, residual_length=8, flush_block=4)
    fused = VQCache(cfg, key_bits=4, value_bits=4, residual_length=8, flush_block=4, mode="fused")
    a = _generate(tiny, compat, COMPAT, max_new_tokens=16)
    b = _generate(tiny, fused, "vqdb", max_new_tokens=16)
    assert torch.equal(a, b)
    assert compat.get_seq_length() == fused.get_seq_length() == 40 + 15
    assert compat.layers[0].core.n_codes > 0  # tokens really went through codes


def test_fused_decode_through_the_cpu_kernels_generates_the_compat_tokens(tiny, monkeypatch):
    """The default cache in fused mode scores keys and sums values with the Numba lookup kernels (counted
    here) and generates token-for-token what compat mode (dequantize + stock attention) generates."""
    from vqdb.kvcache import _cpu_fused

    calls = {"scores": 0, "values": 0}
    for name in calls:
        fn = getattr(_cpu_fused, name)

        def counted(*a, _fn=fn, _name=name, **k):
            calls[_name] += 1
            return _fn(*a, **k)

        monkeypatch.setattr(_cpu_fused, name, counted)
    _, cfg, _, _ = tiny
    a = _generate(tiny, VQCache(cfg, residual_length=8, flush_block=4), COMPAT, max_new_tokens=16)
    assert calls["scores"] == 0
    b = _generate(
        tiny, VQCache(cfg, residual_length=8, flush_block=4, mode="fused"), "vqdb", max_new_tokens=16
    )
    assert torch.equal(a, b)
    assert calls["scores"] > 0 and calls["values"] > 0


def test_compat_and_fused_logits_agree_and_4bit_matches_full_cache_on_most_steps(tiny):
    _, cfg, _, _ = tiny
    ref = _teacher_forced_logits(tiny, DynamicCache(config=cfg), "sdpa")
    compat = _teacher_forced_logits(
        tiny, VQCache(cfg, key_bits=4, value_bits=4, residual_length=8, flush_block=4), "sdpa"
    )
    fused = _teacher_forced_logits(
        tiny, VQCache(cfg, key_bits=4, value_bits=4, residual_length=8, flush_block=4, mode="fused"), "vqdb"
    )
    torch.testing.assert_close(fused, compat, atol=1e-4, rtol=1e-4)
    agree = (compat.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert agree >= 0.9, agree


@pytest.mark.parametrize(
    "key_codec,value_codec", [("qjl", "groups"), ("turbo-prod", "turbo"), ("polar", "turbo-scaled")]
)
def test_other_codecs_compat_equals_fused(tiny, key_codec, value_codec):
    _, cfg, _, _ = tiny
    opts = dict(
        key_bits=3.5 if key_codec != "polar" else 4,
        value_bits=2.5,
        key_codec=key_codec,
        value_codec=value_codec,
        residual_length=8,
        flush_block=4,
    )
    a = _generate(tiny, VQCache(cfg, **opts), COMPAT, max_new_tokens=6)
    b = _generate(tiny, VQCache(cfg, mode="fused", **opts), "vqdb", max_new_tokens=6)
    assert torch.equal(a, b)


def test_sinks_and_centring_compat_equals_fused(tiny):
    """Attention sinks + centred codes at 2.5 bits: compat and fused generate the same tokens, greedy and
    beam search (the sinks and means move with the beams)."""
    _, cfg, _, _ = tiny
    opts = dict(key_bits=2.5, value_bits=2.5, residual_length=8, flush_block=4, sink_tokens=4, center=True)
    compat, fused = VQCache(cfg, **opts), VQCache(cfg, mode="fused", **opts)
    a = _generate(tiny, compat, COMPAT, max_new_tokens=8)
    b = _generate(tiny, fused, "vqdb", max_new_tokens=8)
    assert torch.equal(a, b)
    core = compat.layers[0].core
    assert core.n_sink == 4 and core.n_codes > 0 and core.center
    a = _generate(tiny, VQCache(cfg, **opts), COMPAT, max_new_tokens=6, num_beams=3)
    b = _generate(tiny, VQCache(cfg, mode="fused", **opts), "vqdb", max_new_tokens=6, num_beams=3)
    assert torch.equal(a, b)


def test_beam_search_and_multiple_return_sequences(tiny):
    """Beam search reorders the cache (codes are moved, not re-encoded); compat and fused stay identical."""
    _, cfg, _, _ = tiny
    opts = dict(key_bits=4, value_bits=4, residual_length=8, flush_block=4)
    kwargs = dict(max_new_tokens=8, num_beams=3, num_return_sequences=2)
    a = _generate(tiny, VQCache(cfg, **opts), COMPAT, **kwargs)
    b = _generate(tiny, VQCache(cfg, mode="fused", **opts), "vqdb", **kwargs)
    assert a.shape[0] == 4 and torch.equal(a, b)


def test_fused_cache_with_a_stock_attention_is_an_error_and_vqdb_attention_falls_back(tiny):
    _, cfg, _, _ = tiny
    with pytest.raises(RuntimeError, match="set_attn_implementation"):
        _generate(tiny, VQCache(cfg, mode="fused", residual_length=8), "sdpa", max_new_tokens=2)
    ref = _generate(tiny, DynamicCache(config=cfg), "sdpa", max_new_tokens=6)
    assert torch.equal(_generate(tiny, DynamicCache(config=cfg), "vqdb", max_new_tokens=6), ref)


def _fill(cache, n_layers=2, b=2, t=30, d=32):
    torch.manual_seed(5)
    for i in range(n_layers):
        cache.update(torch.randn(b, 2, t, d), torch.randn(b, 2, t, d), i)


def _dense(layer):
    k, v = layer.core.materialize()
    return torch.cat([k, layer.core._win_k], 2), torch.cat([v, layer.core._win_v], 2)


def test_every_cache_layer_method(tiny):
    _, cfg, _, _ = tiny
    cache = VQCache(cfg, key_bits=4, value_bits=3, residual_length=8, flush_block=4)
    assert all(isinstance(layer, VQLayer) for layer in cache.layers)
    assert cache.get_seq_length() == 0 and cache.is_croppable
    _fill(cache)
    layer = cache.layers[0]
    assert cache.get_seq_length() == 30 and layer.get_max_length() == -1
    assert cache.get_mask_sizes(1, 0) == (31, 0)
    k0, v0 = _dense(layer)
    # update returns the full sequence in compat mode
    k, v = cache.update(torch.randn(2, 2, 1, 32), torch.randn(2, 2, 1, 32), 0)
    assert k.shape == (2, 2, 31, 32)
    cache.update(torch.randn(2, 2, 1, 32), torch.randn(2, 2, 1, 32), 1)
    # crop (negative count, as DynamicCache)
    cache.crop(-1)
    assert cache.get_seq_length() == 30
    torch.testing.assert_close(_dense(layer)[0], k0)
    with pytest.raises(ValueError):
        cache.crop(5)
    cache.crop(-25)  # into the codes
    assert cache.get_seq_length() == 5
    torch.testing.assert_close(_dense(layer)[0], k0[:, :, :5])
    cache.reset()
    assert cache.get_seq_length() == 0 and cache.memory_bytes() == cache.codec_state_bytes()
    # beam reorder / batch select / repeat
    _fill(cache)
    k0, v0 = _dense(layer)
    cache.reorder_cache(torch.tensor([1, 1]))
    torch.testing.assert_close(_dense(layer)[1], v0[[1, 1]])
    cache.reset()
    _fill(cache)
    cache.batch_repeat_interleave(2)
    assert _dense(layer)[0].shape[0] == 4
    torch.testing.assert_close(_dense(layer)[0], k0.repeat_interleave(2, 0))
    cache.batch_select_indices(torch.tensor([3, 0]))
    torch.testing.assert_close(_dense(layer)[0], k0[[1, 0]])
    # offload / prefetch keep the contents
    layer.offload()
    layer.prefetch()
    torch.testing.assert_close(_dense(layer)[0], k0[[1, 0]])
    # bytes: every layer + shared codec state
    stats = cache.stats()
    assert cache.memory_bytes() == sum(s["bytes"] for s in stats["layers"]) + stats["codec_state_bytes"]
    first = stats["layers"][0]
    assert first["sinks"] == 4 and first["n_codes"] + first["window"] + first["sinks"] == 30  # default sinks


def test_layer_overrides_first_layers_and_validation(tiny):
    _, cfg, _, _ = tiny
    cache = VQCache(cfg, key_bits=2.5, value_bits=2, first_layers=1)
    assert isinstance(cache.layers[0], DynamicLayer) and not isinstance(cache.layers[0], VQLayer)
    assert isinstance(cache.layers[1], VQLayer)
    cache = VQCache(
        cfg,
        key_bits=3,
        key_codec="turbo",
        first_layers=1,
        first_layers_bits=8,
        layer_overrides={1: {"key_codec": "qjl", "key_bits": 4}},
    )
    assert cache.layers[0].core.key_codec.kind == "turbo-mse8"
    assert cache.layers[1].core.key_codec.kind.startswith("split(qjl")
    assert (
        cache.layers[1].core.value_codec is cache.layers[0].core.value_codec
        or cache.layers[0].core.value_codec.kind == "turbo-mse8"
    )
    cache = VQCache(cfg, layer_overrides={0: None})
    assert not isinstance(cache.layers[0], VQLayer)
    with pytest.raises(UnknownNameError):
        VQCache(cfg, mode="nope")
    with pytest.raises(InvalidInputError):
        VQCache(cfg, first_layers=7)
    with pytest.raises(InvalidInputError):
        VQCache(cfg, layer_overrides={9: None})
    # codecs are shared across layers with the same configuration
    cache = VQCache(cfg)
    assert cache.layers[0].core.key_codec is cache.layers[1].core.key_codec


def test_sliding_window_layers_stay_stock():
    from transformers import MistralConfig

    cfg = MistralConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=16,
    )
    cache = VQCache(cfg)
    assert all(isinstance(layer, DynamicSlidingWindowLayer) for layer in cache.layers)
    cache.update(torch.randn(1, 2, 20, 16), torch.randn(1, 2, 20, 16), 0)
    assert cache.memory_bytes() > 0


def test_load_converts_a_full_precision_prefill(tiny):
    """VQCache.load(DynamicCache) encodes a prefill computed elsewhere; decoding then matches a VQCache
    that saw the prefill itself (compat and fused)."""
    model, cfg, ids, kw = tiny
    dyn = DynamicCache(config=cfg)
    with torch.no_grad():
        model(input_ids=ids[:, :40], use_cache=True, **{kw: dyn})
    outs = []
    for mode, impl in (("compat", "sdpa"), ("fused", "vqdb")):
        loaded = VQCache(cfg, residual_length=8, flush_block=4, mode=mode).load(dyn)
        own = VQCache(cfg, residual_length=8, flush_block=4, mode=mode)
        model.set_attn_implementation(impl)
        with torch.no_grad():
            model(input_ids=ids[:, :40], use_cache=True, **{kw: own})
            a = model(input_ids=ids[:, 40:44], use_cache=True, **{kw: loaded}).logits
            b = model(input_ids=ids[:, 40:44], use_cache=True, **{kw: own}).logits
        model.set_attn_implementation("sdpa")
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert loaded.get_seq_length() == 44
        outs.append(a)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    with pytest.raises(InvalidInputError):
        VQCache(cfg).load([(torch.randn(1, 2, 3, 32), torch.randn(1, 2, 3, 32))])


# ---- transformers 5.x generate(cache=...) and the rest of the cache interface through generate() ----------------
def test_generate_takes_the_cache_as_cache_and_returns_it(tiny):
    """transformers >= 5.25 takes a user cache as ``generate(cache=...)`` (``past_key_values=`` is deprecated, to
    be removed in 6.0, and warns); the same object comes back in the output and holds every token."""
    model, cfg, ids, _ = tiny
    params = inspect.signature(model.forward).parameters
    if "cache" not in params:
        pytest.skip("this transformers takes past_key_values= (before 5.25)")
    cache = VQCache(cfg, residual_length=8, flush_block=4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = model.generate(
            input_ids=ids[:1, :30],
            cache=cache,
            max_new_tokens=5,
            do_sample=False,
            pad_token_id=0,
            return_dict_in_generate=True,
        )
    assert out.cache is cache
    assert cache.get_seq_length() == 30 + 4 and cache.layers[0].core.n_codes > 0
    with pytest.warns(FutureWarning, match="past_key_values"):
        model.generate(
            input_ids=ids[:1, :30],
            past_key_values=VQCache(cfg, residual_length=8, flush_block=4),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=0,
        )


def test_prompt_lookup_decoding_crops_the_cache(tiny, monkeypatch):
    """Prompt-lookup (assisted) decoding verifies several candidate tokens per step and crops the rejected
    ones: with no token encoded VQCache gives exactly DynamicCache's tokens, and with codes compat == fused."""
    model, cfg, ids, kw = tiny
    crops = []
    orig = VQLayer.crop
    monkeypatch.setattr(VQLayer, "crop", lambda self, n: (crops.append(n), orig(self, n))[1])
    prompt = ids[:1, :10].repeat(1, 4)  # repeated n-grams, so the lookup proposes candidates

    def run(cache, impl):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out = model.generate(
                input_ids=prompt,
                do_sample=False,
                pad_token_id=0,
                max_new_tokens=12,
                prompt_lookup_num_tokens=3,
                **{kw: cache},
            )
        model.set_attn_implementation("sdpa")
        return out[:, prompt.shape[1] :]

    ref = run(DynamicCache(config=cfg), COMPAT)
    wide = run(VQCache(cfg, residual_length=512), COMPAT)
    assert torch.equal(wide, ref)
    assert any(n < 0 for n in crops), crops  # rejected candidates were cropped
    opts = dict(key_bits=4, value_bits=4, residual_length=8, flush_block=4)
    a = run(VQCache(cfg, **opts), COMPAT)
    b = run(VQCache(cfg, mode="fused", **opts), "vqdb")
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def hybrid():
    """A tiny Qwen2 whose layers alternate full and sliding-window (8 tokens) attention."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=256,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        use_sliding_window=True,
        sliding_window=8,
        layer_types=["full_attention", "sliding_attention"],
        max_position_embeddings=512,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    ids = torch.randint(0, 256, (2, 96), generator=torch.Generator().manual_seed(1))
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return model, cfg, ids, kw


def test_hybrid_sliding_window_model(hybrid):
    """Full-attention layers are compressed, sliding ones stay transformers' own; masks and lengths follow each
    layer: uncompressed it equals DynamicCache exactly, compressed compat == fused, the window keeps 7 tokens."""
    _, cfg, _, _ = hybrid
    cache = VQCache(cfg, key_bits=4, value_bits=4, residual_length=8, flush_block=4)
    assert isinstance(cache.layers[0], VQLayer)
    assert isinstance(cache.layers[1], DynamicSlidingWindowLayer)
    assert cache.is_sliding == [False, True]
    ref = _generate(hybrid, DynamicCache(config=cfg), COMPAT, max_new_tokens=10)
    assert torch.equal(_generate(hybrid, VQCache(cfg, residual_length=512), COMPAT, max_new_tokens=10), ref)
    fused = VQCache(cfg, key_bits=4, value_bits=4, residual_length=8, flush_block=4, mode="fused")
    a = _generate(hybrid, cache, COMPAT, max_new_tokens=10)
    b = _generate(hybrid, fused, "vqdb", max_new_tokens=10)
    assert torch.equal(a, b)
    assert cache.get_seq_length(0) == 49 and cache.layers[0].core.n_codes > 0
    assert cache.layers[1].keys.shape[2] == 7  # sliding_window - 1
    assert cache.get_mask_sizes(1, 0) == (50, 0)


def test_memory_bytes_count_codes_side_data_window_and_state_exactly(tiny):
    """Bytes by hand, 2 layers x batch 2 x 2 KV heads x head_dim 32, K/V turbo 4 bits (16 B of indices + a
    float16 norm per vector), an 8-token window held in bfloat16 (the model's dtype here)."""
    _, cfg, _, _ = tiny
    cache = VQCache(
        cfg,
        key_bits=4,
        value_bits=4,
        key_codec="turbo",
        residual_length=8,
        flush_block=4,
        sink_tokens=0,
        center=False,
    )
    state = 2 * (32 * 32 * 4 + 16 * 8 + 15 * 8)  # key and value codecs: float32 rotation + float64 codebook
    assert cache.codec_state_bytes() == state and cache.memory_bytes() == state and cache.dense_bytes() == 0
    torch.manual_seed(3)
    for i in range(2):  # 30 tokens: 22 leave the window (30 >= 8 + 4), 8 stay
        cache.update(torch.randn(2, 2, 30, 32, dtype=torch.bfloat16), torch.randn(2, 2, 30, 32).bfloat16(), i)
    vectors = 2 * 2 * 2  # layers x batch x heads
    codes = 22 * vectors * 2 * (16 + 2)  # tokens x vectors x (K, V) x (indices + norm)
    window = 8 * vectors * 2 * 32 * 2  # tokens x vectors x (K, V) x head_dim x bfloat16
    assert cache.memory_bytes() == codes + window + state
    assert cache.memory_bytes(dtype=torch.float32) == codes + 2 * window + state
    assert cache.dense_bytes() == 30 * vectors * 2 * 32 * 2  # the same 30 tokens in float16
    assert cache.dense_bytes(torch.float32) == 2 * cache.dense_bytes()
    for i in range(2):  # 3 decode steps: the window grows to 11 (< 12), nothing is encoded
        for _ in range(3):
            cache.update(torch.randn(2, 2, 1, 32).bfloat16(), torch.randn(2, 2, 1, 32).bfloat16(), i)
    assert cache.memory_bytes() == codes + 11 * vectors * 2 * 32 * 2 + state
    for i in range(2):  # the 12th window token flushes 4 more
        cache.update(torch.randn(2, 2, 1, 32).bfloat16(), torch.randn(2, 2, 1, 32).bfloat16(), i)
    assert cache.memory_bytes() == 26 * vectors * 2 * 18 + window + state
    assert cache.dense_bytes() == 34 * vectors * 2 * 32 * 2
    # an uncompressed layer counts its keys/values as held
    mixed = VQCache(cfg, key_bits=4, value_bits=4, key_codec="turbo", layer_overrides={0: None})
    mixed.update(torch.randn(1, 2, 5, 32), torch.randn(1, 2, 5, 32), 0)
    assert mixed.memory_bytes() - mixed.codec_state_bytes() == 5 * 2 * 2 * 32 * 4
    assert mixed.memory_bytes(dtype=torch.float16) - mixed.codec_state_bytes() == 5 * 2 * 2 * 32 * 2
    assert mixed.dense_bytes() == 5 * 2 * 2 * 32 * 2


def test_memory_bytes_of_the_default_count_sinks_means_and_permutations(tiny):
    """The default cache by hand (2 layers x batch 2 x 2 KV heads x head_dim 32, bfloat16 model): K turbo-scaled
    3 bits (12 B + a float16 norm), V turbo 2.5 bits (16 channels at 3 bits + 16 at 2, a norm each: 14 B),
    4 exact sink tokens, float32 key and value means, an int16 value-channel permutation per head."""
    _, cfg, _, _ = tiny
    cache = VQCache(cfg, residual_length=8, flush_block=4)
    state = cache.memory_bytes()
    assert state == cache.codec_state_bytes() > 0
    torch.manual_seed(4)
    for i in range(2):  # 30 tokens: 22 leave the window, the first 4 of them as sinks, 18 encoded
        cache.update(torch.randn(2, 2, 30, 32).bfloat16(), torch.randn(2, 2, 30, 32).bfloat16(), i)
    vectors = 2 * 2 * 2
    codes = 18 * vectors * (14 + 14)
    exact = (4 + 8) * vectors * 2 * 32 * 2  # sinks + window, K and V, bfloat16
    means = vectors * 2 * 32 * 4
    perm = vectors * 32 * 2
    assert cache.memory_bytes() == codes + exact + means + perm + state
    assert cache.dense_bytes() == 30 * vectors * 2 * 32 * 2
