"""CompressedKVLayer: encode-once window semantics, fused == materialized attention, GQA, masks, batch edits, bytes."""

from __future__ import annotations

import pytest
import torch

from vqdb.errors import DimensionMismatchError, InvalidInputError
from vqdb.kvcache import CompressedKVLayer, KVCodec, make_codec


class CountingCodec(KVCodec):
    """Wraps a codec and records how many vectors it encoded (to prove each token is encoded once)."""

    def __init__(self, inner: KVCodec):
        super().__init__()
        self.inner, self.dim, self.kind, self.encoded = inner, inner.dim, inner.kind, 0

    def state_tensors(self):
        return self.inner.state_tensors()

    def _with_state(self, state):
        return self

    @property
    def code_bytes(self):
        return self.inner.code_bytes

    def encode(self, x):
        self.encoded += x[..., 0].numel()
        return self.inner.encode(x)

    def decode(self, codes):
        return self.inner.decode(codes)

    def prepare(self, q):
        return self.inner.prepare(q)

    def score(self, p, codes):
        return self.inner.score(p, codes)

    def weighted_sum(self, w, codes):
        return self.inner.weighted_sum(w, codes)


def _sdpa(q, k, v, scale, mask=None, causal=False):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=scale, is_causal=causal
    )


def _layer(kind="turbo", bits=4, vkind="turbo", vbits=4, r=8, f=4, d=32):
    return CompressedKVLayer(
        make_codec(kind, bits, d), make_codec(vkind, vbits, d, role="value"), residual_length=r, flush_block=f
    )


def test_tokens_are_encoded_exactly_once_when_they_leave_the_window():
    kc, vc = (
        CountingCodec(make_codec("turbo", 3, 32)),
        CountingCodec(make_codec("groups", 4, 32, role="value")),
    )
    layer = CompressedKVLayer(kc, vc, residual_length=8, flush_block=4)
    b, h = 2, 3
    total = 0
    for n in [20, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 1, 30, 1]:
        r = layer.append(torch.randn(b, h, n, 32), torch.randn(b, h, n, 32))
        assert r.n_codes + r.keys.shape[2] == total + n  # the step sees every token, in order
        total += n
        assert layer.seq_length == total
        assert 8 <= layer.window_length < 8 + 4 or total < 12
        assert kc.encoded == vc.encoded == layer.n_codes * b * h  # no token encoded twice
    assert layer.n_codes == total - layer.window_length


def test_prefill_attends_in_full_precision():
    layer = _layer(r=4, f=1)
    q, k, v = torch.randn(1, 4, 50, 32), torch.randn(1, 2, 50, 32), torch.randn(1, 2, 50, 32)
    r = layer.append(k, v)
    assert r.n_codes == 0 and layer.n_codes == 46  # encoded after the step, not used by it
    out = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.2)
    torch.testing.assert_close(out, _sdpa(q, k, v, 0.2, causal=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kind,bits,vkind,vbits",
    [
        ("turbo", 4, "turbo", 4),
        ("turbo-scaled", 3, "groups", 2),
        ("turbo-prod", 3, "turbo", 3),
        ("qjl", 3, "turbo", 2.5),
        ("polar", 4, "groups", 3.5),
        ("turbo", 2.5, "turbo", 16),
    ],
)
@pytest.mark.parametrize("heads", [(4, 2), (4, 4), (4, 1)])  # GQA, MHA, MQA
def test_fused_attention_equals_attention_over_materialized_cache(kind, bits, vkind, vbits, heads):
    hq, hkv = heads
    torch.manual_seed(0)
    layer = _layer(kind, bits, vkind, vbits)
    layer.append(torch.randn(2, hkv, 30, 32), torch.randn(2, hkv, 30, 32))
    for q_len in (1, 3):
        r = layer.append(torch.randn(2, hkv, q_len, 32), torch.randn(2, hkv, q_len, 32))
        q = torch.randn(2, hq, q_len, 32)
        out = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.3)
        k_old, v_old = layer.materialize(r.n_codes)
        k = torch.cat([k_old, r.keys], 2)
        v = torch.cat([v_old, r.values], 2)
        total = k.shape[2]
        causal = torch.ones(q_len, total, dtype=torch.bool).tril(total - q_len)
        torch.testing.assert_close(out, _sdpa(q, k, v, 0.3, mask=causal), atol=2e-5, rtol=1e-4)
        s = layer.scores(q, n_codes=r.n_codes, scale=0.3)
        g = hq // hkv
        torch.testing.assert_close(
            s, 0.3 * q @ k_old.repeat_interleave(g, 1).transpose(-1, -2), atol=1e-4, rtol=1e-4
        )


def test_masks_and_tiles():
    torch.manual_seed(1)
    layer = _layer(r=2, f=1)
    layer.tile_tokens = 7  # force several tiles
    layer.append(torch.randn(1, 2, 40, 32), torch.randn(1, 2, 40, 32))
    r = layer.append(torch.randn(1, 2, 1, 32), torch.randn(1, 2, 1, 32))
    q = torch.randn(1, 4, 1, 32)
    total = r.n_codes + r.keys.shape[2]
    keep = torch.rand(1, 1, 1, total) > 0.3
    keep[..., -1] = True
    k_old, v_old = layer.materialize(r.n_codes)
    k, v = torch.cat([k_old, r.keys], 2), torch.cat([v_old, r.values], 2)
    ref = _sdpa(q, k, v, 0.25, mask=keep)
    torch.testing.assert_close(
        layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.25, mask=keep), ref, atol=2e-5, rtol=1e-4
    )
    additive = torch.zeros(1, 1, 1, total).masked_fill(~keep, torch.finfo(torch.float32).min)
    torch.testing.assert_close(
        layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.25, mask=additive),
        ref,
        atol=2e-5,
        rtol=1e-4,
    )


def test_outlier_split_permutes_per_head_and_round_trips():
    torch.manual_seed(2)
    k = torch.randn(2, 2, 40, 32)
    k[0, 0, :, 5] *= 20  # an outlier channel in one head only
    layer = _layer("turbo", 3.5, "turbo", 2.5)
    layer.append(k, torch.randn(2, 2, 40, 32))
    perm = layer._perm_k
    assert perm.shape == (2, 2, 32) and perm.dtype == torch.int16
    assert int(perm[0, 0, 0]) == 5  # the outlier channel leads head (0, 0)
    k_hat, _ = layer.materialize()
    err = (k_hat - k[:, :, : layer.n_codes]).norm() / k[:, :, : layer.n_codes].norm()
    assert err < 0.15


def test_batch_edits_move_codes_and_window_together():
    torch.manual_seed(3)
    layer = _layer(r=4, f=2)
    k, v = torch.randn(3, 2, 20, 32), torch.randn(3, 2, 20, 32)
    layer.append(k, v)
    ref_k = torch.cat([layer.materialize()[0], layer._win_k], 2)
    idx = torch.tensor([2, 0, 0])
    layer.reorder(idx)
    torch.testing.assert_close(torch.cat([layer.materialize()[0], layer._win_k], 2), ref_k[idx])
    layer.select(torch.tensor([1]))
    assert layer.batch_size == 1
    torch.testing.assert_close(torch.cat([layer.materialize()[0], layer._win_k], 2), ref_k[[0]])
    layer.repeat_interleave(2)
    assert layer.batch_size == 2
    torch.testing.assert_close(torch.cat([layer.materialize()[0], layer._win_k], 2), ref_k[[0, 0]])


def test_crop_into_window_and_into_codes():
    torch.manual_seed(4)
    layer = _layer(r=4, f=2)
    k, v = torch.randn(1, 2, 20, 32), torch.randn(1, 2, 20, 32)
    layer.append(k, v)
    full = torch.cat([layer.materialize()[0], layer._win_k], 2)
    assert layer.n_codes == 16
    layer.crop(18)  # inside the window
    assert layer.seq_length == 18 and layer.n_codes == 16
    torch.testing.assert_close(torch.cat([layer.materialize()[0], layer._win_k], 2), full[:, :, :18])
    layer.crop(10)  # inside the codes: per-token codes crop exactly
    assert layer.seq_length == 10 and layer.n_codes == 10 and layer.window_length == 0
    torch.testing.assert_close(layer.materialize()[0], full[:, :, :10])
    r = layer.append(k[:, :, 10:11], v[:, :, 10:11])  # keeps working after a crop
    assert r.n_codes == 10 and layer.seq_length == 11
    layer.crop(50)
    assert layer.seq_length == 11


def test_memory_bytes_are_exact_and_4x_below_fp16():
    layer = _layer("turbo", 4, "turbo", 4, r=128, f=32, d=64)
    b, h, t = 1, 3, 2048
    layer.append(torch.randn(b, h, t, 64), torch.randn(b, h, t, 64))
    n = layer.n_codes
    expected = n * b * h * 2 * (32 + 2) + layer.window_length * b * h * 64 * 4 * 2
    assert layer.memory_bytes() == expected
    assert layer.code_bytes_per_token() == b * h * 2 * 34
    fp16 = t * b * h * 64 * 2 * 2
    assert fp16 / (n * b * h * 2 * 34) > 3.7  # the encoded part: 68 B vs 256 B per token and head


def test_reset_and_to():
    layer = _layer()
    layer.append(torch.randn(1, 2, 20, 32), torch.randn(1, 2, 20, 32))
    layer.to("cpu")
    assert layer.seq_length == 20
    layer.reset()
    assert layer.seq_length == 0 and layer.memory_bytes() == 0 and layer.n_codes == 0


def test_validation_errors():
    layer = _layer()
    with pytest.raises(DimensionMismatchError):
        layer.append(torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5, 16))
    with pytest.raises(DimensionMismatchError):
        layer.append(torch.randn(1, 2, 5, 32), torch.randn(1, 2, 4, 32))
    with pytest.raises(InvalidInputError):
        layer.append(torch.randint(0, 3, (1, 2, 5, 32)), torch.randint(0, 3, (1, 2, 5, 32)))
    layer.append(torch.randn(1, 2, 20, 32), torch.randn(1, 2, 20, 32))
    with pytest.raises(DimensionMismatchError):
        layer.append(torch.randn(2, 2, 1, 32), torch.randn(2, 2, 1, 32))
    with pytest.raises(InvalidInputError):
        layer.scores(torch.randn(1, 4, 1, 32), n_codes=10_000)
    with pytest.raises(DimensionMismatchError):
        layer.scores(torch.randn(1, 3, 1, 32))
    with pytest.raises(InvalidInputError):
        layer.select(torch.tensor([5]))
    with pytest.raises(InvalidInputError):
        CompressedKVLayer(make_codec("turbo", 4, 32), make_codec("turbo", 4, 32), residual_length=-1)
    with pytest.raises(DimensionMismatchError):
        CompressedKVLayer(make_codec("turbo", 4, 32), make_codec("turbo", 4, 64))
