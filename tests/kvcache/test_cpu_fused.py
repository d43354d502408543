"""The CPU fused attention from codes (Numba lookup kernels, vqdb.kernels.kv_lut): exact values on a small
case, and the same attention as the torch decoded-tile path for every supported codec and rate."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from vqdb.kernels import kv_lut
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
    args = (idx, norm, unit_table(cent, bits), bits)
    s = np.full((1, 2, 3, n), 99.0, np.float32)  # written, not accumulated into
    code_scores(q, args, s)
    np.testing.assert_array_equal(s, np.einsum("bhmj,bhtj->bhmt", q, x))
    o = np.full((1, 2, 3, k), 99.0, np.float32)
    code_weighted_sum(w, args, o)
    np.testing.assert_array_equal(o, np.einsum("bhmt,bhtj->bhmj", w, x))
    # the whole row: 2 sink keys, the codes + <q, mu>, 3 tail keys, an additive mask row per query
    sink = rng.integers(-2, 3, size=(1, 2, 2, k)).astype(np.float32)
    tail = rng.integers(-2, 3, size=(1, 2, 3, k)).astype(np.float32)
    mu = rng.integers(-2, 3, size=(1, 2, k)).astype(np.float32)
    mask = rng.integers(-4, 1, size=(1, 3, 2 + n + 3)).astype(np.float32)
    row = np.full((1, 2, 3, 2 + n + 3), 99.0, np.float32)
    code_scores(q, args, row, qx=q, sink=sink, tail=tail, mu=mu, mask=mask)
    full = np.concatenate([sink, x + mu[:, :, None], tail], axis=2)
    np.testing.assert_array_equal(row, np.einsum("bhmj,bhtj->bhmt", q, full) + mask[:, None])
    wr = rng.integers(0, 3, size=(1, 2, 3, 2 + n + 3)).astype(np.float32)
    o_rot = np.zeros((1, 2, 3, k), np.float32)
    o_x = np.full((1, 2, 3, k), 99.0, np.float32)
    code_weighted_sum(wr, args, o_rot, o_x, sink=sink, tail=tail, mu=mu)
    np.testing.assert_array_equal(o_rot, np.einsum("bhmt,bhtj->bhmj", wr[..., 2 : 2 + n], x))
    exact = np.concatenate([sink, np.broadcast_to(mu[:, :, None], x.shape), tail], axis=2)
    np.testing.assert_array_equal(o_x, np.einsum("bhmt,bhtj->bhmj", wr, exact))


def test_split_codes_are_scored_as_their_two_parts_side_by_side():
    rng = np.random.default_rng(7)
    n, ka, kb = 6, 8, 16
    ca, cb = np.arange(8, dtype=np.float32) - 3.5, np.arange(4, dtype=np.float32) - 1.5
    codes_a, codes_b = rng.integers(0, 8, size=(2, 3, n, ka)), rng.integers(0, 4, size=(2, 3, n, kb))
    na, nb = (rng.integers(1, 4, size=(2, 3, n)).astype(np.float32) for _ in range(2))
    args = (
        (ops.pack_tensor(torch.from_numpy(codes_a), 3).numpy(), na, unit_table(ca, 3), 3),
        (ops.pack_tensor(torch.from_numpy(codes_b), 2).numpy(), nb, unit_table(cb, 2), 2),
    )
    x = np.concatenate([ca[codes_a] * na[..., None], cb[codes_b] * nb[..., None]], -1)
    q = rng.integers(-3, 4, size=(2, 3, 4, ka + kb)).astype(np.float32)
    s = np.empty((2, 3, 4, n), np.float32)
    code_scores(q, args, s)
    np.testing.assert_array_equal(s, np.einsum("bhmj,bhtj->bhmt", q, x))
    w = rng.integers(0, 3, size=(2, 3, 4, n)).astype(np.float32)
    o = np.empty((2, 3, 4, ka + kb), np.float32)
    code_weighted_sum(w, args, o)
    np.testing.assert_array_equal(o, np.einsum("bhmt,bhtj->bhmj", w, x))


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
        # a padding mask per batch row (left padding of row 1), float and boolean, wider than the row
        total = layer.seq_length
        keep = torch.ones(2, 1, q_len, total + 3, dtype=torch.bool)
        keep[1, :, :, 3:40] = False
        for mask in (keep, torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)):
            outs = []
            for fast in (True, False):
                layer.fast = fast
                outs.append(layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.125, mask=mask))
            torch.testing.assert_close(outs[0], outs[1], atol=2e-6, rtol=1e-5)


def test_unsupported_codecs_keep_the_torch_path():
    cpu = torch.device("cpu")
    assert not _cpu_fused.supported(make_codec("turbo-prod", 3, 64), cpu)
    assert not _cpu_fused.supported(make_codec("qjl", 3, 64), cpu)
    assert not _cpu_fused.supported(make_codec("groups", 3, 64, role="value"), cpu)
    assert not _cpu_fused.supported(make_codec("turbo", 4, 64), torch.device("meta"))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_token_chunks_on_two_threads_give_the_one_thread_results():
    """With more threads than (row, head) pairs the kernels split each head's tokens into chunks; the
    scores are the same numbers and the value sums the same up to summation order."""
    torch.manual_seed(1)
    layer = CompressedKVLayer(
        make_codec("turbo-scaled", 3, 64),
        make_codec("turbo", 2.5, 64, role="value"),
        residual_length=16,
        sink_tokens=4,
        center=True,
    )
    layer.append(torch.randn(1, 1, 1500, 64) + 0.5, torch.randn(1, 1, 1500, 64))
    r = layer.append(torch.randn(1, 1, 1, 64), torch.randn(1, 1, 1, 64))
    q = torch.randn(1, 3, 1, 64)
    mask = torch.zeros(1, 1, 1, layer.seq_length)
    mask[..., 100:300] = float("-inf")
    before = numba.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            assert kv_lut._chunks(1, r.n_codes) == (1 if threads == 1 else 4)
            outs.append(
                (
                    layer.attend(q, r.keys, r.values, n_codes=r.n_codes, scale=0.125, mask=mask),
                    layer.scores(q, scale=0.125),
                )
            )
    finally:
        numba.set_num_threads(before)
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-6, rtol=1e-5)
    assert torch.equal(outs[0][1], outs[1][1])
