"""Torch KV codecs agree with the NumPy reference quantizers (same codes, same scores) and report exact bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vqdb
from vqdb.errors import InvalidInputError, UnknownNameError
from vqdb.kernels import torch_ops as ops
from vqdb.kvcache import SplitCodec, make_codec
from vqdb.kvcache.codecs import polar_codec_from, qjl_codec_from, turbo_codec_from


@pytest.mark.parametrize("variant", ["mse", "scaled", "prod"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_turbo_codec_matches_reference(kv_vectors, variant, bits):
    x, q = kv_vectors
    ref = vqdb.TurboQuantizer(64, bits=bits, variant=variant, seed=3)
    codec = turbo_codec_from(ref, side_dtype=torch.float32)
    codes_ref = ref.encode(x)
    codes = codec.encode(torch.from_numpy(x))
    mse_bits = bits - 1 if variant == "prod" else bits
    nb = ops.packed_size(64, mse_bits)
    assert np.array_equal(codes["idx"].numpy(), codes_ref[:, :nb])  # same indices, bit for bit
    if variant == "prod":
        assert np.array_equal(codes["signs"].numpy(), codes_ref[:, nb : nb + 8])
    s_ref = ref.score(q, codes_ref)
    s = codec.score(codec.prepare(torch.from_numpy(q)), codes).numpy()
    np.testing.assert_allclose(s, s_ref, atol=1e-3 * np.abs(s_ref).max())
    np.testing.assert_allclose(
        codec.decode(codes).numpy(), ref.decode(codes_ref), atol=1e-4 * np.abs(x).max()
    )
    assert codec.code_bytes == ref.code_size - 4  # the reference also stores ||x||^2
    w = torch.softmax(torch.from_numpy(s_ref), -1)
    np.testing.assert_allclose(
        codec.weighted_sum(w, codes).numpy(), w.numpy() @ ref.decode(codes_ref), rtol=1e-4, atol=1e-4
    )


def test_turbo_scaled_prescale_search_matches_reference(kv_vectors):
    from vqdb.quantizers.turbo import PRESCALE_GRID

    x, q = kv_vectors
    ref = vqdb.TurboQuantizer(64, bits=3, variant="scaled", seed=5, scales=PRESCALE_GRID)
    codec = turbo_codec_from(ref, side_dtype=torch.float32)
    assert codec.scales == tuple(PRESCALE_GRID)
    codes_ref = ref.encode(x)
    codes = codec.encode(torch.from_numpy(x))
    assert np.array_equal(codes["idx"].numpy(), codes_ref[:, :24])
    s_ref = ref.score(q, codes_ref)
    np.testing.assert_allclose(
        codec.score(codec.prepare(torch.from_numpy(q)), codes).numpy(), s_ref, atol=1e-3 * np.abs(s_ref).max()
    )
    assert make_codec("turbo-scaled", 3, 64).scales == tuple(PRESCALE_GRID)
    assert make_codec("turbo-scaled", 3, 64, prescale=False).scales == (1.0,)


@pytest.mark.parametrize("m", [64, 192])
def test_qjl_codec_matches_reference(kv_vectors, m):
    x, q = kv_vectors
    ref = vqdb.QJLQuantizer(64, sketch_dim=m, seed=2)
    codec = qjl_codec_from(ref, side_dtype=torch.float32)
    codes_ref = ref.encode(x)
    codes = codec.encode(torch.from_numpy(x))
    assert np.array_equal(codes["signs"].numpy(), codes_ref[:, : m // 8])
    s_ref = ref.score(q, codes_ref)
    np.testing.assert_allclose(
        codec.score(codec.prepare(torch.from_numpy(q)), codes).numpy(), s_ref, atol=1e-3 * np.abs(s_ref).max()
    )
    np.testing.assert_allclose(
        codec.decode(codes).numpy(), ref.decode(codes_ref), atol=1e-4 * np.abs(x).max()
    )


@pytest.mark.parametrize("level_bits", [(4, 2, 2, 2), (3, 1, 1, 1, 1)])
def test_polar_codec_matches_reference(kv_vectors, level_bits):
    x, q = kv_vectors
    ref = vqdb.PolarQuantizer(64, levels=len(level_bits), level_bits=level_bits, seed=4)
    codec = polar_codec_from(ref)
    codes_ref = ref.encode(x)
    codes = codec.encode(torch.from_numpy(x))
    packed = torch.cat([codes[f"a{i}"] for i in range(len(level_bits))], -1).numpy()
    assert np.array_equal(packed, codes_ref[:, : packed.shape[1]])
    s_ref = ref.score(q, codes_ref)
    np.testing.assert_allclose(
        codec.score(codec.prepare(torch.from_numpy(q)), codes).numpy(), s_ref, atol=1e-3 * np.abs(s_ref).max()
    )
    assert codec.code_bytes == ref.code_size - 4


def test_group_codec_roundtrip_error_and_bytes():
    x = torch.randn(4, 3, 50, 64)
    for bits, tol in ((2, 0.45), (4, 0.1), (8, 0.005)):
        c = make_codec("groups", bits, 64, group_size=32)
        codes = c.encode(x)
        err = ((c.decode(codes) - x).norm() / x.norm()).item()
        assert err < tol, (bits, err)
        assert c.code_bytes == 64 * bits // 8 + 2 * 2 * 2  # 2 groups x (scale, min) float16
        assert all(t.shape[:3] == (4, 3, 50) for t in codes.values())
    const = torch.ones(2, 64)  # constant groups: zero scale, exact
    c = make_codec("groups", 2, 64)
    assert torch.equal(c.decode(c.encode(const)), const)


def test_fractional_bits_split_channels_and_exact_rate():
    c = make_codec("turbo", 2.5, 64)
    assert isinstance(c, SplitCodec) and c.n_hi == 32
    assert c.hi.bits == 3 and c.lo.bits == 2
    assert c.code_bytes == 12 + 8 + 2 * 2  # 32 ch x 3 bits + 32 x 2 bits + two float16 norms
    c = make_codec("turbo", 3.5, 64, outlier_channels=16)
    assert c.n_hi == 16 and c.hi.bits == 4 and c.lo.bits == 3
    g = make_codec("groups", 2.5, 64, group_size=32)
    assert isinstance(g, SplitCodec) and g.hi.bits == 3
    f = make_codec("turbo", 16, 64)
    assert f.code_bytes == 128 and f.kind == "float16"


def test_codec_linearity_score_equals_dot_with_decode():
    """The fused path (score from codes) and the compat path (dot with decode) are the same estimator."""
    x = torch.randn(2, 3, 40, 64)
    q = torch.randn(2, 3, 5, 64)
    for kind, bits in (
        ("turbo", 3),
        ("turbo-scaled", 4),
        ("turbo-prod", 3),
        ("qjl", 3),
        ("polar", 4),
        ("groups", 4),
        ("turbo", 3.5),
    ):
        c = make_codec(kind, bits, 64)
        codes = c.encode(x)
        s = c.score(c.prepare(q), codes)
        ref = q @ c.decode(codes).transpose(-1, -2)
        torch.testing.assert_close(s, ref, atol=1e-4 * ref.abs().max().item(), rtol=1e-4)
        w = torch.softmax(s, -1)
        torch.testing.assert_close(c.weighted_sum(w, codes), w @ c.decode(codes), atol=1e-4, rtol=1e-4)


def test_codecs_are_shared_across_devices_lazily():
    c = make_codec("turbo", 4, 64)
    assert c.on("cpu") is c
    assert c.state_bytes == 64 * 64 * 4 + 16 * 8 + 15 * 8  # rotation float32 + float64 codebook


def test_make_codec_validation():
    with pytest.raises(UnknownNameError):
        make_codec("nope", 4, 64)
    with pytest.raises(InvalidInputError):
        make_codec("turbo", 9, 64)
    with pytest.raises(InvalidInputError):
        make_codec("turbo", "four", 64)
    with pytest.raises(InvalidInputError):
        make_codec("turbo-prod", 1, 64)
    with pytest.raises(InvalidInputError):
        make_codec("polar", 2, 64)  # no polar configuration for 2 bits
    with pytest.raises(InvalidInputError):
        make_codec("groups", 4, 64, group_size=48)
    with pytest.raises(InvalidInputError):
        make_codec("turbo", 4, 1)
    with pytest.raises(InvalidInputError, match="unknown codec option"):
        make_codec("turbo", 4, 64, group_sise=32)


def test_float16_side_data_overflow_is_an_error_not_inf():
    c = make_codec("turbo", 4, 64)
    with pytest.raises(InvalidInputError, match="float16"):
        c.encode(torch.full((1, 64), 1e5))
    c32 = make_codec("turbo", 4, 64, side_dtype=torch.float32)
    assert torch.isfinite(c32.decode(c32.encode(torch.full((1, 64), 1e5)))).all()


def test_attention_fidelity_on_real_smollm2_cache(smollm2_kv):
    """On real SmolLM2 K/V/Q: attention-output error falls with the bit rate; 8 bits is near exact."""
    from vqdb.kvcache import CompressedKVLayer

    z = smollm2_kv
    n_prompt = int(z["n_prompt"])
    scale = float(z["scale"])
    p = int(z["q_positions"][0])

    def err(key_kind, bits, value_kind):
        e = []
        for layer_idx in (2, 15, 28):
            k = torch.from_numpy(z["k"][layer_idx : layer_idx + 1, :, : p + 1].astype(np.float32))
            v = torch.from_numpy(z["v"][layer_idx : layer_idx + 1, :, : p + 1].astype(np.float32))
            q = torch.from_numpy(
                z["q"][layer_idx : layer_idx + 1, :, :1].astype(np.float32)
            )  # first decode step
            layer = CompressedKVLayer(
                make_codec(key_kind, bits, 64),
                make_codec(value_kind, bits, 64, role="value"),
                residual_length=0,
                flush_block=1,
            )
            layer.append(k[:, :, :n_prompt], v[:, :, :n_prompt])
            out = layer.attend(q, k[:, :, n_prompt:], v[:, :, n_prompt:], n_codes=layer.n_codes, scale=scale)
            ref = torch.softmax(
                q @ k.repeat_interleave(3, 1).transpose(-1, -2) * scale, -1
            ) @ v.repeat_interleave(3, 1)
            e.append(((out - ref).norm() / ref.norm()).item())
        return float(np.mean(e))

    e2, e4, e8 = err("turbo", 2, "turbo"), err("turbo", 4, "turbo"), err("turbo", 8, "turbo")
    assert e8 < 0.02 < e4 < 0.2 < e2 < 0.6, (e2, e4, e8)
    assert err("turbo", 4, "groups") < 0.2
