"""The CPU fused attention from codes (Numba lookup kernels, vqdb.kernels.kv_lut): exact values on a small
case, and the same attention as the torch decoded-tile path for every supported codec and rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqdb.kernels import torch_ops as ops
from vqdb.kernels.kv_lut import code_scores, code_weighted_sum, unit_table
from vqdb.kvcache import CompressedKVLayer, _cpu_fused, make_codec


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_kernels_give_exact_values_on_a_small_case(bits):
    rng = np.random.default_rng(bits)
    k, n = 16, 5
    cent = np.arange(1 << bits, dtype=np.float32) - 0.5 * ((1 << bits) - 1)  # exact small floats
    codes = rng.integers(0, 1 << bits, size=(1, 2, n, k))
    idx = ops.pack_tensor(torch.from_numpy(codes), bits).numpy()
    norm = rng.integers(1, 4, size=(1, 2, n)).astype(np.float32)
    q = rng.integers(-3, 4, size=(1, 2, 3, k)).astype(np.float32)
    w = rng.integers(0, 3, size=(1, 2, 3, n)).astype(np.float32)
    x = cent[codes] * norm[..., None]  # (1, 2, n, k): the stored vectors
    table = unit_table(cent, bits)
    s = np.zeros((1, 2, 3, n), np.float32)
    code_scores(q, idx, norm, table, bits, s)
    np.testing.assert_array_equal(s, np.einsum("bhmj,bhtj->bhmt", q, x))
    o = np.zeros((1, 2, 3, k), np.float32)
    code_weighted_sum(w, 0, idx, norm, table, bits, o)
    np.testing.assert_array_equal(o, np.einsum("bhmt,bhtj->bhmj", w, x))
    # weights read from column 2 of a wider row; scores accumulated into a strided view of one
    wide = np.concatenate([np.full((1, 2, 3, 2), 7.0, np.float32), w], -1)
    o = np.zeros((1, 2, 3, k), np.float32)
    code_weighted_sum(wide, 2, idx, norm, table, bits, o)
    np.testing.assert_array_equal(o, np.einsum("bhmt,bhtj->bhmj", w, x))
    row = np.ones((1, 2, 3, n + 3), np.float32)
    code_scores(q, idx, norm, table, bits, row[..., 1 : n + 1])
    np.testing.assert_array_equal(row[..., 1 : n + 1], 1.0 + np.einsum("bhmj,bhtj->bhmt", q, x))
    assert (row[..., 0] == 1).all() and (row[..., n + 1 :] == 1).all()


@pytest.mark.parametrize(
    "kind,bits,vbits",
    [
        ("turbo", 1, 1),
        ("turbo", 2, 3),
        ("turbo-scaled", 3, 2.5),
        ("turbo-scaled", 3.5, 3),
        ("turbo-scaled", 4, 4),
        ("turbo-scaled", 2.5, 2.5),
    ],
)
@pytest.mark.parametrize("center,sinks", [(False, 0), (True, 4)])
def test_fast_path_equals_the_torch_path(kind, bits, vbits, center, sinks):
    torch.manual_seed(0)
    layer = CompressedKVLayer(
        make_codec(kind, bits, 64),
        make_codec("turbo", vbits, 64, role="value"),
        residual_length=16,
        flush_block=8,
        sink_tokens=sinks,
        center=center,
    )
    assert _cpu_fused.supported(layer.key_codec, torch.device("cpu"))
    assert _cpu_fused.supported(layer.value_codec, torch.device("cpu"))
    layer.append(torch.randn(2, 3, 200, 64) + 0.5, torch.randn(2, 3, 200, 64))
    for q_len in (1, 4):
        r = layer.append(torch.randn(2, 3, q_len, 64), torch.randn(2, 3, q_len, 64))
        q = torch.randn(2, 9, q_len, 64)
        layer.fast = True
        a = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.125)
        sa = layer.scores(q, scale=0.125)
        layer.fast = False
        b = layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.125)
        sb = layer.scores(q, scale=0.125)
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)
        torch.testing.assert_close(sa, sb, atol=2e-5, rtol=1e-5)


def test_unsupported_codecs_keep_the_torch_path():
    cpu = torch.device("cpu")
    assert not _cpu_fused.supported(make_codec("turbo-prod", 3, 64), cpu)
    assert not _cpu_fused.supported(make_codec("qjl", 3, 64), cpu)
    assert not _cpu_fused.supported(make_codec("groups", 3, 64, role="value"), cpu)
    assert not _cpu_fused.supported(make_codec("turbo", 4, 64), torch.device("meta"))
