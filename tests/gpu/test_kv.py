"""KV decode step over codes (vqdb.kvcache.device_decode) agrees with CompressedKVLayer.attend; torch impl on CPU tensors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vqdb.kernels.cuda import probe_cuda_torch  # noqa: E402
from vqdb.kvcache import CompressedKVLayer, make_codec  # noqa: E402
from vqdb.kvcache import device_decode as kv  # noqa: E402


def _layer(kind_k="turbo", kind_v="turbo-scaled", bits=(4, 2), d=32, device="cpu"):
    layer = CompressedKVLayer(
        make_codec(kind_k, bits[0], d, role="key", side_dtype=torch.float32),
        make_codec(kind_v, bits[1], d, role="value", side_dtype=torch.float32),
        residual_length=8,
        flush_block=4,
        tile_tokens=16,
    )
    g = torch.Generator().manual_seed(0)
    r = layer.append(
        torch.randn(2, 2, 40, d, generator=g).to(device), torch.randn(2, 2, 40, d, generator=g).to(device)
    )
    r = layer.append(
        torch.randn(2, 2, 1, d, generator=g).to(device), torch.randn(2, 2, 1, d, generator=g).to(device)
    )
    q = torch.randn(2, 4, 1, d, generator=g).to(device)
    return layer, r, q


@pytest.mark.parametrize(
    "kinds", [("turbo", "turbo"), ("turbo-scaled", "turbo-scaled"), ("turbo", "turbo-scaled")]
)
def test_torch_decode_matches_layer_attend(kinds):
    layer, r, q = _layer(*kinds)
    assert r.n_codes > 0 and kv.supported(layer, q)
    ref = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.2)
    out = kv.decode_attention(layer, q, r.keys, r.values, n_codes=r.n_codes, scale=0.2, impl="torch")
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    no_tail = kv.decode_attention(
        layer, q, r.keys[:, :, :0], r.values[:, :, :0], n_codes=r.n_codes, scale=0.2, impl="torch"
    )
    assert no_tail.shape == ref.shape and torch.isfinite(no_tail).all()


def test_unsupported_returns_none():
    layer, r, q = _layer("turbo-prod", "turbo", bits=(3, 4))
    assert not kv.supported(layer, q)
    assert kv.decode_attention(layer, q, r.keys, r.values, n_codes=r.n_codes, scale=0.2) is None
    layer, r, q = _layer()
    assert (
        kv.decode_attention(layer, torch.randn(2, 4, 2, 32), r.keys, r.values, n_codes=r.n_codes, scale=0.2)
        is None
    )


@pytest.mark.gpu
@pytest.mark.skipif(probe_cuda_torch() is not None, reason="no CUDA device")
@pytest.mark.parametrize("impl", ["torch", "numba"])
def test_cuda_decode_matches_layer_attend(impl):
    layer, r, q = _layer(device="cuda")
    out = kv.decode_attention(layer, q, r.keys, r.values, n_codes=r.n_codes, scale=0.2, impl=impl)
    hooked = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.2)  # CUDA: goes through the hook
    layer.to("cpu")
    ref = layer.attend(q.cpu(), r.keys.cpu(), r.values.cpu(), n_codes=r.n_codes, scale=0.2)  # generic path
    torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(hooked.cpu(), ref, atol=1e-4, rtol=1e-3)
